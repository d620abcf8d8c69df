"""rclpy adapter: the ``sim_fr3_node`` executable, a simulated FR3 under ``joint_trajectory_controller``.

All behaviour is in ``cosmos3_ros.sim`` (ROS-free): this node subscribes to the controller's trajectory topic,
answers the gripper (a ``GripperCommand`` action server when the action type imports, and a ``std_msgs/Float64``
finger-position topic), steps the physics on a timer and publishes ``/joint_states`` (arm and fingers) and three
camera images rendered from the joint state. Everything runs on the node clock, so it follows ``/clock`` under
``use_sim_time``. With ``record_file`` set, the executable writes what it recorded (controller receipts, sampled
commanded / executed joints, the simulator's metrics) there as JSON when it stops: ``sim-loop`` runs the arm as
its own process, as on a robot, and reads it back.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64
from trajectory_msgs.msg import JointTrajectory

from ..execution.messages import trajectory_from_message
from ..execution.trajectory import TimedTrajectory
from ..sim.fr3 import CAMERAS, FR3_HOME, SimulatedFR3
from .spinning import Spinner, make_executor

NODE_NAME = "sim_fr3"
ARM_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))

PARAMETERS: dict[str, Any] = {
    "trajectory_topic": "/fr3_arm_controller/joint_trajectory",
    "joint_states_topic": "/joint_states",
    "joint_state_rate": 100.0,
    "camera_topics": ["/camera/wrist/image_raw", "/camera/exterior_1/image_raw", "/camera/exterior_2/image_raw"],
    "camera_rate": 15.0,
    "image_height": 96,
    "image_width": 128,
    "gripper_action": "/fr3_gripper/gripper_action",
    "gripper_action_type": "control_msgs/action/GripperCommand",
    "gripper_command_topic": "/fr3_gripper/command",
    "initial_positions": list(FR3_HOME),
    "open_loop_control": True,
    "record_rate": 50.0,
    "record_file": "",
}


@dataclass
class SimRecord:
    """What the node saw, for sim-loop: controller receipts and sampled commanded / executed joints."""

    receipts: list[tuple[float, int, bool]] = field(default_factory=list)  # (time, points, accepted)
    t: list[float] = field(default_factory=list)
    commanded: list[list[float]] = field(default_factory=list)
    executed: list[list[float]] = field(default_factory=list)
    gripper_commanded: list[float] = field(default_factory=list)
    gripper_executed: list[float] = field(default_factory=list)
    starved_at: list[float] = field(default_factory=list)


def _class(type_name: str) -> Any:
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class SimFr3Node(Node):
    """The simulated FR3 (module docstring). ``self.sim`` and ``self.record`` are readable from other threads
    under ``self.lock``.
    """

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        values = {name: self.declare_parameter(name, default).value for name, default in PARAMETERS.items()}
        self.values = values
        self.lock = threading.Lock()
        now = self._now()
        self.sim = SimulatedFR3(initial_position=tuple(values["initial_positions"]),
                                image_hw=(int(values["image_height"]), int(values["image_width"])),
                                open_loop_control=bool(values["open_loop_control"]))
        self.sim.time_s = now
        self.sim.follower.current = None
        self.record = SimRecord()
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(JointTrajectory, values["trajectory_topic"], self._on_trajectory, reliable)
        self.create_subscription(Float64, values["gripper_command_topic"], self._on_finger_command, reliable)
        self._joint_pub = self.create_publisher(JointState, values["joint_states_topic"], 10)
        self._camera_pubs = [self.create_publisher(Image, topic, qos_profile_sensor_data)
                             for topic in values["camera_topics"]]
        # No physics timer: the simulator integrates (1 ms steps) up to the node time whenever it is read or
        # commanded, which is exact and leaves the CPU to the policy on a small machine.
        self._timers = [
            self.create_timer(1.0 / values["joint_state_rate"], self._publish_joint_state),
            self.create_timer(1.0 / values["camera_rate"], self._publish_cameras),
            self.create_timer(1.0 / values["record_rate"], self._record),
        ]
        self._action_server = None
        try:
            action_type = _class(values["gripper_action_type"])
        except (ImportError, AttributeError, ValueError):
            self.get_logger().info(f"{values['gripper_action_type']} does not import: gripper on "
                                   f"{values['gripper_command_topic']} only")
        else:
            from rclpy.action import ActionServer

            self._action_server = ActionServer(self, action_type, values["gripper_action"], self._on_gripper_goal)
        self.get_logger().info(f"simulated FR3: trajectories on {values['trajectory_topic']}, joint states on "
                               f"{values['joint_states_topic']}")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        now = self._now()
        names = list(msg.joint_names)
        trajectory: TimedTrajectory | None = None
        if msg.points:
            if sorted(names) != sorted(ARM_JOINTS):
                self.get_logger().warning(f"trajectory names {names}; expected all of {list(ARM_JOINTS)}: rejected")
                return
            parsed = trajectory_from_message(msg)
            order = [names.index(j) for j in ARM_JOINTS]
            trajectory = TimedTrajectory(parsed.stamp_s, parsed.times_s, parsed.positions[:, order],
                                         None if parsed.velocities is None else parsed.velocities[:, order])
        with self.lock:
            self.sim.step(now)
            accepted = self.sim.receive_trajectory(trajectory, now)
            self.record.receipts.append((now, len(msg.points), accepted))

    def _on_finger_command(self, msg: Float64) -> None:
        now = self._now()
        with self.lock:
            self.sim.step(now)
            self.sim.command_finger(float(msg.data), now)

    def _on_gripper_goal(self, goal_handle: Any) -> Any:
        command = goal_handle.request.command
        now = self._now()
        with self.lock:
            self.sim.step(now)
            self.sim.command_finger(float(command.position), now)
            finger = self.sim.finger
        goal_handle.succeed()
        result = _class(self.values["gripper_action_type"]).Result
        return result(position=finger, effort=0.0, stalled=False, reached_goal=False)

    def _publish_joint_state(self) -> None:
        now = self.get_clock().now()
        with self.lock:
            self.sim.step(now.nanoseconds / 1e9)
            names, positions, velocities = self.sim.joint_state()
        msg = JointState(name=names, position=positions.tolist(), velocity=velocities.tolist())
        msg.header.stamp = now.to_msg()
        msg.header.frame_id = "fr3_link0"
        self._joint_pub.publish(msg)

    def _publish_cameras(self) -> None:
        now = self.get_clock().now()
        stamp = now.to_msg()
        with self.lock:
            self.sim.step(now.nanoseconds / 1e9)
            images = [self.sim.render(camera) for camera in CAMERAS]
        for pub, pixels in zip(self._camera_pubs, images, strict=True):
            msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding="rgb8", step=pixels.shape[1] * 3)
            msg.header.stamp = stamp
            msg.data = pixels.tobytes()
            pub.publish(msg)

    def _record(self) -> None:
        now = self._now()
        with self.lock:
            self.sim.step(now)
            cmd, _ = self.sim.follower.sample(now)
            rec = self.record
            rec.t.append(now)
            rec.commanded.append(cmd.tolist())
            rec.executed.append(self.sim.q.tolist())
            closed = self.sim.gripper_closed_cmd
            rec.gripper_commanded.append(float(bool(closed)))
            rec.gripper_executed.append(self.sim.gripper_closure())
            if self.sim.follower.current is not None and now > self.sim.follower.end_time():
                rec.starved_at.append(now)


    def record_document(self) -> dict[str, Any]:
        """What ``record_file`` holds: ``{"record": SimRecord fields, "metrics": SimMetrics fields}``."""
        with self.lock:
            return {"record": asdict(self.record), "metrics": asdict(self.sim.metrics)}


def write_record(node: SimFr3Node, path: str) -> None:
    """``node.record_document()`` as JSON at ``path``, complete or absent (written beside it, then renamed)."""
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(node.record_document()))
    os.replace(partial, target)


def main(args: Sequence[str] | None = None) -> int:
    """``sim_fr3_node``: spin until SIGINT / SIGTERM; then write ``record_file`` (when set) and exit 0."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    node = SimFr3Node()
    executor = make_executor()
    executor.add_node(node)
    # The executor spins on a thread so the main thread waits in Python, where the signal handlers run.
    spinner = Spinner(executor, "sim-fr3-spin", on_exit=stop)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        spinner.stop()
        if node.values["record_file"]:
            write_record(node, node.values["record_file"])
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
