"""The two measurement tables of docs/execution.md, as markdown, from the sweep results.

    .venv/bin/python bench/execution_tables.py            # reads bench/results/execution_sweep.json and
                                                          # bench/results/sim_loop_dds/ (summary + runs)

Simulated clock: one row per (latency, hand-over, horizon) of ``bench/execution_sweep.py``. Over DDS: one row per
configuration of ``bench/sim_loop_dds.py``; the worst seed for the goal columns, the median for the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("rate Hz", "chunks", "jump max rad", "jump mean rad", "jerk max", "starved s", "stale pts",
           "lat p50 ms", "lat p99 ms", "limit viol.", "gripper toggles", "e-stop -> hold ms", "cmds after e-stop",
           "dead-man -> hold ms")
# metric, format, worst-of-seeds ("max") or median ("median") for the DDS table
METRICS = (("control_rate_hz", "{:.1f}", "median"), ("chunks_executed", "{:.0f}", "median"),
           ("handover_jump_rad_max", "{:.4f}", "max"), ("handover_jump_rad_mean", "{:.4f}", "median"),
           ("handover_jerk_max", "{:.0f}", "max"), ("starved_s", "{:.2f}", "max"),
           ("stale_points_commanded", "{:.0f}", "max"), ("latency_ms_p50", "{:.0f}", "median"),
           ("latency_ms_p99", "{:.0f}", "max"), ("limit_violations", "{:.0f}", "max"),
           ("gripper_toggles", "{:.1f}", "median"), ("estop_hold_ms", "{:.1f}", "max"),
           ("commands_after_estop", "{:.0f}", "max"), ("deadman_hold_ms", "{:.0f}", "max"))


def _cells(values: dict) -> list[str]:
    return [fmt.format(values[key]) if values.get(key) is not None else "n/a" for key, fmt, _ in METRICS]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _handover(name: str, blend_steps: int) -> str:
    label = f"{name} (K={blend_steps})" if "blend" in name else name
    return f"**{label}**" if name == "prefix+blend" else label


def simulated_clock_table(path: Path = RESULTS / "execution_sweep.json") -> str:
    """``bench/execution_sweep.py``'s rows (already summarised over seeds)."""
    rows = json.loads(path.read_text())["rows"]
    lines = [_row(["latency s", "hand-over", "H", *COLUMNS]), _row(["---"] * (3 + len(COLUMNS)))]
    for r in rows:
        lines.append(_row([str(r['latency_s']), _handover(r["handover"], r["blend_steps"]), str(r["horizon"]),
                           *_cells(r)]))
    return "\n".join(lines)


def dds_table(folder: Path = RESULTS / "sim_loop_dds") -> str:
    """One row per ``lat<latency>_<handover>_s*`` group of ``bench/sim_loop_dds.py``'s runs."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for loop in sorted(folder.glob("lat*_s*/loop.json")):
        latency, rest = loop.parent.name[3:].split("_", 1)
        handover = rest.rsplit("_s", 1)[0]
        groups.setdefault((latency, handover), []).append(json.loads(loop.read_text()))
    order = sorted(groups, key=lambda k: (k[1] != "prefix+blend", float(k[0]), k[1]))
    lines = [_row(["latency s", "hand-over", "seeds", *COLUMNS]), _row(["---"] * (3 + len(COLUMNS)))]
    for key in order:
        runs = groups[key]
        values = {}
        for metric, _, how in METRICS:
            numbers = [float(r[metric]) for r in runs if r.get(metric) is not None]
            numbers = [v for v in numbers if not np.isnan(v)]
            values[metric] = (max(numbers) if how == "max" else float(np.median(numbers))) if numbers else None
        label = f"**{key[1]}**" if key[1] == "prefix+blend" else key[1]
        lines.append(_row([key[0], label, str(len(runs)), *_cells(values)]))
    return "\n".join(lines)


if __name__ == "__main__":
    print("Simulated clock:\n")
    print(simulated_clock_table())
    print("\nOver Fast DDS:\n")
    print(dds_table())
