"""``StreamingExecution``: the execution layer inside the policy node (ROS-free; the rclpy node wires it).

It implements the node core's ``ExecutionHooks`` (when to capture, what to ask the model, what to do with a
chunk) on top of ``ChunkExecutor``, and owns the safety inputs: the latched e-stop (topic + services), the
dead-man heartbeat, and holds on stale observations, model errors and shutdown. Everything it sends goes
through ``publish(key, msg)``: ``joint_trajectory`` (a ``JointTrajectory``) and ``gripper`` (a
``GripperCommand`` value object; the rclpy layer sends it as an action goal or a topic message).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..processing.profiles import Profile
from ..processing.request import ActionRequest
from ..runtime.action_chunk import MessageFactory
from .gripper import GripperCommander
from .limits import JointLimits
from .messages import trajectory_message
from .safety import SafetySupervisor
from .streaming import ChunkExecutor, ExecutionResult, ExecutionSettings, RequestPlan

log = logging.getLogger("cosmos3_ros.execution")

STALE_REASONS = ("stale", "incomplete", "unsynchronised")


class StreamingExecution:
    """Closed-loop execution for a joint-position profile (7 joints + gripper column for the released one).

    Args:
        params: resolved node parameters.
        profile: the served profile (fps, gripper columns, raw_action_dim).
        clock: node clock (s).
        publish: ``publish(key, msg)`` for ``joint_trajectory`` and ``gripper``.
        factory: message factory.
        measured_state: newest measured ``[q..., gripper]`` or None.

    """

    def __init__(self, params: Mapping[str, Any], profile: Profile, *, clock: Callable[[], float],
                 publish: Callable[[str, Any], None], factory: MessageFactory,
                 measured_state: Callable[[], np.ndarray | None] | None = None) -> None:
        self.params = params
        self.joint_names = tuple(params["joint_names"])
        arm_columns = tuple(i for i in range(profile.raw_action_dim) if i not in profile.gripper_dims)
        gripper_column = profile.gripper_dims[0] if profile.gripper_dims else None
        settings = ExecutionSettings(
            dt_s=1.0 / profile.fps, arm_columns=arm_columns, gripper_column=gripper_column,
            execution_horizon=max(1, int(params["execution_horizon"])), handover=params["handover"],
            blend_steps=params["blend_steps"], expected_latency_s=params["expected_model_latency"],
            latency_margin_s=params["latency_margin"], min_lead_s=params["min_lead_time"],
            hold_time_s=params["hold_time"], use_velocities=params["trajectory_velocities"],
            max_prefix_steps=max(1, profile.chunk - 8),  # at least 8 generated rows
        )
        limits = JointLimits.from_parameters(
            self.joint_names, position_min=params["joint_position_min"], position_max=params["joint_position_max"],
            velocity_max=params["joint_velocity_max"], acceleration_max=params["joint_acceleration_max"],
            max_step=params["max_joint_step"], on_violation=params["limit_violation"])
        self.safety = SafetySupervisor(params["heartbeat_timeout"] if params["heartbeat_topic"] else 0.0)
        gripper = None
        if gripper_column is not None and params["gripper_output"] != "none":
            gripper = GripperCommander(
                close_above=params["gripper_close_threshold"], open_below=params["gripper_open_threshold"],
                min_interval_s=params["gripper_min_interval"], open_position=params["gripper_command_open"],
                closed_position=params["gripper_command_closed"], max_effort=params["gripper_max_effort"])
        self.executor = ChunkExecutor(settings, limits, self.safety, gripper)
        self._clock = clock
        self._publish = publish
        self._factory = factory
        self.measured_state = measured_state or (lambda: None)
        self._lock = threading.RLock()
        self.frame_id = params["frame_id"]
        self.trajectories_published = 0
        self.commands_refused = 0
        self.last_reason = ""
        self.estop_times: list[float] = []

    # ----- ExecutionHooks ----------------------------------------------------------------------------------

    def wants_snapshot(self, now: float) -> bool:
        """Capture now if the executor's schedule says so (and commands are allowed)."""
        with self._lock:
            return self.executor.should_request(now)

    def plan(self, now: float, snapshot: Any) -> RequestPlan:
        """Plan the request for a snapshot (its state row and the time of its camera frames)."""
        with self._lock:
            state = snapshot.state if snapshot.state is not None else self._measured_or_raise()
            return self.executor.plan_request(now, snapshot.frame0_ns / 1e9, state)

    def adjust_request(self, request: ActionRequest, plan: RequestPlan) -> None:
        """State row as planned (rolled forward or measured) and the prefix rows."""
        request.state = plan.state.astype(np.float32)
        if plan.prefix is not None:
            request.action_prefix = plan.prefix.astype(np.float32)

    def on_prediction(self, plan: RequestPlan, actions: np.ndarray) -> None:
        """Turn the chunk into a trajectory and publish it (or say why not)."""
        now = self._clock()
        measured = self.measured_state()
        arm = None if measured is None else measured[: len(self.joint_names)]
        with self._lock:
            result = self.executor.on_chunk(now, plan, actions, arm)
            self._send(result)

    def on_failure(self, plan: RequestPlan) -> None:
        """A failed model call: hold at the measured joints."""
        with self._lock:
            self.executor.on_request_failed(plan)
            if self.executor.holding:  # already holding (e-stop, dead-man, ...): that hold stays
                return
        self.hold("model_error")

    def on_skip(self, now: float, reason: str) -> None:
        """A wanted observation was stale or incomplete: hold once (until a chunk arrives again)."""
        if reason in STALE_REASONS and self.executor.active is not None and not self.executor.holding:
            self.hold("stale_observation")

    def on_shutdown(self) -> None:
        """Hold before the node goes away (best effort: after Ctrl-C the ROS context may already be gone)."""
        try:
            self.hold("shutdown")
        except Exception as exc:
            log.warning("hold at shutdown not published: %s: %s", type(exc).__name__, exc)

    # ----- safety inputs -----------------------------------------------------------------------------------

    def engage_estop(self, source: str) -> tuple[bool, str]:
        """Latch the e-stop and publish a hold at once; returns (True, message)."""
        with self._lock:  # atomic with chunk publication: no chunk can follow the hold
            first = self.safety.engage(source)
            if first:
                self.estop_times.append(self._clock())
            self.hold("estop")  # again on every request: a second e-stop is a fresh hold, never harmful
        return True, "e-stop engaged: holding; call ~/release to resume" if first else "e-stop already engaged"

    def release_estop(self) -> tuple[bool, str]:
        """Release the latch (commands resume with the next chunk)."""
        was = self.safety.release()
        return True, "e-stop released" if was else "e-stop was not engaged"

    def on_estop_message(self, msg: Any) -> None:
        """``std_msgs/Bool`` on the e-stop topic: true engages; false does nothing (only ~/release releases)."""
        if bool(msg.data):
            self.engage_estop("estop topic")

    def on_heartbeat(self, msg: Any) -> None:
        """``std_msgs/Bool`` heartbeat: true re-arms the dead-man; false holds now (button let go)."""
        now = self._clock()
        if bool(msg.data):
            self.safety.heartbeat(now)
        else:
            self.safety.heartbeat(-math.inf)
            self.safety.check(now)
            self.hold("deadman")

    # ----- timer -------------------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Execution timer: dead-man check (hold when it trips) and due gripper commands."""
        now = self._clock() if now is None else now
        _, tripped = self.safety.check(now)
        if tripped and self.executor.active is not None:
            self.hold("deadman")
        with self._lock:
            command = self.executor.gripper_command(now)
        if command is not None:
            self._publish("gripper", command)

    def hold(self, reason: str) -> bool:
        """Publish a hold at the measured joints; False when no joints have been measured yet."""
        measured = self.measured_state()
        if measured is None:
            log.warning("hold (%s) requested but no joint state has arrived: nothing to hold", reason)
            return False
        with self._lock:
            result = self.executor.hold(self._clock(), measured[: len(self.joint_names)], reason)
            self._send(result)
        log.info("hold: %s", reason)
        return True

    def _send(self, result: ExecutionResult) -> None:
        if result.trajectory is None:
            self.commands_refused += 1
            self.last_reason = result.reason
            return
        msg = trajectory_message(self._factory, result.trajectory, self.joint_names, self.frame_id)
        self._publish("joint_trajectory", msg)
        self.trajectories_published += 1

    def _measured_or_raise(self) -> np.ndarray:
        measured = self.measured_state()
        if measured is None:
            raise RuntimeError("no joint state yet")
        return measured

    def report(self) -> dict[str, Any]:
        """Diagnostics values."""
        state = self.safety.state(self._clock())
        return {"estop": state.estop, "deadman expired": state.deadman_expired, "holding": self.executor.holding,
                "latency estimate s": round(self.executor.latency_estimate(), 3),
                "trajectories published": self.trajectories_published, "last refusal": self.last_reason,
                **self.executor.counters}
