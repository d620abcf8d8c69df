"""Hand-over sweep on the simulated clock: model latency x hand-over option x seeds -> a markdown table.

    .venv/bin/python bench/execution_sweep.py --out bench/results/execution_sweep.json

Each run: 20 s of closed loop (scripted policy, disagreement 0.05 rad) plus the e-stop and dead-man scenarios.
Reported: mean over seeds, except *_max columns (largest over seeds).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from cosmos3_ros.sim.loop import LoopConfig, run_loop

OPTIONS = (("none", 4), ("blend", 4), ("blend", 8), ("rollforward", 4), ("prefix", 4), ("prefix+blend", 4))


def summarise(runs: list[dict]) -> dict:
    """Mean over seeds; max over seeds for the *_max and p99 metrics and the counts that must be zero."""
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if not values:
            continue
        if key.endswith("_max") or key in ("latency_ms_p99", "starved_s", "stale_points_commanded",
                                           "limit_violations", "commands_after_estop", "estop_hold_ms",
                                           "deadman_hold_ms"):
            out[key] = float(np.nanmax(values))
        else:
            out[key] = float(np.nanmean(values))
    return out


def main() -> None:
    """Run the sweep and write the JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.3, 0.66, 1.0])
    parser.add_argument("--horizons", type=int, nargs="*", default=[], help="also sweep execution_horizon")
    parser.add_argument("--out", default="bench/results/execution_sweep.json")
    args = parser.parse_args()
    rows = []
    for latency in args.latencies:
        for handover, blend in OPTIONS:
            runs = [run_loop(LoopConfig(handover=handover, blend_steps=blend, model_latency_s=latency, seed=seed,
                                        duration_s=args.duration, execution_horizon=args.horizon))[0]
                    for seed in range(args.seeds)]
            rows.append({"latency_s": latency, "handover": handover, "blend_steps": blend,
                         "horizon": args.horizon, **summarise(runs)})
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}))
    for horizon in args.horizons:
        for latency in args.latencies:
            runs = [run_loop(LoopConfig(handover="prefix+blend", model_latency_s=latency, seed=seed,
                                        duration_s=args.duration, execution_horizon=horizon))[0]
                    for seed in range(args.seeds)]
            rows.append({"latency_s": latency, "handover": "prefix+blend", "blend_steps": 4, "horizon": horizon,
                         **summarise(runs)})
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seeds": args.seeds, "duration_s": args.duration, "rows": rows},
                                         indent=1, default=lambda v: None if isinstance(v, float) and
                                         math.isnan(v) else v) + "\n")


if __name__ == "__main__":
    main()
