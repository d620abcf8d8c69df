#!/usr/bin/env python3
"""Measure the node's own overhead per chunk: snapshot -> published message, minus the model's time.

Runs ``PolicyNodeCore`` exactly as the rclpy node does (timer snapshot, hand-off to the inference thread,
image decoding, request building, output messages, CDR serialisation as the publish step) with the released
DROID profile's three cameras, against a model stand-in that returns at once (its time is subtracted anyway;
``--checkpoint`` runs a real checkpoint instead). CPU only; no ROS installation needed.

    python scripts/measure_ros_overhead.py --iterations 300 --encoding rgb8
    python scripts/measure_ros_overhead.py --encoding jpeg --json out/ros_overhead_jpeg.json
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosmos3_ros.processing.profiles import RELEASED_DROID_POLICY
from cosmos3_ros.processing.request import ActionPrediction, ActionRequest
from cosmos3_ros.runtime.action_chunk import RosbagsMessageFactory, make_header
from cosmos3_ros.runtime.node_core import PolicyNodeCore, load_action_model
from cosmos3_ros.runtime.parameters import resolve_parameters

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
CAMERAS = ("wrist", "exterior_1", "exterior_2")


class InstantModel:
    """Returns a [32, 8] chunk at once (the overhead measurement subtracts model time in any case)."""

    profile = RELEASED_DROID_POLICY

    def predict(self, request: ActionRequest) -> ActionPrediction:
        """The state repeated 32 times."""
        actions = np.tile(np.asarray(request.state, np.float32), (32, 1))
        p = self.profile
        return ActionPrediction(actions=actions, rollout=None, mode="policy", profile=p.name,
                                domain_name=p.domain_name, domain_id=p.domain_id,
                                dimension_names=p.dimension_names, fps=p.fps, seed=0)


class TimedModel:
    """Wraps a model and records the wall time of each ``predict``."""

    def __init__(self, model):
        self.model = model
        self.profile = model.profile
        self.last_s = 0.0

    def predict(self, request):
        """Forward to the wrapped model, timing it."""
        start = time.perf_counter()
        try:
            return self.model.predict(request)
        finally:
            self.last_s = time.perf_counter() - start


def camera_frame(content: str, height: int, width: int, seed: int) -> np.ndarray:
    """A test frame: ``noise`` (uniform random pixels, worst case for jpeg/png) or ``scene``.

    ``scene`` is shaded shapes with sensor noise, which compresses like a camera image (about 40 KB as jpeg q90
    at 640x360, against 200 KB for noise).
    """
    rng = np.random.default_rng(seed)
    if content == "noise":
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([90 + 60 * x / width, 80 + 70 * y / height, 120 - 40 * x / width], axis=2)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(10, 80)
        mask = (y - cy) ** 2 + (x - cx) ** 2 < r**2
        image[mask] = rng.uniform(0, 255, 3) * (0.8 + 0.2 * (y[mask, None] - cy + r) / (2 * r))
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def camera_messages(factory, encoding: str, stamp_ns: int, frames: dict[str, np.ndarray]) -> dict[str, object]:
    """Three camera messages (as a driver would publish them), decoded from CDR like a subscriber gets them."""
    import io

    from PIL import Image

    types = factory.typestore.types
    out = {}
    for name, rgb in frames.items():
        header = make_header(factory, stamp_ns, name)
        if encoding in ("jpeg", "png"):
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG" if encoding == "jpeg" else "PNG", quality=90)
            msg = types["sensor_msgs/msg/CompressedImage"](header=header, format=encoding,
                                                          data=np.frombuffer(buf.getvalue(), np.uint8).copy())
        else:
            pixels = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
            msg = types["sensor_msgs/msg/Image"](header=header, height=rgb.shape[0], width=rgb.shape[1],
                                                encoding=encoding, is_bigendian=0, step=rgb.shape[1] * 3,
                                                data=np.ascontiguousarray(pixels).reshape(-1))
        out[name] = factory.deserialize(factory.serialize(msg), msg.__msgtype__)
    return out


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Run the loop; return per-stage percentiles in milliseconds."""
    factory = RosbagsMessageFactory()
    params = {"checkpoint": args.checkpoint or "/instant", "device": "cpu", "task": "put the cup in the sink",
              "dry_run": not args.publish_trajectory, "max_observation_age": 1e3, "execution_horizon": 32}
    suffix = "/compressed" if args.encoding in ("jpeg", "png") else "/image_raw"
    params["camera_topics"] = [f"/{name}{suffix}" for name in CAMERAS]
    if args.checkpoint:
        params["steps"] = 1
        model = TimedModel(load_action_model(resolve_parameters(params)))
    else:
        model = TimedModel(InstantModel())

    published = threading.Event()
    publish_times: list[float] = []

    def publish(key: str, msg: object) -> None:
        factory.serialize(msg)  # rclpy serialises in publish(); count a CDR encode of every output
        if key == "action_chunk":
            publish_times.append(time.perf_counter())
            if not params["dry_run"]:
                return
            published.set()
        elif key == "joint_trajectory":
            published.set()

    clock_now = [0.0]
    core = PolicyNodeCore(model, params, clock=lambda: clock_now[0], publish=publish, factory=factory)
    callbacks = {s.topic: s.callback for s in core.subscriptions}
    frames = {name: camera_frame(args.content, args.height, args.width, seed) for seed, name in enumerate(CAMERAS)}
    joint_types = factory.typestore.types
    overhead, model_ms, callbacks_ms = [], [], []
    try:
        for i in range(args.warmup + args.iterations):
            stamp = 1_000_000_000 + i * 100_000_000
            clock_now[0] = stamp / 1e9 + 0.01
            messages = camera_messages(factory, args.encoding, stamp, frames)
            joint = joint_types["sensor_msgs/msg/JointState"](
                header=make_header(factory, stamp, "base"), name=[*ARM, "fr3_finger_joint1"],
                position=np.linspace(-1, 1, 8), velocity=np.zeros(0), effort=np.zeros(0))
            t_callbacks = time.perf_counter()
            for name, topic in zip(CAMERAS, params["camera_topics"], strict=True):
                callbacks[topic](messages[name])
            callbacks["/joint_states"](joint)
            published.clear()
            t_snapshot = time.perf_counter()
            assert core.on_timer() == "submitted"
            if not published.wait(60):
                raise RuntimeError(f"no chunk published for iteration {i}: {core.diagnostics.last_error}")
            t_done = time.perf_counter()
            assert core.worker.wait_idle(10)
            if i >= args.warmup:
                overhead.append((t_done - t_snapshot - model.last_s) * 1e3)
                model_ms.append(model.last_s * 1e3)
                callbacks_ms.append((t_snapshot - t_callbacks) * 1e3)
    finally:
        core.shutdown(30)

    def stats(values: list[float]) -> dict[str, float]:
        arr = np.asarray(values)
        return {"p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90)),
                "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}

    return {
        "what": "snapshot (timer) -> last output published, minus model time; ms on CPU",
        "encoding": args.encoding, "content": args.content, "cameras": f"3 x {args.width}x{args.height}",
        "iterations": args.iterations,
        "publish_trajectory": args.publish_trajectory, "model": args.checkpoint or "instant stand-in",
        "overhead_ms": stats(overhead), "model_ms": stats(model_ms), "subscription_callbacks_ms": stats(callbacks_ms),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure, print JSON, exit 1 when the p99 overhead is over budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--encoding", default="rgb8", choices=("rgb8", "bgr8", "jpeg", "png"))
    parser.add_argument("--content", default="scene", choices=("scene", "noise"),
                        help="camera image content (matters for jpeg/png decode time)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--publish-trajectory", action="store_true",
                        help="dry_run off: also build and serialise the JointTrajectory (counted in the overhead)")
    parser.add_argument("--checkpoint", help="run this checkpoint on CPU (1 step) instead of the instant stand-in")
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--budget-ms", type=float, default=10.0, help="exit 1 if the p99 overhead exceeds this")
    args = parser.parse_args(argv)
    result = measure(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0 if result["overhead_ms"]["p99"] <= args.budget_ms else 1


if __name__ == "__main__":
    sys.exit(main())
