"""Evaluation of labelled chunks against what the robot recorded, and the plots of it.

Definitions (joint-space profiles; see ``docs/bag_infer.md``): a chunk's row k is the target for frame k + 1 of
its window, at ``t0 + (k + 1) / fps``.

* recorded joint states: the row-k reference is the joint state held (zero-order hold on header stamps) at
  ``t0 + (k + 1) / fps``;
* recorded commands: the row-k reference is the newest command stamped strictly before ``t0 + (k + 1) / fps``
  (the command the robot was tracking when it reached frame k + 1);
* hold-pose baseline: every row predicts the joint state at ``t0``.

References older than the hold limit are left out (NaN). Errors are ``prediction - reference`` per dimension.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .outputs import ChunkRecord

# eval.json's definitions that bags and datasets share (each adds its row time, references and baseline)
SHARED_DEFINITIONS = {
    "error": "prediction - reference; rows whose reference is older than --max-hold are left out",
    "arm": "joint columns only (gripper excluded)",
}


def plots_unavailable(no_plots: bool) -> str:
    """Why no plots are drawn ('' when they are): turned off, or matplotlib (an optional extra) is missing."""
    if no_plots:
        return "off (--no-plots)"
    if importlib.util.find_spec("matplotlib") is None:
        return "skipped: matplotlib is not installed (pip install 'cosmos3_ros[plots]')"
    return ""


def evaluation_written(plots: Sequence[str], plot_note: str) -> str:
    """The one-line account of the evaluation stage: the files written and why plots are missing."""
    return ", ".join(["eval.json", *plots]) + (f" (plots {plot_note})" if plot_note else "")


def error_summary(predicted: np.ndarray, reference: np.ndarray, dimension_names: Sequence[str],
                  arm_columns: Sequence[int]) -> dict[str, Any]:
    """Per-dimension and overall MAE / RMSE / max |error| over the rows where the reference is finite.

    Args:
        predicted: ``[N, D]`` rows (chunk rows of all windows stacked).
        reference: ``[N, D]`` recorded rows in the same units; NaN where unknown.
        dimension_names: D names.
        arm_columns: columns averaged into ``arm_*`` (the joints; the gripper is reported on its own).

    Returns:
        ``{"steps", "per_dimension": {name: {"mae", "rmse", "max_abs"}}, "overall": {"mae", "rmse", "max_abs",
        "arm_mae", "arm_rmse", "arm_max_abs"}}``; values are None when no row has a reference.

    """
    pred = np.asarray(predicted, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if pred.shape != ref.shape or pred.ndim != 2 or pred.shape[1] != len(dimension_names):
        raise ValueError(f"predicted {pred.shape} and reference {ref.shape}; "
                         f"expected equal [N, {len(dimension_names)}]")
    valid = np.all(np.isfinite(ref), axis=1) & np.all(np.isfinite(pred), axis=1)
    err = pred[valid] - ref[valid]

    def stats(values: np.ndarray) -> dict[str, float | None]:
        if values.size == 0:
            return {"mae": None, "rmse": None, "max_abs": None}
        return {"mae": float(np.mean(np.abs(values))), "rmse": float(np.sqrt(np.mean(values**2))),
                "max_abs": float(np.max(np.abs(values)))}

    overall = stats(err)
    arm = stats(err[:, list(arm_columns)]) if len(arm_columns) else stats(np.zeros(0))
    return {
        "steps": int(valid.sum()),
        "per_dimension": {name: stats(err[:, i]) for i, name in enumerate(dimension_names)},
        "overall": {**overall, **{f"arm_{k}": v for k, v in arm.items()}},
    }


def mae_by_step(predicted: np.ndarray, reference: np.ndarray, columns: Sequence[int]) -> list[float | None]:
    """MAE over ``columns`` per chunk row: ``predicted`` and ``reference`` are ``[windows, chunk, D]``."""
    err = np.abs(np.asarray(predicted, dtype=np.float64) - np.asarray(reference, dtype=np.float64))[..., list(columns)]
    out: list[float | None] = []
    for k in range(err.shape[1]):
        rows = err[:, k]
        rows = rows[np.all(np.isfinite(rows), axis=1)]
        out.append(float(rows.mean()) if rows.size else None)
    return out


def evaluate(records: Sequence[ChunkRecord], references: Mapping[str, np.ndarray], hold: np.ndarray,
             dimension_names: Sequence[str], arm_columns: Sequence[int]) -> dict[str, Any]:
    """Errors of every mode against every reference, and of the hold-pose baseline.

    Args:
        records: chunks of one or more modes; each window appears once per mode.
        references: reference name -> ``[windows, chunk, D]`` rows aligned with ``windows`` (the sorted window
            indices of the records), NaN where unknown.
        hold: ``[windows, D]`` state at each window start (the baseline's prediction for every row).
        dimension_names: D names.
        arm_columns: the joint columns (see ``error_summary``).

    """
    windows = sorted({r.window for r in records})
    row = {w: i for i, w in enumerate(windows)}
    modes = sorted({r.mode for r in records})
    result: dict[str, Any] = {}
    for name, ref in references.items():
        entry: dict[str, Any] = {}
        chunk = ref.shape[1]
        for mode in modes:
            chosen = [r for r in records if r.mode == mode]
            pred = np.stack([np.asarray(r.actions, dtype=np.float64) for r in chosen])
            refs = np.stack([ref[row[r.window]] for r in chosen])
            summary = error_summary(pred.reshape(-1, pred.shape[-1]), refs.reshape(-1, refs.shape[-1]),
                                    dimension_names, arm_columns)
            summary["windows"] = len(chosen)
            summary["arm_mae_by_step"] = mae_by_step(pred, refs, arm_columns)
            entry[mode] = summary
        baseline = np.repeat(np.asarray(hold, dtype=np.float64)[:, None, :], chunk, axis=1)
        summary = error_summary(baseline.reshape(-1, baseline.shape[-1]), ref.reshape(-1, ref.shape[-1]),
                                dimension_names, arm_columns)
        summary["windows"] = len(windows)
        summary["arm_mae_by_step"] = mae_by_step(baseline, ref, arm_columns)
        entry["hold_baseline"] = summary
        result[name] = entry
    return result


def plot_chunks(mode: str, records: Sequence[ChunkRecord], recorded: Mapping[str, tuple[np.ndarray, np.ndarray]],
                dimension_names: Sequence[str], dt_ns: float, origin_ns: int, title: str) -> bytes:
    """PNG bytes: one panel per dimension, predicted chunks (one segment per window) over the recorded series.

    Args:
        mode: which records to draw.
        records: chunks (all modes; only ``mode`` is drawn).
        recorded: label -> (``[N]`` stamps ns, ``[N, D]`` values) drawn as step lines (zero-order hold).
        dimension_names: panel titles.
        dt_ns: seconds between rows x 1e9.
        origin_ns: time zero of the x axis.
        title: figure title.

    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    dims = len(dimension_names)
    cols = 2 if dims > 1 else 1
    rows = (dims + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 2.0 * rows + 0.6), squeeze=False, sharex=True)
    chosen = sorted((r for r in records if r.mode == mode), key=lambda r: r.window)
    styles = {"joint_states": ("tab:gray", "-"), "commands": ("tab:green", "--"), "state": ("tab:gray", "-"),
              "action": ("tab:green", "--")}
    for d, name in enumerate(dimension_names):
        ax = axes[d // cols][d % cols]
        for label, (stamps, values) in recorded.items():
            if len(stamps):
                color, line = styles.get(label, ("tab:gray", ":"))
                ax.step((np.asarray(stamps) - origin_ns) / 1e9, np.asarray(values)[:, d], where="post",
                        color=color, linestyle=line, linewidth=1.0, label=f"recorded {label.replace('_', ' ')}")
        for i, record in enumerate(chosen):
            times = (record.start_ns + np.rint(np.arange(len(record.actions)) * dt_ns) - origin_ns) / 1e9
            ax.plot(times, np.asarray(record.actions)[:, d], color="tab:blue", marker=".", markersize=3,
                    linewidth=1.2, label=f"predicted ({mode.replace('_', ' ')})" if i == 0 else None)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for d in range(dims, rows * cols):
        axes[d // cols][d % cols].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
