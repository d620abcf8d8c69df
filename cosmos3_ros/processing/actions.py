"""Action statistics, (de-)normalisation, gripper flip, action files and output post-processing.

Model space is what the transformer's 64-wide action tokens hold; physical space is what the robot uses.
Going in:  physical ``[T, raw]`` -> flip gripper columns (1 - g) -> normalise -> zero-pad to 64.
Coming out: model ``[T, 64]`` -> slice to ``raw`` -> de-normalise -> flip gripper -> optional binarise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.checkpoint import read_json_object
from ..errors import InputError, ProfileError
from . import limits

STAT_KEYS = ("mean", "std", "min", "max", "q01", "q99")
REQUIRED_STATS = {
    "meanstd": ("mean", "std"),
    "minmax": ("min", "max"),
    "quantile": ("q01", "q99"),
    "quantile_rot": ("q01", "q99"),
}
_MIN_STD = 1e-8
_MIN_RANGE = 1e-6


@dataclass(frozen=True)
class ActionStats:
    """Per-column statistics of the training actions, each ``[raw_action_dim]`` float64 or None."""

    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    min: np.ndarray | None = None
    max: np.ndarray | None = None
    q01: np.ndarray | None = None
    q99: np.ndarray | None = None
    source: str = "inline"

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "inline") -> ActionStats:
        """Build from ``{"mean": [...], ...}``; unknown keys are ignored, values must be finite numbers."""
        arrays: dict[str, np.ndarray] = {}
        for key in STAT_KEYS:
            if key in values and values[key] is not None and len(values[key]) > 0:
                try:
                    arr = np.asarray(values[key], dtype=np.float64).reshape(-1)
                except (TypeError, ValueError) as exc:
                    raise InputError(f"action stats {source}: {key!r} is not a list of numbers ({exc})") from exc
                if not np.all(np.isfinite(arr)):
                    raise InputError(f"action stats {source}: {key!r} holds non-finite values {arr.tolist()}")
                arrays[key] = arr
        if not arrays:
            raise InputError(f"action stats {source}: none of the keys {list(STAT_KEYS)} found")
        return cls(**arrays, source=source)

    @classmethod
    def from_file(cls, path: str | Path, normalization: str | None = None) -> ActionStats:
        """Load a stats JSON.

        The statistics are read from ``global_raw`` when present (where ``quantile_rot`` stats live), else from
        ``global``, else from the top level.
        """
        path = Path(path)
        data = read_json_object(path, "action stats file", InputError)
        order = ("global_raw", "global") if normalization in (None, "quantile_rot") else ("global", "global_raw")
        for key in order:
            if isinstance(data.get(key), dict):
                return cls.from_mapping(data[key], source=f"{path}:{key}")
        return cls.from_mapping(data, source=str(path))

    def check(self, normalization: str | None, width: int) -> None:
        """Raise ProfileError if the stats needed by ``normalization`` are missing or not ``width`` wide."""
        if normalization is None:
            return
        for key in REQUIRED_STATS[normalization]:
            arr = getattr(self, key)
            if arr is None:
                raise ProfileError(
                    f"action stats {self.source}: normalization {normalization!r} needs {key!r}, which is missing"
                )
            if arr.shape != (width,):
                raise ProfileError(
                    f"action stats {self.source}: {key!r} has {arr.shape[0]} values; expected {width} "
                    f"(raw_action_dim)"
                )


def normalize(actions: np.ndarray, normalization: str | None, stats: ActionStats | None) -> np.ndarray:
    """Physical ``[T, D]`` -> model space (quantile/minmax map to [-1, 1] and clamp, as in training)."""
    if normalization is None:
        return actions
    assert stats is not None
    x = actions.astype(np.float64)
    if normalization == "meanstd":
        out = (x - stats.mean) / np.maximum(stats.std, _MIN_STD)
    else:
        lo, hi = (stats.min, stats.max) if normalization == "minmax" else (stats.q01, stats.q99)
        out = np.clip(2.0 * (x - lo) / np.maximum(hi - lo, _MIN_RANGE) - 1.0, -1.0, 1.0)
    return out.astype(np.float32)


def denormalize(actions: np.ndarray, normalization: str | None, stats: ActionStats | None) -> np.ndarray:
    """Model space ``[T, D]`` -> physical units (inverse of ``normalize`` without the clamp)."""
    if normalization is None:
        return actions
    assert stats is not None
    x = actions.astype(np.float64)
    if normalization == "meanstd":
        out = x * np.maximum(stats.std, _MIN_STD) + stats.mean
    else:
        lo, hi = (stats.min, stats.max) if normalization == "minmax" else (stats.q01, stats.q99)
        out = 0.5 * (x + 1.0) * np.maximum(hi - lo, _MIN_RANGE) + lo
    return out.astype(np.float32)


def flip_gripper(actions: np.ndarray, gripper_dims: Sequence[int]) -> np.ndarray:
    """``g -> 1 - g`` on the gripper columns (its own inverse). Returns a copy."""
    out = np.array(actions, dtype=np.float32, copy=True)
    for d in gripper_dims:
        out[..., d] = 1.0 - out[..., d]
    return out


def _numeric_rows(value: Any, what: str) -> np.ndarray:
    """``value`` as a float64 array, or an InputError naming why not (ragged rows, strings, ...)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        reason = "rows of different lengths" if "inhomogeneous" in str(exc) else str(exc).splitlines()[0]
        raise InputError(f"{what}: not a numeric [T, D] array ({reason})") from exc
    return arr


def as_action_array(value: Any, width: int | None, what: str) -> np.ndarray:
    """Coerce a list / numpy / torch value to float32 ``[T, width]`` (any width when None), finite and within
    ``limits.MAX_ABS_VALUE``, with a clear error otherwise.
    """
    arr = _numeric_rows(value, what)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{what}: shape {list(arr.shape)}; expected [T, {width or 'D'}] with T >= 1")
    if width is not None and arr.shape[1] != width:
        raise InputError(f"{what}: {arr.shape[1]} columns; expected {width} (raw_action_dim)")
    limits.check_values(what, arr)  # before float32, so 1e300 is reported as itself, not as inf
    return arr.astype(np.float32)


def fit_to_length(actions: np.ndarray, length: int) -> np.ndarray:
    """Truncate to ``length`` rows, or repeat the last row to reach it."""
    if actions.shape[0] >= length:
        return actions[:length]
    pad = np.repeat(actions[-1:], length - actions.shape[0], axis=0)
    return np.concatenate([actions, pad], axis=0)


def load_action_file(path: str | Path) -> np.ndarray:
    """Read an action JSON: ``{"shape", "dtype", "data"}`` or ``{"action_chunks": [[row, ...], ...]}``.

    Returns float32 ``[T, D]`` (for ``action_chunks`` the chunks are concatenated in order).
    """
    path = Path(path)
    data = read_json_object(path, "action file", InputError)
    if "data" in data:
        arr = _numeric_rows(data["data"], f"action file {str(path)!r}").astype(np.float32)
        if "shape" in data and list(arr.shape) != list(data["shape"]):
            raise InputError(f"action file {str(path)!r}: data has shape {list(arr.shape)} but 'shape' says "
                             f"{data['shape']}")
    elif "action_chunks" in data:
        chunks = [_numeric_rows(c, f"action file {str(path)!r} chunk {i}").astype(np.float32)
                  for i, c in enumerate(data["action_chunks"])]
        if not chunks or any(c.ndim != 2 for c in chunks):
            raise InputError(f"action file {str(path)!r}: 'action_chunks' must be a non-empty list of [T, D] lists")
        arr = np.concatenate(chunks, axis=0)
    else:
        raise InputError(
            f"action file {str(path)!r}: expected an object with 'data' (and 'shape', 'dtype') or 'action_chunks'"
        )
    if arr.ndim != 2:
        raise InputError(f"action file {str(path)!r}: actions have shape {list(arr.shape)}; expected [T, D]")
    return arr


def to_model_space(
    physical: np.ndarray, *, gripper_dims: Sequence[int], normalization: str | None, stats: ActionStats | None,
    model_width: int,
) -> np.ndarray:
    """Physical ``[T, raw]`` -> model ``[T, model_width]`` (flip, normalise, zero-pad)."""
    x = normalize(flip_gripper(physical, gripper_dims), normalization, stats)
    out = np.zeros((x.shape[0], model_width), dtype=np.float32)
    out[:, : x.shape[1]] = x
    return out


def to_physical(
    model_rows: np.ndarray, *, raw_action_dim: int, gripper_dims: Sequence[int], normalization: str | None,
    stats: ActionStats | None, binarize_gripper: bool,
) -> np.ndarray:
    """Model ``[T, 64]`` -> physical ``[T, raw]`` (slice, de-normalise, flip, clamp, optional binarise at 0.5).

    Gripper columns are clamped to [0, 1] (0 open .. 1 closed). The model's raw value (``1 - g`` in model space)
    is a flow-matching sample, so it overshoots the trained range by a little (random weights: by a lot); past
    either end it means "fully open" / "fully closed", so the clamp changes no command. The clamped value is what
    every output (JSON, ActionChunk, trajectories, plots) carries.
    """
    x = denormalize(np.asarray(model_rows[:, :raw_action_dim], dtype=np.float32), normalization, stats)
    x = flip_gripper(x, gripper_dims)
    for d in gripper_dims:
        np.clip(x[:, d], 0.0, 1.0, out=x[:, d])
    if binarize_gripper:
        for d in gripper_dims:
            x[:, d] = (x[:, d] > 0.5).astype(np.float32)
    return x


def action_json(actions: np.ndarray, **extra: Any) -> dict[str, Any]:
    """The ``{"shape", "dtype", "data"}`` action document (plus extra fields) written by the CLI."""
    doc: dict[str, Any] = {
        "shape": list(actions.shape),
        "dtype": "float32",
        "data": [[float(v) if math.isfinite(v) else None for v in row] for row in actions.tolist()],
    }
    doc.update(extra)
    return doc
