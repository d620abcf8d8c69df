"""Small synthetic bags for the bag labeller, written with the ``rosbags`` writers (no bag files are committed).

Frames show a bright square moving right by ``SQUARE_STEP_PX`` per camera frame; joint ``i`` moves linearly at
``JOINT_SPEED[i]`` rad/s; the gripper (8th position) closes at ``GRIPPER_SPEED`` per second. Messages are logged
``LOG_DELAY_NS`` after their header stamp so tests can tell the two clocks apart.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

T0_NS = 1_700_000_000_000_000_000  # header stamps start here (an epoch time, as on a real robot)
LOG_DELAY_NS = 3_000_000
SQUARE_STEP_PX = 4
JOINT_START = np.array([0.0, -0.6, 0.0, -2.2, 0.0, 1.6, 0.8])
JOINT_SPEED = np.array([0.10, -0.05, 0.20, 0.15, -0.10, 0.05, 0.30])
GRIPPER_SPEED = 0.4
JOINT_NAMES = [*(f"fr3_joint{i}" for i in range(1, 8)), "gripper"]


@dataclass(frozen=True)
class CameraSpec:
    """One camera topic: ``rgb8`` Image, a different raw encoding, or ``jpeg`` CompressedImage."""

    topic: str
    rate_hz: float
    frames: int
    hw: tuple[int, int] = (128, 160)
    encoding: str = "rgb8"  # rgb8 | bgr8 | 32FC1 | jpeg
    first_ns: int = T0_NS
    corrupt: tuple[int, ...] = ()  # jpeg frames whose data is cut off after the header


@dataclass(frozen=True)
class BagSpec:
    """What to record."""

    cameras: Sequence[CameraSpec]
    joint_topic: str | None = None
    joint_rate_hz: float = 30.0
    joint_duration_s: float = 0.0
    task_topic: str | None = None
    tasks: Sequence[tuple[float, str]] = field(default_factory=tuple)  # (seconds after T0, sentence)
    command_topic: str | None = None  # JointTrajectory stamped t whose one point is the state at t + 1/15 s
    command_rate_hz: float = 15.0


def stamp(first_ns: int, n: int, rate_hz: float) -> int:
    """Header stamp of message ``n`` of a topic at ``rate_hz``."""
    return first_ns + round(n * 1e9 / rate_hz)


def frame_rgb(n: int, hw: tuple[int, int]) -> np.ndarray:
    """Frame ``n``: a bright square at column ``8 + 4n`` on a dark gradient."""
    h, w = hw
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:, :, 2] = np.linspace(20, 80, w, dtype=np.uint8)[None, :]
    size = max(8, h // 6)
    x = (8 + SQUARE_STEP_PX * n) % max(1, w - size)
    y = h // 3
    img[y:y + size, x:x + size] = (240, 200, 40)
    return img


def joint_state_at(t_s: float) -> np.ndarray:
    """``[q1..q7, gripper]`` at ``t_s`` seconds after ``T0_NS``."""
    return np.concatenate([JOINT_START + JOINT_SPEED * t_s, [min(1.0, GRIPPER_SPEED * t_s)]])


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _messages(spec: BagSpec, types: Any, ros1: bool) -> list[tuple[int, str, str, Any]]:
    """``(log_ns, topic, msgtype, message)`` of the whole bag."""

    def header(stamp_ns: int, frame_id: str) -> Any:
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        time = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
        if ros1:
            return types["std_msgs/msg/Header"](seq=0, stamp=time, frame_id=frame_id)
        return types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    out: list[tuple[int, str, str, Any]] = []
    for cam in spec.cameras:
        for n in range(cam.frames):
            t = stamp(cam.first_ns, n, cam.rate_hz)
            rgb = frame_rgb(n, cam.hw)
            if cam.encoding == "jpeg":
                payload = _jpeg(rgb)[:40] if n in cam.corrupt else _jpeg(rgb)
                msg = types["sensor_msgs/msg/CompressedImage"](
                    header=header(t, "camera"), format="jpeg", data=np.frombuffer(payload, np.uint8).copy())
                out.append((t + LOG_DELAY_NS, cam.topic, "sensor_msgs/msg/CompressedImage", msg))
                continue
            if cam.encoding == "32FC1":
                pixels = rgb[:, :, 0].astype(np.float32) / 255.0
                data, step = pixels.view(np.uint8).reshape(-1), cam.hw[1] * 4
            else:
                pixels = rgb if cam.encoding == "rgb8" else rgb[:, :, ::-1]
                data, step = np.ascontiguousarray(pixels).reshape(-1), cam.hw[1] * 3
            msg = types["sensor_msgs/msg/Image"](
                header=header(t, "camera"), height=cam.hw[0], width=cam.hw[1], encoding=cam.encoding,
                is_bigendian=0, step=step, data=np.ascontiguousarray(data, dtype=np.uint8))
            out.append((t + LOG_DELAY_NS, cam.topic, "sensor_msgs/msg/Image", msg))
    if spec.joint_topic:
        count = int(spec.joint_duration_s * spec.joint_rate_hz) + 1
        for n in range(count):
            t = stamp(T0_NS, n, spec.joint_rate_hz)
            values = joint_state_at((t - T0_NS) / 1e9)
            msg = types["sensor_msgs/msg/JointState"](
                header=header(t, "base"), name=list(JOINT_NAMES), position=values.astype(np.float64),
                velocity=np.zeros(0), effort=np.zeros(0))
            out.append((t + LOG_DELAY_NS, spec.joint_topic, "sensor_msgs/msg/JointState", msg))
    if spec.command_topic:
        count = int(spec.joint_duration_s * spec.command_rate_hz) + 1
        for n in range(count):
            t = stamp(T0_NS, n, spec.command_rate_hz)
            target = joint_state_at((t - T0_NS) / 1e9 + 1 / 15)
            point = types["trajectory_msgs/msg/JointTrajectoryPoint"](
                positions=target, velocities=np.zeros(0), accelerations=np.zeros(0), effort=np.zeros(0),
                time_from_start=types["builtin_interfaces/msg/Duration"](sec=0, nanosec=round(1e9 / 15)))
            msg = types["trajectory_msgs/msg/JointTrajectory"](
                header=header(t, "base"), joint_names=list(JOINT_NAMES), points=[point])
            out.append((t + LOG_DELAY_NS, spec.command_topic, "trajectory_msgs/msg/JointTrajectory", msg))
    if spec.task_topic:
        for at_s, text in spec.tasks:
            out.append((T0_NS + round(at_s * 1e9), spec.task_topic, "std_msgs/msg/String",
                        types["std_msgs/msg/String"](data=text)))
    out.sort(key=lambda item: item[0])
    return out


def write_bag(path: Path, spec: BagSpec, storage: str = "mcap") -> Path:
    """Write ``spec`` as a rosbag2 folder (``mcap`` / ``sqlite3``) or a ROS 1 ``.bag`` (``rosbag1``)."""
    from rosbags.typesys import Stores, get_typestore

    if storage == "rosbag1":
        from rosbags.rosbag1 import Writer as Writer1

        typestore = get_typestore(Stores.ROS1_NOETIC)
        with Writer1(path) as writer:
            conns: dict[str, Any] = {}
            for log_ns, topic, msgtype, msg in _messages(spec, typestore.types, ros1=True):
                if topic not in conns:
                    conns[topic] = writer.add_connection(topic, msgtype, typestore=typestore)
                writer.write(conns[topic], log_ns, typestore.serialize_ros1(msg, msgtype))
        return path

    from rosbags.rosbag2 import StoragePlugin, Writer

    typestore = get_typestore(Stores.ROS2_JAZZY)
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for log_ns, topic, msgtype, msg in _messages(spec, typestore.types, ros1=False):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=typestore)
            writer.write(conns[topic], log_ns, typestore.serialize_cdr(msg, msgtype))
    return path


def read_bag(path: Path) -> list[tuple[str, int, Any]]:
    """``(topic, log_ns, message)`` of every message of a bag (types from the bag itself)."""
    from rosbags.highlevel import AnyReader

    with AnyReader([path]) as reader:
        return [(c.topic, t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]
