"""Test helpers: real ROS 2 messages as CDR bytes (rosbags, Jazzy types), a fake model, a recording publisher."""

from __future__ import annotations

import io
import threading
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from cosmos3_ros.processing.profiles import Profile
from cosmos3_ros.processing.request import ActionPrediction, ActionRequest
from cosmos3_ros.runtime.action_chunk import ACTION_CHUNK_TYPE, RosbagsMessageFactory, make_header, make_time

FACTORY = RosbagsMessageFactory()
TYPES = FACTORY.typestore.types


def through_cdr(msg: Any) -> Any:
    """Serialise to CDR bytes and decode them again, as a subscriber would receive the message."""
    data = FACTORY.serialize(msg)
    assert isinstance(data, bytes) and len(data) > 0
    return FACTORY.deserialize(data, msg.__msgtype__)


def header(stamp_ns: int, frame_id: str = "camera") -> Any:
    return make_header(FACTORY, stamp_ns, frame_id)


def image_msg(rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8", row_padding: int = 0,
              step: int | None = None, data: bytes | None = None, is_bigendian: int = 0) -> Any:
    """``sensor_msgs/Image`` holding ``rgb`` [H, W, 3] converted to ``encoding`` (+ padding bytes per row)."""
    height, width = rgb.shape[:2]
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[:, :, ::-1]
    elif encoding == "rgba8":
        pixels = np.concatenate([rgb, np.full((height, width, 1), 255, np.uint8)], axis=2)
    elif encoding == "bgra8":
        pixels = np.concatenate([rgb[:, :, ::-1], np.full((height, width, 1), 7, np.uint8)], axis=2)
    elif encoding == "mono8":
        pixels = rgb[:, :, :1]
    else:
        pixels = rgb
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    if row_padding:
        rows = np.concatenate([rows, np.full((height, row_padding), 0xAB, np.uint8)], axis=1)
    payload = np.frombuffer(data, np.uint8) if data is not None else rows.reshape(-1)
    msg = TYPES["sensor_msgs/msg/Image"](
        header=header(stamp_ns), height=height, width=width, encoding=encoding, is_bigendian=is_bigendian,
        step=step if step is not None else rows.shape[1], data=np.ascontiguousarray(payload, dtype=np.uint8),
    )
    return through_cdr(msg)


def encode(rgb: np.ndarray, codec: str, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG" if codec == "jpeg" else "PNG", quality=quality)
    return buf.getvalue()


def compressed_msg(rgb: np.ndarray | None, stamp_ns: int, fmt: str = "jpeg", data: bytes | None = None) -> Any:
    """``sensor_msgs/CompressedImage``: ``rgb`` encoded as jpeg/png (or raw ``data``)."""
    if data is None:
        assert rgb is not None
        data = encode(rgb, "png" if "png" in fmt else "jpeg")
    msg = TYPES["sensor_msgs/msg/CompressedImage"](
        header=header(stamp_ns), format=fmt, data=np.frombuffer(data, np.uint8).copy()
    )
    return through_cdr(msg)


def joint_state_msg(names: list[str], positions: list[float], stamp_ns: int) -> Any:
    msg = TYPES["sensor_msgs/msg/JointState"](
        header=header(stamp_ns, "base"), name=list(names), position=np.asarray(positions, np.float64),
        velocity=np.zeros(0), effort=np.zeros(0),
    )
    return through_cdr(msg)


def string_msg(text: str) -> Any:
    return through_cdr(TYPES["std_msgs/msg/String"](data=text))


def action_chunk_msg(actions: np.ndarray, stamp_ns: int, names: tuple[str, ...]) -> Any:
    actions = np.asarray(actions, np.float32)
    msg = TYPES[ACTION_CHUNK_TYPE](
        header=header(stamp_ns, "base"), mode="policy", profile="p", action_space="joint_position",
        domain_name="droid_lerobot", domain_id=8, dimension_names=list(names), chunk_length=actions.shape[0],
        action_dim=actions.shape[1], dt=1 / 15, start_time=make_time(FACTORY, stamp_ns), data=actions.reshape(-1),
        sequence_number=1, model_latency=0.1,
    )
    return through_cdr(msg)


def joint_trajectory_msg(names: list[str], rows: np.ndarray, stamp_ns: int) -> Any:
    points = [
        TYPES["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=np.asarray(row, np.float64), velocities=np.zeros(0), accelerations=np.zeros(0),
            effort=np.zeros(0), time_from_start=TYPES["builtin_interfaces/msg/Duration"](sec=0, nanosec=k),
        )
        for k, row in enumerate(rows)
    ]
    msg = TYPES["trajectory_msgs/msg/JointTrajectory"](
        header=header(stamp_ns, "base"), joint_names=names, points=points
    )
    return through_cdr(msg)


def stamp_ns_of(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


class FakeClock:
    """A settable node clock in seconds."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """``publish(key, msg)`` that round-trips every message through CDR, thread-safe."""

    def __init__(self) -> None:
        self.messages: dict[str, list[Any]] = defaultdict(list)
        self.raw_sizes: dict[str, list[int]] = defaultdict(list)
        self._lock = threading.Lock()
        self._event = threading.Condition(self._lock)

    def __call__(self, key: str, msg: Any) -> None:
        data = FACTORY.serialize(msg)
        decoded = FACTORY.deserialize(data, msg.__msgtype__)
        with self._lock:
            self.messages[key].append(decoded)
            self.raw_sizes[key].append(len(data))
            self._event.notify_all()

    def wait_for(self, key: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        with self._lock:
            ok = self._event.wait_for(lambda: len(self.messages[key]) >= count, timeout)
            assert ok, f"timed out waiting for {count} {key!r} messages (got {len(self.messages[key])})"
            return list(self.messages[key])


class FakeModel:
    """Stands in for ActionPredictor: records requests and returns actions derived from the inputs.

    Row k, column d of the actions = ``k + 0.01 * d + state[d]`` (state 0 when absent), so tests can check
    values end to end; ``delay_s`` makes it deliberately slow.
    """

    def __init__(self, profile: Profile, delay_s: float = 0.0, rollout_frames: int = 0,
                 fail_with: Exception | None = None, keep_requests: bool = True):
        self.profile = profile
        self.keep_requests = keep_requests
        self.calls = 0
        self.delay_s = delay_s
        self.rollout_frames = rollout_frames
        self.fail_with = fail_with
        self.requests: list[ActionRequest] = []
        self.profiles_served: list[Profile] = [profile]
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def with_profile(self, profile: Profile) -> FakeModel:
        twin = FakeModel(profile, self.delay_s, self.rollout_frames, self.fail_with, self.keep_requests)
        twin.requests = self.requests
        twin.profiles_served = [*self.profiles_served, profile]
        return twin

    def predict(self, request: ActionRequest) -> ActionPrediction:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            self.calls += 1
            if self.keep_requests:
                self.requests.append(request)
            if self.fail_with is not None:
                raise self.fail_with
            profile = self.profile
            mode = request.mode or profile.mode
            if mode == "forward_dynamics":
                actions = np.asarray(request.actions, np.float32)[: profile.chunk]
            else:
                rows = np.arange(profile.chunk, dtype=np.float32)[:, None]
                cols = 0.01 * np.arange(profile.raw_action_dim, dtype=np.float32)[None, :]
                state = np.zeros(profile.raw_action_dim, np.float32)
                if request.state is not None:
                    state = np.asarray(request.state, np.float32)
                actions = rows + cols + state[None, :]
            rollout = None
            if self.rollout_frames:
                rollout = np.linspace(0, 1, self.rollout_frames * 8 * 12 * 3, dtype=np.float32).reshape(
                    self.rollout_frames, 8, 12, 3)
            return ActionPrediction(
                actions=actions.astype(np.float32), rollout=rollout, mode=mode, profile=profile.name,
                domain_name=profile.domain_name, domain_id=profile.domain_id,
                dimension_names=profile.dimension_names, fps=profile.fps, seed=profile.seed,
                timings_ms={"total": self.delay_s * 1e3},
            )
        finally:
            with self._lock:
                self.active -= 1


def small_profile(profile: Profile, **changes: Any) -> Profile:
    """A copy of a profile with changed fields (e.g. a shorter chunk for fast tests)."""
    return replace(profile, **changes)
