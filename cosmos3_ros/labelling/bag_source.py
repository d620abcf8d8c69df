"""Reading a recorded bag for labelling: topic stamps, robot states, task sentences and camera frames.

Pure Python through ``rosbags`` (rosbag2 sqlite3 / mcap folders and ROS 1 ``.bag`` files; no ROS install).
One indexing pass reads every used topic once (stamps, small values); camera frames are read again later,
only those a window needs, and decoded with ``runtime.image_decoding``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import InputError
from ..runtime.image_decoding import ros_image_to_rgb
from ..runtime.robot_state import read_gripper, read_joint_positions
from ..runtime.stamps import stamp_to_ns
from .outputs import CopiedTopic

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
JOINT_TRAJECTORY_TYPE = "trajectory_msgs/msg/JointTrajectory"
STRING_TYPE = "std_msgs/msg/String"
COMMAND_TYPES = (JOINT_STATE_TYPE, JOINT_TRAJECTORY_TYPE)
ROLE_NAMES = {"camera": "camera", "state": "joint state", "command": "command", "task": "task"}


@dataclass(frozen=True)
class StateRule:
    """How a ``JointState`` (or a ``JointTrajectory`` point) becomes ``[q_1..q_n (rad), gripper (0 open..1 closed)]``.

    Attributes:
        arm_joints: n, the arm joints of the action layout (7 for the released DROID policy).
        joint_names: arm joints by name, in action-column order; None = the first n positions in message order.
        gripper_joint: joint whose position measures the gripper; None = the position after the n arm joints
            (the (n+1)-th in message order) when the message has one, else 0.0 (open).
        gripper_open / gripper_closed: gripper joint positions mapped to 0 and 1 (clipped to [0, 1]).

    """

    arm_joints: int
    joint_names: tuple[str, ...] | None = None
    gripper_joint: str | None = None
    gripper_open: float = 0.0
    gripper_closed: float = 1.0

    def read(self, names: Sequence[str], positions: Any, what: str) -> np.ndarray:
        """``[arm_joints + 1]`` float64 from joint names and positions.

        Raises:
            InputError: missing or non-finite joints, or a named gripper joint the message lacks.

        """
        names = [str(n) for n in names]
        position = np.asarray(positions, dtype=np.float64).reshape(-1)
        msg = SimpleNamespace(name=names, position=position)
        if self.joint_names is not None:
            q = read_joint_positions(msg, self.joint_names, what)
        else:
            if position.size < self.arm_joints:
                raise InputError(f"{what}: {position.size} positions; expected at least {self.arm_joints} arm joints")
            q = read_joint_positions(SimpleNamespace(name=[], position=position[: self.arm_joints]),
                                     [f"position {i}" for i in range(self.arm_joints)], what)
        if self.gripper_joint is not None:
            gripper = read_gripper(msg, self.gripper_joint, self.gripper_open, self.gripper_closed, what)
            if gripper is None:
                raise InputError(f"{what}: lacks the gripper joint {self.gripper_joint!r}; has {names}")
        elif position.size > self.arm_joints and self.joint_names is None:
            raw = float(position[self.arm_joints])
            if not np.isfinite(raw):
                raise InputError(f"{what}: non-finite gripper position {raw} (position {self.arm_joints})")
            span = self.gripper_closed - self.gripper_open
            gripper = float(np.clip((raw - self.gripper_open) / span, 0.0, 1.0))
        else:
            gripper = 0.0
        return np.concatenate([q, [gripper]])


@dataclass
class TopicSeries:
    """Messages of one topic sorted by stamp.

    Attributes:
        topic / msgtype: the topic and its message type.
        stamps_ns: ``[N]`` int64 header stamps (the bag's log time where a message has no header or stamp 0).
        log_ns: ``[N]`` int64 bag log (receive) times of the same messages.
        values: ``[N, D]`` float64 robot states / commands (None for cameras).
        keys: (log_ns, occurrence among messages of this topic with that log time) -> position in the series.
        dropped: messages that could not be read, and the first reason.

    """

    topic: str
    msgtype: str
    stamps_ns: np.ndarray
    log_ns: np.ndarray
    values: np.ndarray | None = None
    keys: dict[tuple[int, int], int] = field(default_factory=dict)
    dropped: int = 0
    first_drop_reason: str = ""

    def __len__(self) -> int:
        return int(self.stamps_ns.size)


@dataclass
class BagIndex:
    """What the indexing pass found.

    Attributes:
        cameras: camera topic -> its series, in the order the cameras were given.
        state: the joint-state topic's series (``values`` = ``[N, n + 1]`` states), or None.
        commands: the command topic's series (``values`` = ``[N, n + 1]``), or None.
        tasks: ``(log_ns, text)`` of the task topic, sorted by log time.
        frame_shapes: camera topic -> ``(height, width)`` of its first decoded frame.

    """

    cameras: dict[str, TopicSeries]
    state: TopicSeries | None
    commands: TopicSeries | None
    tasks: list[tuple[int, str]]
    frame_shapes: dict[str, tuple[int, int]]

    def summary(self) -> dict[str, Any]:
        """Counts and stamp ranges of the used topics (the journal's record of which bag it labelled)."""
        series = [*self.cameras.values(), *(s for s in (self.state, self.commands) if s is not None)]
        out: dict[str, Any] = {
            s.topic: {"type": s.msgtype, "messages": len(s), "first_stamp_ns": int(s.stamps_ns[0]),
                      "last_stamp_ns": int(s.stamps_ns[-1])} for s in series if len(s)
        }
        if self.tasks:
            out["tasks"] = len(self.tasks)
        return out


class RecordedBag:
    """An open bag (``with RecordedBag(path) as bag``) with the reads the labeller needs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader: Any = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RecordedBag:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        if not self.path.exists():
            raise InputError(f"bag {str(self.path)!r} does not exist")
        try:
            # Legacy rosbag2 folders carry no message definitions; then the Jazzy types are assumed.
            reader = AnyReader([self.path], default_typestore=get_typestore(Stores.ROS2_JAZZY))
            self._reader = self._stack.enter_context(reader)
        except Exception as exc:
            self._stack.close()
            raise InputError(f"bag {str(self.path)!r} is not a readable rosbag2 folder or ROS 1 .bag file: "
                             f"{_one_line(exc)}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def is_rosbag2(self) -> bool:
        """True for a rosbag2 folder, False for a ROS 1 bag."""
        return bool(self._reader.is2)

    @property
    def storage(self) -> str:
        """``rosbag1``, or the rosbag2 storage plugin (``sqlite3``, ``mcap``)."""
        if not self.is_rosbag2:
            return "rosbag1"
        names = [f.name for f in self.path.iterdir()] if self.path.is_dir() else [self.path.name]
        found = [plugin for plugin, suffix in (("mcap", ".mcap"), ("sqlite3", ".db3"))
                 if any(suffix in name for name in names)]  # also names like x.mcap.zstd
        return found[0] if len(found) == 1 else "rosbag2"

    def topics(self) -> dict[str, str]:
        """Topic -> message type of every topic in the bag."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    def connections(self, topic: str) -> list[Any]:
        """The bag's connections of ``topic``."""
        return [c for c in self._reader.connections if c.topic == topic]

    def _check_topic(self, topic: str, role: str, types: Sequence[str]) -> str:
        conns = self.connections(topic)
        if not conns:
            available = ", ".join(f"{t} [{m}]" for t, m in sorted(self.topics().items())) or "none"
            raise InputError(f"{role} topic {topic!r} is not in bag {str(self.path)!r}; topics: {available}")
        msgtypes = sorted({c.msgtype for c in conns})
        if len(msgtypes) != 1 or msgtypes[0] not in types:
            raise InputError(f"{role} topic {topic!r} in bag {str(self.path)!r} carries {msgtypes}; "
                             f"expected {' or '.join(types)}")
        return msgtypes[0]

    def messages(self, topics: Sequence[str], start: int | None = None, stop: int | None = None
                 ) -> Iterator[tuple[str, int, Any]]:
        """``(topic, log_ns, message)`` in log-time order; ``start``/``stop`` bound the log time (stop exclusive)."""
        conns = [c for t in topics for c in self.connections(t)]
        try:
            for conn, log_ns, raw in self._reader.messages(connections=conns, start=start, stop=stop):
                yield conn.topic, int(log_ns), self._reader.deserialize(raw, conn.msgtype)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"bag {str(self.path)!r}: cannot read messages of {list(topics)}: "
                             f"{_one_line(exc)}") from exc

    def raw_messages(self, topics: Sequence[str], start: int | None = None, stop: int | None = None
                     ) -> Iterator[tuple[Any, int, bytes]]:
        """``(connection, log_ns, raw bytes)`` in log-time order (for copying topics)."""
        conns = [c for t in topics for c in self.connections(t)]
        yield from self._reader.messages(connections=conns, start=start, stop=stop)

    def copy_stream(self, topics: Sequence[str], start: int | None = None, stop: int | None = None
                    ) -> tuple[list[CopiedTopic], Iterator[tuple[str, int, bytes]], list[str]]:
        """Input topics as ROS 2 CDR for copying into a rosbag2: definitions, ``(topic, log_ns, cdr)``, notes.

        ROS 1 messages are converted to their ROS 2 Jazzy equivalents (``rosbags.convert``); a ROS 1 type that
        Jazzy lacks is left out and named in the notes.
        """
        from rosbags.typesys import Stores, get_typestore

        source = self._reader.typestore
        specs: list[CopiedTopic] = []
        notes: list[str] = []
        converters: dict[str, Callable[[bytes], bytes]] = {}
        if self.is_rosbag2:
            for topic in topics:
                msgtype = self.topics()[topic]
                msgdef, _ = source.generate_msgdef(msgtype, ros_version=2)
                specs.append(CopiedTopic(topic, msgtype, msgdef, source.hash_rihs01(msgtype)))
        else:
            from rosbags.convert.converter import generate_message_converter

            target = get_typestore(Stores.ROS2_JAZZY)
            cache: dict[str, object] = {}
            for topic in topics:
                msgtype = self.topics()[topic]
                if msgtype not in target.types:
                    notes.append(f"{topic!r} not copied: ROS 1 type {msgtype!r} has no ROS 2 Jazzy equivalent")
                    continue
                convert = generate_message_converter(source, target, msgtype, msgtype, cache,
                                                     src_is2=False, dst_is2=True)
                converters[topic] = lambda raw, convert=convert: bytes(convert(raw))
                msgdef, _ = target.generate_msgdef(msgtype, ros_version=2)
                specs.append(CopiedTopic(topic, msgtype, msgdef, target.hash_rihs01(msgtype)))
        kept = [spec.topic for spec in specs]

        def stream() -> Iterator[tuple[str, int, bytes]]:
            for conn, log_ns, raw in self.raw_messages(kept, start, stop):
                convert = converters.get(conn.topic)
                yield conn.topic, int(log_ns), convert(raw) if convert else bytes(raw)

        return specs, stream(), notes

    def index(self, camera_topics: Sequence[str], *, state_topic: str | None = None,
              command_topic: str | None = None, task_topic: str | None = None,
              rule: StateRule | None = None) -> BagIndex:
        """One pass over the used topics: stamps of every message, robot states, commands and tasks.

        Raises:
            InputError: a missing topic, a topic of the wrong type, a topic without (readable) messages, or a
                first camera frame that cannot be decoded (unknown encoding, corrupt data).

        """
        roles: dict[str, str] = {}
        for topic in camera_topics:
            self._check_topic(topic, "camera", IMAGE_TYPES)
            roles[topic] = "camera"
        if state_topic:
            self._check_topic(state_topic, "joint state", (JOINT_STATE_TYPE,))
            roles[state_topic] = "state"
        if command_topic:
            roles[command_topic] = "command"
            self._check_topic(command_topic, "command", COMMAND_TYPES)
        if task_topic:
            self._check_topic(task_topic, "task", (STRING_TYPE,))
            roles[task_topic] = "task"
        if rule is None and (state_topic or command_topic):
            raise ValueError("a StateRule is needed to read joint states or commands")

        stamps: dict[str, list[int]] = {t: [] for t in roles if roles[t] != "task"}
        logs: dict[str, list[int]] = {t: [] for t in stamps}
        values: dict[str, list[np.ndarray]] = {t: [] for t in stamps}
        occurrences: dict[str, list[int]] = {t: [] for t in stamps}
        last_log: dict[str, tuple[int, int]] = {}
        drops: dict[str, list[str]] = {t: [] for t in stamps}
        tasks: list[tuple[int, str]] = []
        first_frames: dict[str, Any] = {}
        for topic, log_ns, msg in self.messages(list(roles)):
            role = roles[topic]
            if role == "task":
                text = str(msg.data).strip()
                if text:
                    tasks.append((log_ns, text))
                continue
            stamp = _stamp_or_log(msg, log_ns)
            if role in ("state", "command"):
                assert rule is not None
                what = f"{ROLE_NAMES[role]} topic {topic!r} at {stamp / 1e9:.3f} s"
                try:
                    values[topic].append(_state_from_message(msg, rule, what))
                except InputError as exc:
                    drops[topic].append(str(exc))
                    continue
            elif topic not in first_frames:
                first_frames[topic] = msg
            prev_log, prev_count = last_log.get(topic, (None, -1))
            occurrence = prev_count + 1 if prev_log == log_ns else 0
            last_log[topic] = (log_ns, occurrence)
            stamps[topic].append(stamp)
            logs[topic].append(log_ns)
            occurrences[topic].append(occurrence)

        series: dict[str, TopicSeries] = {}
        for topic, topic_stamps in stamps.items():
            order = np.argsort(np.asarray(topic_stamps, dtype=np.int64), kind="stable")
            item = TopicSeries(
                topic=topic, msgtype=self.topics()[topic],
                stamps_ns=np.asarray(topic_stamps, dtype=np.int64)[order],
                log_ns=np.asarray(logs[topic], dtype=np.int64)[order],
                values=(np.asarray(values[topic], dtype=np.float64)[order] if roles[topic] != "camera" else None),
                dropped=len(drops[topic]), first_drop_reason=drops[topic][0] if drops[topic] else "",
            )
            item.keys = {(logs[topic][j], occurrences[topic][j]): i for i, j in enumerate(order.tolist())}
            if not len(item):
                reason = f" ({len(drops[topic])} unreadable: {drops[topic][0]})" if drops[topic] else ""
                raise InputError(f"{ROLE_NAMES[roles[topic]]} topic {topic!r} in bag {str(self.path)!r} has no usable "
                                 f"messages{reason}")
            series[topic] = item
        if task_topic and not tasks:
            raise InputError(f"task topic {task_topic!r} in bag {str(self.path)!r} has no non-empty std_msgs/String")
        shapes = {}
        for topic in camera_topics:
            rgb = ros_image_to_rgb(first_frames[topic], f"camera topic {topic!r} in bag {str(self.path)!r}")
            shapes[topic] = (int(rgb.shape[0]), int(rgb.shape[1]))
        return BagIndex(
            cameras={t: series[t] for t in camera_topics},
            state=series.get(state_topic) if state_topic else None,
            commands=series.get(command_topic) if command_topic else None,
            tasks=sorted(tasks, key=lambda item: item[0]),
            frame_shapes=shapes,
        )

    def camera_frames(self, index: BagIndex, wanted: Mapping[str, set[int]]) -> dict[tuple[str, int], Any]:
        """Read the messages at the given series positions: ``(topic, position) -> message`` (not decoded)."""
        wanted = {t: set(p) for t, p in wanted.items() if p}
        if not wanted:
            return {}
        logs = [int(index.cameras[t].log_ns[p]) for t, positions in wanted.items() for p in positions]
        found: dict[tuple[str, int], Any] = {}
        seen: dict[str, tuple[int, int]] = {}
        for topic, log_ns, msg in self.messages(list(wanted), start=min(logs), stop=max(logs) + 1):
            prev_log, prev_count = seen.get(topic, (None, -1))
            occurrence = prev_count + 1 if prev_log == log_ns else 0
            seen[topic] = (log_ns, occurrence)
            position = index.cameras[topic].keys.get((log_ns, occurrence))
            if position is not None and position in wanted[topic]:
                found[(topic, position)] = msg
        missing = [(t, p) for t, positions in wanted.items() for p in positions if (t, p) not in found]
        if missing:
            topic, position = missing[0]
            raise InputError(f"camera topic {topic!r} in bag {str(self.path)!r}: message {position} "
                             f"(log time {int(index.cameras[topic].log_ns[position])} ns) could not be read again")
        return found


def _stamp_or_log(msg: Any, log_ns: int) -> int:
    header = getattr(msg, "header", None)
    if header is None:
        return log_ns
    stamp = stamp_to_ns(header.stamp)
    return stamp if stamp != 0 else log_ns


def _state_from_message(msg: Any, rule: StateRule, what: str) -> np.ndarray:
    if hasattr(msg, "points"):  # JointTrajectory: the first point is the commanded next target
        if len(msg.points) == 0:
            raise InputError(f"{what}: JointTrajectory has no points")
        return rule.read(msg.joint_names, msg.points[0].positions, what)
    return rule.read(msg.name, msg.position, what)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def task_for(tasks: Sequence[tuple[int, str]], log_ns: int) -> str:
    """The task in force at ``log_ns``: the newest at or before it, else the first one recorded."""
    chosen = tasks[0][1]
    for when, text in tasks:
        if when > log_ns:
            break
        chosen = text
    return chosen
