"""Output messages: ``ActionChunk``, ``JointTrajectory``, rollout ``Image`` frames, read back known actions.

Builders take a ``MessageFactory`` so the same code makes rclpy messages (in the node) and ``rosbags``
messages (in tests and offline tools): both use the ROS field names, they differ only in how arrays and
``byte`` fields are held (numpy for rosbags, ``array.array`` / ``bytes`` for rclpy).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import InputError
from .stamps import ns_to_sec_nanosec, seconds_to_ns

ACTION_CHUNK_TYPE = "cosmos3_ros_msgs/msg/ActionChunk"


class MessageFactory(Protocol):
    """Makes ROS messages of one implementation (rclpy or rosbags) by type name."""

    def new(self, type_name: str, **fields: Any) -> Any:
        """A message of ``type_name`` (``pkg/msg/Name``) with all ``fields`` set."""
        ...

    def array(self, values: np.ndarray, dtype: str) -> Any:
        """A flat primitive sequence field (``float32``, ``float64`` or ``uint8``) holding ``values``."""
        ...

    def byte(self, value: int) -> Any:
        """A ``byte`` scalar field."""
        ...


def action_chunk_definition() -> str:
    """The text of ``ActionChunk.msg``: from the source tree, else from an installed ``share/`` folder."""
    candidates = [Path(__file__).resolve().parents[2] / "msg" / "ActionChunk.msg"]
    for prefix in {sys.prefix, sys.base_prefix}:
        for package in ("cosmos3_ros_msgs", "cosmos3_ros"):
            candidates.append(Path(prefix) / "share" / package / "msg" / "ActionChunk.msg")
    for path in candidates:
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError(f"ActionChunk.msg not found; looked in {[str(p) for p in candidates]}")


def register_action_chunk(typestore: Any) -> None:
    """Add ``cosmos3_ros_msgs/msg/ActionChunk`` to a ``rosbags`` typestore (no-op if present)."""
    if ACTION_CHUNK_TYPE in typestore.types:
        return
    from rosbags.typesys import get_types_from_msg

    typestore.register(get_types_from_msg(action_chunk_definition(), ACTION_CHUNK_TYPE))


@cache
def jazzy_typestore() -> Any:
    """A ROS 2 Jazzy ``rosbags`` typestore with ActionChunk registered (shared, built once)."""
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    register_action_chunk(typestore)
    return typestore


class RosbagsMessageFactory:
    """``MessageFactory`` for ``rosbags`` message objects, plus CDR (de)serialisation."""

    def __init__(self, typestore: Any | None = None) -> None:
        self.typestore = typestore if typestore is not None else jazzy_typestore()

    def new(self, type_name: str, **fields: Any) -> Any:
        """A rosbags message (every field must be given)."""
        return self.typestore.types[type_name](**fields)

    def array(self, values: np.ndarray, dtype: str) -> np.ndarray:
        """A flat numpy array of ``dtype``."""
        return np.ascontiguousarray(values, dtype=dtype).reshape(-1)

    def byte(self, value: int) -> int:
        """Rosbags holds ``byte`` as int."""
        return int(value)

    def serialize(self, msg: Any) -> bytes:
        """CDR bytes of ``msg``."""
        return bytes(self.typestore.serialize_cdr(msg, msg.__msgtype__))

    def deserialize(self, data: bytes, type_name: str) -> Any:
        """A message from CDR bytes."""
        return self.typestore.deserialize_cdr(data, type_name)


def make_time(factory: MessageFactory, stamp_ns: int) -> Any:
    """``builtin_interfaces/Time`` from integer nanoseconds."""
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return factory.new("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def make_duration(factory: MessageFactory, seconds: float) -> Any:
    """``builtin_interfaces/Duration`` from seconds."""
    sec, nanosec = ns_to_sec_nanosec(seconds_to_ns(seconds))
    return factory.new("builtin_interfaces/msg/Duration", sec=sec, nanosec=nanosec)


def make_header(factory: MessageFactory, stamp_ns: int, frame_id: str) -> Any:
    """``std_msgs/Header``."""
    return factory.new("std_msgs/msg/Header", stamp=make_time(factory, stamp_ns), frame_id=frame_id)


@dataclass(frozen=True)
class ActionChunkData:
    """Everything an ``ActionChunk`` message carries, in Python types.

    Attributes:
        actions: ``[chunk, action_dim]`` float32, physical units; row k applies at ``start_ns + k * dt_s``.
        stamp_ns: header stamp = stamp of the newest observation used.
        start_ns: when row 0 applies.
        dt_s: seconds between rows.
        model_latency_s: wall time of the model call.

    """

    actions: np.ndarray
    stamp_ns: int
    start_ns: int
    dt_s: float
    frame_id: str
    mode: str
    profile: str
    action_space: str
    domain_name: str
    domain_id: int
    dimension_names: tuple[str, ...]
    sequence_number: int
    model_latency_s: float


def build_action_chunk(data: ActionChunkData, factory: MessageFactory) -> Any:
    """``cosmos3_ros_msgs/ActionChunk`` from ``data``."""
    actions = np.asarray(data.actions, dtype=np.float32)
    rows, cols = actions.shape
    return factory.new(
        ACTION_CHUNK_TYPE,
        header=make_header(factory, data.stamp_ns, data.frame_id),
        mode=data.mode,
        profile=data.profile,
        action_space=data.action_space,
        domain_name=data.domain_name,
        domain_id=int(data.domain_id),
        dimension_names=list(data.dimension_names),
        chunk_length=rows,
        action_dim=cols,
        dt=float(data.dt_s),
        start_time=make_time(factory, data.start_ns),
        data=factory.array(actions, "float32"),
        sequence_number=int(data.sequence_number),
        model_latency=float(data.model_latency_s),
    )


def build_joint_trajectory(
    factory: MessageFactory,
    *,
    stamp_ns: int,
    frame_id: str,
    joint_names: Sequence[str],
    positions: np.ndarray,
    dt_s: float,
) -> Any:
    """``trajectory_msgs/JointTrajectory``: point k holds ``positions[k]`` at ``time_from_start = (k + 1) * dt_s``.

    The header stamp is the observation's, so a ``joint_trajectory_controller`` skips the points whose time has
    already passed while the model ran.
    """
    empty = factory.array(np.zeros(0), "float64")
    points = [
        factory.new(
            "trajectory_msgs/msg/JointTrajectoryPoint",
            positions=factory.array(row, "float64"),
            velocities=empty,
            accelerations=empty,
            effort=empty,
            time_from_start=make_duration(factory, (k + 1) * dt_s),
        )
        for k, row in enumerate(np.asarray(positions, dtype=np.float64))
    ]
    return factory.new(
        "trajectory_msgs/msg/JointTrajectory",
        header=make_header(factory, stamp_ns, frame_id),
        joint_names=list(joint_names),
        points=points,
    )


def rollout_to_uint8(frames: np.ndarray) -> np.ndarray:
    """``[T, H, W, 3]`` float in [0, 1] (or uint8) -> uint8."""
    arr = np.asarray(frames)
    if arr.dtype == np.uint8:
        return arr
    return np.clip(np.rint(arr.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def build_rollout_images(
    factory: MessageFactory, frames: np.ndarray, *, first_stamp_ns: int, dt_s: float, frame_id: str
) -> list[Any]:
    """One ``sensor_msgs/Image`` (rgb8) per rollout frame; frame k is stamped ``first_stamp_ns + k * dt_s``."""
    pixels = rollout_to_uint8(frames)
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise InputError(f"rollout: shape {list(pixels.shape)}; expected [T, H, W, 3]")
    _, height, width, _ = pixels.shape
    step_ns = seconds_to_ns(dt_s)
    return [
        factory.new(
            "sensor_msgs/msg/Image",
            header=make_header(factory, first_stamp_ns + k * step_ns, frame_id),
            height=height,
            width=width,
            encoding="rgb8",
            is_bigendian=0,
            step=width * 3,
            data=factory.array(frame, "uint8"),
        )
        for k, frame in enumerate(pixels)
    ]


def action_chunk_to_array(msg: Any, what: str = "ActionChunk") -> np.ndarray:
    """``[chunk_length, action_dim]`` float32 from an ActionChunk message.

    Raises:
        InputError: ``data`` length is not ``chunk_length x action_dim``.

    """
    rows, cols = int(msg.chunk_length), int(msg.action_dim)
    data = np.asarray(msg.data, dtype=np.float32).reshape(-1)
    if rows < 1 or cols < 1 or data.size != rows * cols:
        raise InputError(
            f"{what}: data has {data.size} values; expected chunk_length x action_dim = {rows} x {cols} = {rows * cols}"
        )
    return data.reshape(rows, cols)


def joint_trajectory_to_array(msg: Any, column_names: Sequence[str], what: str = "JointTrajectory") -> np.ndarray:
    """``[points, len(column_names)]`` float32: for each point, the positions of the joints named in ``column_names``.

    Raises:
        InputError: no points, a missing joint name, or a point with the wrong number of positions.

    """
    names = [str(n) for n in msg.joint_names]
    missing = [c for c in column_names if c not in names]
    if missing:
        raise InputError(f"{what}: lacks joints {missing}; has {names}, expected all of {list(column_names)}")
    if len(msg.points) == 0:
        raise InputError(f"{what}: has no points; expected at least one")
    index = [names.index(c) for c in column_names]
    rows = []
    for k, point in enumerate(msg.points):
        positions = np.asarray(point.positions, dtype=np.float64).reshape(-1)
        if positions.size != len(names):
            raise InputError(f"{what}: point {k} has {positions.size} positions; expected {len(names)} (joint_names)")
        rows.append(positions[index])
    return np.asarray(rows, dtype=np.float32)
