#!/usr/bin/env python3
"""The model latency of the first chunks of a real ``policy_node`` (tiny checkpoint, CPU), over Fast DDS.

Issue 10 bug 8 reported 7.5-14 s per chunk for the first 6-8 chunks on CPU. This starts the node from its console
script with the released profile's parameter file, publishes three 640x360 rgb8 cameras, joints and gripper at
10 Hz from this process, and prints ``model_latency`` of the first N ActionChunks, so the claim can be checked on
any machine (results: docs/engineering_notes.md).

    bash scripts/setup_venv.sh && bash scripts/setup_ros.sh && source scripts/ros_env.sh
    .venv/bin/python scripts/measure_first_chunks.py --chunks 12
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "ros"))

from ros_graph import DroidInputs, NodeProcess, RosPeer, droid_params, ros_session, write_params  # noqa: E402

from cosmos3_ros.engine.tiny_checkpoint import make_tiny_checkpoint  # noqa: E402

NS = "/first_chunks"
TASK = "put the marker in the cup"


def main() -> None:
    """Start the node, feed it at 10 Hz, print the first chunks' model latency (s)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=12, help="chunks to wait for (default 12)")
    parser.add_argument("--timeout", type=float, default=240.0, help="give up after this many seconds")
    args = parser.parse_args()
    from cosmos3_ros_msgs.msg import ActionChunk

    work = Path(tempfile.mkdtemp(prefix="first_chunks_"))
    checkpoint = make_tiny_checkpoint(work / "tiny", seed=0)
    with ros_session() as env:
        peer = RosPeer()
        params_file = write_params(work / "params.yaml", droid_params(NS, checkpoint, task=TASK))
        node = NodeProcess(params_file, work / "node.log", env)
        latencies: list[float] = []
        peer.node.create_subscription(ActionChunk, "/policy_node/action_chunk",
                                      lambda msg: latencies.append(msg.model_latency), 10)
        rng = np.random.default_rng(0)
        frames = {name: rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
                  for name in ("wrist", "exterior_1", "exterior_2")}
        inputs = DroidInputs(peer, NS, frames)
        inputs.wait_connected(120)
        inputs.send_task(TASK)
        start = time.monotonic()
        while len(latencies) < args.chunks and time.monotonic() - start < args.timeout:
            inputs.send()
            time.sleep(0.1)
        print("model_latency (s) of the first chunks:", [round(x, 2) for x in latencies], flush=True)
        node.stop()
        peer.close()


if __name__ == "__main__":
    main()
