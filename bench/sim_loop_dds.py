"""The DDS closed-loop runs of docs/execution.md: ``cosmos3-ros sim-loop`` per latency / hand-over / seed.

    source scripts/ros_env.sh && .venv/bin/python bench/sim_loop_dds.py [--seeds 5] [--duration 15]

Claims a ROS domain id with the test fixtures' lock (loopback discovery only), then runs each configuration as
its own process (the simulated FR3 is a process of its own inside each run); outputs in
``bench/results/sim_loop_dds/lat<latency>_<handover>_s<seed>/loop.{json,png}`` and, over the seeds,
``bench/results/sim_loop_dds/summary.json`` (worst value of each goal metric, median of the others).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test" / "ros"))
from ros_graph import claim_domain_id, ros_environment  # noqa: E402

# (latency s, hand-over, every seed?): the default hand-over at three latencies on every seed; the others once
RUNS = (("0.3", "prefix+blend", True), ("0.66", "prefix+blend", True), ("1.0", "prefix+blend", True),
        ("0.66", "none", False), ("0.66", "blend", False), ("0.66", "rollforward", False), ("0.66", "prefix", False))
# goal metrics: the worst seed counts (largest value)
WORST = ("starved_s", "stale_points_commanded", "limit_violations", "commands_after_estop", "estop_hold_ms",
         "deadman_hold_ms", "handover_jump_rad_max", "handover_jerk_max")
# the smallest lead at receipt of any trajectory (the controller's time to its first point; > 0: never late)
LEAST = ("receipt_lead_ms_min",)
MEDIAN = ("control_rate_hz", "chunks_executed", "handover_jump_rad_mean", "latency_ms_p50", "latency_ms_p99",
          "gripper_toggles")


def main() -> None:
    """Run every configuration in turn, then summarise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args()
    domain, lock = claim_domain_id()
    env = {**os.environ, **ros_environment(domain)}
    root = REPO / "bench" / "results" / "sim_loop_dds"
    root.mkdir(parents=True, exist_ok=True)
    summary = {}
    for latency, handover, every_seed in RUNS:
        runs = []
        for seed in range(args.seeds if every_seed else 1):
            out = root / f"lat{latency}_{handover}_s{seed}"
            with open(f"{out}.log", "w") as log:
                code = subprocess.call(
                    [str(Path(sys.executable).with_name("cosmos3-ros")), "sim-loop", "--model-latency", latency,
                     "--handover", handover, "--duration", str(args.duration), "--seed", str(seed), "--out", str(out)],
                    env=env, stdout=log, stderr=subprocess.STDOUT)
            print(latency, handover, seed, code, flush=True)
            if code == 0:
                runs.append(json.loads((out / "loop.json").read_text()))
        if runs:
            summary[f"{latency} s {handover}"] = {
                "seeds": len(runs),
                **{f"{k} (worst)": max(float(r[k]) for r in runs) for k in WORST},
                **{f"{k} (worst)": min(float(r[k]) for r in runs) for k in LEAST},
                **{f"{k} (median)": float(np.median([float(r[k]) for r in runs])) for k in MEDIAN},
            }
    (root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    lock.close()


if __name__ == "__main__":
    main()
