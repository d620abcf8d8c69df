"""How a new chunk takes over from the running one.

Options (combine with ``+``, e.g. ``prefix+blend``):

* ``none``: the new chunk's rows replace the running ones as they are.
* ``blend``: cross-fade over the first K kept rows, from the running trajectory to the new chunk.
* ``rollforward``: the state row handed to the model is where the running trajectory will be when the new chunk
  starts (capture time + expected latency, on the control grid), and the chunk is timed from there (VLASH,
  arXiv 2512.01031).
* ``prefix``: the actions that will execute while the model runs are handed to the model as clean action rows
  after the state row, so the new chunk continues them (real-time chunking by inpainting, arXiv 2506.07339,
  without a backward pass: Cosmos3 conditions on clean action rows natively).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import InputError
from .trajectory import TimedTrajectory

HANDOVER_OPTIONS = ("none", "blend", "rollforward", "prefix")


def parse_handover(text: str) -> frozenset[str]:
    """``"none"`` or ``+``-joined options -> the set of options (empty for ``none``).

    Raises:
        InputError: an unknown option, ``none`` combined with another, or ``rollforward`` with ``prefix`` (both
            move the chunk's starting point; they cannot both hold).

    """
    parts = [p.strip() for p in str(text).split("+") if p.strip()]
    unknown = [p for p in parts if p not in HANDOVER_OPTIONS]
    if not parts or unknown:
        raise InputError(f"handover {text!r}: expected one of {list(HANDOVER_OPTIONS)} or a '+'-joined combination")
    if "none" in parts:
        if len(parts) > 1:
            raise InputError(f"handover {text!r}: 'none' cannot be combined")
        return frozenset()
    options = frozenset(parts)
    if {"rollforward", "prefix"} <= options:
        raise InputError(f"handover {text!r}: rollforward and prefix cannot be combined")
    return options


def steps_covering(seconds: float, dt_s: float) -> int:
    """Control steps needed to cover ``seconds`` (at least 1)."""
    return max(1, math.ceil(seconds / dt_s - 1e-9))


def blend_into(running: TimedTrajectory, times: np.ndarray, targets: np.ndarray, steps: int) -> np.ndarray:
    """Cross-fade: row i < ``steps`` becomes ``(1 - w) running(t_i) + w target_i``, ``w = (i + 1) / (steps + 1)``."""
    out = np.array(targets, dtype=np.float64, copy=True)
    for i in range(min(steps, out.shape[0])):
        weight = (i + 1) / (steps + 1)
        out[i] = (1.0 - weight) * running.sample(float(times[i]))[0] + weight * out[i]
    return out


def running_rows(running: Callable[[float], tuple[np.ndarray, np.ndarray]], start_s: float, dt_s: float,
                 count: int) -> np.ndarray:
    """``[count, J]`` commanded positions (``running(t) -> (position, velocity)``) at ``start_s + (k + 1) dt``."""
    return np.stack([running(start_s + (k + 1) * dt_s)[0] for k in range(count)])
