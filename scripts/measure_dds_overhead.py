#!/usr/bin/env python3
"""Measure over Fast DDS: delivered camera rates into policy_node and camera stamp -> ActionChunk receipt.

Starts ``policy_node`` as its own process (the released DROID profile, a model stand-in that returns at once, so
the measurement is the graph's, not the network's; model time is subtracted in any case) and, in this process,
an rclpy node that publishes three 640x360 rgb8 cameras, the arm and gripper joint states and the task.

1. Delivered rate: the cameras at ``--camera-rate`` Hz for ``--duration`` s; the node's /diagnostics input rates.
2. Latency: one observation at a time (all inputs stamped alike); for each, receipt time of its ActionChunk minus
   the stamp minus the chunk's ``model_latency``. With ``--snapshot-trigger event`` (the node's default) the
   snapshot is taken when the frame that completes the set arrives; with ``timer`` at the next tick of the
   ``--inference-rate`` timer (100 Hz, the parameter's maximum: up to 10 ms of waiting). "After snapshot"
   subtracts the observation's age at the snapshot (from /diagnostics) and so leaves processing + DDS out.

    source scripts/ros_env.sh
    python scripts/measure_dds_overhead.py                                   # Fast DDS defaults
    FASTRTPS_DEFAULT_PROFILES_FILE=config/fastdds_large_images.xml python scripts/measure_dds_overhead.py

Discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless set otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NS = "/dds_measure"
CAMERAS = ("wrist", "exterior_1", "exterior_2")
ARM = [f"fr3_joint{i}" for i in range(1, 8)]


def serve(args: argparse.Namespace) -> None:
    """The node process: PolicyNode with an instant model stand-in, until SIGINT / SIGTERM."""
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    from cosmos3_ros.processing.profiles import RELEASED_DROID_POLICY
    from cosmos3_ros.processing.request import ActionPrediction
    from cosmos3_ros.ros.policy_node import PolicyNode
    from cosmos3_ros.ros.spinning import Spinner, make_executor

    class InstantModel:
        profile = RELEASED_DROID_POLICY

        def predict(self, request):
            p = self.profile
            return ActionPrediction(actions=np.tile(np.asarray(request.state, np.float32), (32, 1)), rollout=None,
                                    mode="policy", profile=p.name, domain_name=p.domain_name,
                                    domain_id=p.domain_id, dimension_names=p.dimension_names, fps=p.fps, seed=0)

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = PolicyNode(model=InstantModel(), namespace=NS, parameter_overrides=[
        Parameter("checkpoint", value="instant-stand-in"), Parameter("device", value="cpu"),
        Parameter("camera_topics", value=[f"{NS}/{c}/image_raw" for c in CAMERAS]),
        Parameter("joint_state_topic", value=f"{NS}/joint_states"),
        Parameter("gripper_joint_state_topic", value=f"{NS}/gripper/joint_states"),
        # /diagnostics at 4 Hz (default 1 Hz): each sample's snapshot age is read from them. At 20 Hz their
        # building (~1 ms each on the executor thread) was a measurable part of the load being measured.
        Parameter("inference_rate", value=args.inference_rate), Parameter("diagnostics_period", value=0.25),
        Parameter("max_observation_age", value=1.0), Parameter("task", value="measure the graph"),
        Parameter("snapshot_trigger", value=args.snapshot_trigger),
    ])
    executor = make_executor()
    executor.add_node(node)
    spinner = Spinner(executor, "dds-measure-node")
    print("serving", flush=True)
    while not stop.wait(0.2):
        pass
    spinner.stop()  # first: no callback runs while the node tears down
    node.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    rclpy.get_default_context().destroy()  # the DDS participant and its shared-memory files
    os._exit(0)


class Client:
    """The camera / joint publisher and the ActionChunk and /diagnostics listener."""

    def __init__(self, width: int, height: int, serialized: bool = False) -> None:
        import rclpy
        from cosmos3_ros_msgs.msg import ActionChunk
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import Image, JointState

        rclpy.init()
        self.node = rclpy.create_node("dds_measure_client")
        rng = np.random.default_rng(0)
        self.frames = {c: rng.integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes() for c in CAMERAS}
        self.width, self.height = width, height
        # serialized: each frame's CDR bytes made once; send() writes the stamp into them and publishes the
        # bytes, which costs what a C++ camera driver's publish costs (one copy into the middleware) instead of
        # building a 691 KB Python message per frame
        self.cdr = {c: bytearray(serialize_message(Image(height=height, width=width, encoding="rgb8",
                                                         step=width * 3, data=self.frames[c])))
                    for c in CAMERAS} if serialized else None
        self.Image, self.JointState = Image, JointState
        self.cameras = [self.node.create_publisher(Image, f"{NS}/{c}/image_raw", 1) for c in CAMERAS]
        self.joints = self.node.create_publisher(JointState, f"{NS}/joint_states", 10)
        self.gripper = self.node.create_publisher(JointState, f"{NS}/gripper/joint_states", 10)
        self.lock = threading.Lock()
        self.receipts: dict[tuple[int, int], tuple[float, float]] = {}
        self.diagnostics: dict[str, str] = {}
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(ActionChunk, f"{NS}/policy_node/action_chunk", self._on_chunk, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        from cosmos3_ros.ros.spinning import Spinner

        self._spinner = Spinner(self.executor, "dds-measure-client")

    def _on_chunk(self, msg) -> None:
        received = time.time()
        with self.lock:
            self.receipts[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = (received, msg.model_latency)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(f"{NS}/policy_node:"):
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    def send(self):
        """Publish one observation (all inputs stamped now); returns the stamp as (sec, nanosec)."""
        stamp = self.node.get_clock().now().to_msg()
        for pub, camera in zip(self.cameras, CAMERAS, strict=True):
            if self.cdr is not None:
                # CDR: a 4-byte encapsulation header, then header.stamp (int32 sec, uint32 nanosec), little endian
                struct.pack_into("<iI", self.cdr[camera], 4, stamp.sec, stamp.nanosec)
                pub.publish(bytes(self.cdr[camera]))
                continue
            image = self.Image(height=self.height, width=self.width, encoding="rgb8", step=self.width * 3,
                               data=self.frames[camera])
            image.header.stamp = stamp
            pub.publish(image)
        for pub, names, positions in ((self.joints, ARM, [0.0] * 7), (self.gripper, ["fr3_finger_joint1"], [0.04])):
            state = self.JointState(name=names, position=positions)
            state.header.stamp = stamp
            pub.publish(state)
        return (stamp.sec, stamp.nanosec)

    def close(self) -> None:
        """Stop spinning and remove the DDS participant (and its shared-memory files)."""
        import rclpy

        self._spinner.stop()
        self.node.destroy_node()
        rclpy.try_shutdown()
        rclpy.get_default_context().destroy()

    def wait(self, predicate, timeout: float) -> bool:
        """Poll ``predicate`` (under the lock) until true or ``timeout`` s pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return True
            time.sleep(0.002)
        return False


def percentiles(values: list[float]) -> dict[str, float]:
    """Count, p50, p99 and max in milliseconds of durations in seconds."""
    a = np.asarray(values) * 1e3
    return {"n": len(values), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2)}


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Start the node process, run both measurements, stop the node by its pid."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    log = tempfile.NamedTemporaryFile("w+", prefix="dds_measure_node_", suffix=".log", delete=False)  # noqa: SIM115
    node = subprocess.Popen([sys.executable, __file__, "--serve", "--inference-rate", str(args.inference_rate),
                             "--snapshot-trigger", args.snapshot_trigger],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    result: dict[str, object] = {"profile_file": os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE", "(Fast DDS default)"),
                                 "width": args.width, "height": args.height}
    try:
        deadline = time.monotonic() + 120
        while "serving" not in Path(log.name).read_text():
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node did not start:\n{Path(log.name).read_text()}")
            time.sleep(0.1)
        client = Client(args.width, args.height, serialized=args.publisher == "serialized")
        if not client.wait(lambda: all(p.get_subscription_count() for p in client.cameras)
                           and "input rate wrist (Hz)" in client.diagnostics, 30):
            raise RuntimeError("node not connected")
        # 1. delivered rate
        start = time.monotonic()
        period = 1.0 / args.camera_rate
        sent = 0
        while time.monotonic() - start < args.duration:
            client.send()
            sent += 1
            time.sleep(max(0.0, start + sent * period - time.monotonic()))
        with client.lock:
            diag = dict(client.diagnostics)
        result["camera_rate_sent_hz"] = args.camera_rate
        result["delivered_hz"] = {c: float(diag[f"input rate {c} (Hz)"]) for c in CAMERAS}
        result["skipped_unsynchronised"] = int(diag.get("skipped: unsynchronised", 0))
        result["snapshots_submitted"] = int(diag.get("snapshots submitted", 0))
        time.sleep(0.5)
        # 2. latency, one observation in flight
        end_to_end, after_snapshot, published = [], [], []
        last_sent = 0.0
        for _ in range(args.samples):
            with client.lock:
                published_before = int(client.diagnostics.get("chunks published", 0))
            # one observation at a time, spaced beyond the node's rate cap (1 / inference_rate): a set that comes
            # sooner waits for the cap by design, which is not what this measures
            time.sleep(max(0.0, last_sent + 1.2 / args.inference_rate - time.time()))
            key = client.send()
            sent_at = key[0] + key[1] / 1e9
            last_sent = sent_at
            published.append(time.time() - sent_at)
            if not client.wait(lambda k=key: k in client.receipts, 1.0):
                continue
            if not client.wait(lambda n=published_before: int(client.diagnostics.get("chunks published", 0)) > n,
                               2.0):
                continue
            with client.lock:
                received, model_s = client.receipts[key]
                age = float(client.diagnostics["observation age at snapshot (s)"])
            end_to_end.append(received - sent_at - model_s)
            after_snapshot.append(received - sent_at - model_s - age)
            time.sleep(0.02)
        result["stamp_to_chunk_minus_model"] = percentiles(end_to_end)
        result["snapshot_to_chunk_minus_model"] = percentiles(after_snapshot)
        # the publisher's own part: stamp -> its last publish call returned (Python messages of 691 KB)
        result["stamp_to_last_publish_returned"] = percentiles(published)
        result["inference_rate_hz"] = args.inference_rate
        result["snapshot_trigger"] = args.snapshot_trigger
        result["publisher"] = args.publisher
        client.close()
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        os.unlink(log.name)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    from cosmos3_ros.ros.fastdds_shm import fastdds_shm_files, remove_fastdds_shm

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--camera-rate", type=float, default=10.0, help="camera rate for the delivery test (Hz)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of camera traffic (rate test)")
    parser.add_argument("--samples", type=int, default=200, help="observations of the latency test")
    parser.add_argument("--inference-rate", type=float, default=100.0, help="node timer rate (Hz)")
    parser.add_argument("--snapshot-trigger", choices=("event", "timer"), default="event",
                        help="the node's snapshot_trigger (event: on the frame that completes a set)")
    parser.add_argument("--publisher", choices=("python", "serialized"), default="python",
                        help="python: an Image message built per frame (a Python camera driver); serialized: "
                             "CDR bytes made once, the stamp written in (a C++ driver's publishing cost)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    before = fastdds_shm_files()
    result = measure(args)
    remove_fastdds_shm(before)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
