"""Messages of the execution layer, built through a ``MessageFactory`` (rclpy in the node, rosbags in tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..runtime.action_chunk import MessageFactory, make_duration, make_header
from ..runtime.stamps import seconds_to_ns
from .trajectory import TimedTrajectory

JOINT_TRAJECTORY_TYPE = "trajectory_msgs/msg/JointTrajectory"
BOOL_TYPE = "std_msgs/msg/Bool"
FLOAT64_TYPE = "std_msgs/msg/Float64"


def trajectory_message(factory: MessageFactory, trajectory: TimedTrajectory, joint_names: Sequence[str],
                       frame_id: str) -> Any:
    """``trajectory_msgs/JointTrajectory``: header stamp = the trajectory's start, one point per row with
    positions and (when present) velocities.
    """
    empty = factory.array(np.zeros(0), "float64")
    points = []
    for k, t in enumerate(trajectory.times_s):
        velocities = empty if trajectory.velocities is None else factory.array(trajectory.velocities[k], "float64")
        points.append(factory.new(
            "trajectory_msgs/msg/JointTrajectoryPoint", positions=factory.array(trajectory.positions[k], "float64"),
            velocities=velocities, accelerations=empty, effort=empty, time_from_start=make_duration(factory, float(t)),
        ))
    return factory.new(JOINT_TRAJECTORY_TYPE, header=make_header(factory, seconds_to_ns(trajectory.stamp_s), frame_id),
                       joint_names=list(joint_names), points=points)


def trajectory_from_message(msg: Any) -> TimedTrajectory:
    """The ``TimedTrajectory`` a ``JointTrajectory`` message describes (stamp 0 stays 0: "start now")."""
    stamp = int(msg.header.stamp.sec) + int(msg.header.stamp.nanosec) * 1e-9
    if len(msg.points) == 0:
        return TimedTrajectory(stamp, np.zeros(0), np.zeros((0, len(msg.joint_names))), None)
    times = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])
    positions = np.array([np.asarray(p.positions, dtype=np.float64) for p in msg.points])
    with_velocities = all(len(p.velocities) == positions.shape[1] for p in msg.points)
    velocities = np.array([np.asarray(p.velocities, dtype=np.float64) for p in msg.points]) if with_velocities \
        else None
    return TimedTrajectory(stamp, times, positions, velocities)
