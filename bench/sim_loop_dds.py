"""The DDS closed-loop runs of docs/execution.md: ``cosmos3-ros sim-loop`` once per latency / hand-over.

    source scripts/ros_env.sh && .venv/bin/python bench/sim_loop_dds.py

Claims a ROS domain id with the test fixtures' lock (loopback discovery only), then runs each configuration as
its own process; outputs in ``bench/results/sim_loop_dds/lat<latency>_<handover>/loop.{json,png}``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test" / "ros"))
from ros_graph import claim_domain_id, ros_environment  # noqa: E402

RUNS = (("0.66", "none"), ("0.66", "blend"), ("0.66", "rollforward"), ("0.66", "prefix"),
        ("0.3", "prefix+blend"), ("0.66", "prefix+blend"), ("1.0", "prefix+blend"))


def main() -> None:
    """Run every configuration in turn."""
    domain, lock = claim_domain_id()
    env = {**os.environ, **ros_environment(domain)}
    for latency, handover in RUNS:
        out = REPO / "bench" / "results" / "sim_loop_dds" / f"lat{latency}_{handover}"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{out}.log", "w") as log:
            code = subprocess.call([str(Path(sys.executable).with_name("cosmos3-ros")), "sim-loop", "--model-latency",
                                    latency, "--handover", handover, "--duration", "15", "--out", str(out)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
        print(latency, handover, code, flush=True)
    lock.close()


if __name__ == "__main__":
    main()
