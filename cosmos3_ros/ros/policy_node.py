"""rclpy adapter: the ``policy_node`` executable. Wires topics, timers, parameters and services to PolicyNodeCore.

No model logic lives here (see ``cosmos3_ros.runtime.node_core``); this is the only module that imports rclpy.

Signals: the node owns SIGINT and SIGTERM (rclpy's handler is off). rclpy's would shut the context down at
once, while the inference thread may still be publishing ("publisher's context is invalid") and while the
executor is spinning (``RCLError: context is not valid``). Here a signal only sets an event; ``main`` then tears
down in order: stop spinning (after the running callback) and shut the executor down -> cancel timers -> stop
the inference and rollout threads (a model call still running after ``STOP_TIMEOUT_S`` is abandoned: its result
is never published; the hold at shutdown is published) -> stop publishing -> destroy the node ->
``rclpy.try_shutdown`` -> exit 0.
"""

from __future__ import annotations

import array
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar, NoReturn

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_srvs.srv import Trigger

from ..errors import Cosmos3Error
from ..execution.node_execution import StreamingExecution
from ..runtime.node_core import (
    QOS_LATCHED,
    QOS_RELIABLE,
    QOS_SENSOR,
    QOS_STATE,
    QOS_VIDEO,
    PolicyNodeCore,
    load_action_model,
)
from ..runtime.parameters import PARAMETER_SPEC, ParameterSpec
from .spinning import Spinner, make_executor

NODE_NAME = "policy_node"
log = logging.getLogger("cosmos3_ros.node")
# Seconds the teardown waits for a running model call (and rollout video) before abandoning it, so that the
# process exits within 2 s of a signal even on a CPU where one chunk takes longer.
STOP_TIMEOUT_S = 0.5

_PARAMETER_TYPES = {
    "bool": ParameterType.PARAMETER_BOOL,
    "integer": ParameterType.PARAMETER_INTEGER,
    "double": ParameterType.PARAMETER_DOUBLE,
    "string": ParameterType.PARAMETER_STRING,
    "string_array": ParameterType.PARAMETER_STRING_ARRAY,
    "double_array": ParameterType.PARAMETER_DOUBLE_ARRAY,
}
_EMPTY_ARRAY_TYPES = {"string_array": Parameter.Type.STRING_ARRAY, "double_array": Parameter.Type.DOUBLE_ARRAY}


# role -> (history depth, reliability, durability) of its subscriptions
_SUBSCRIPTION_QOS = {
    QOS_SENSOR: (1, ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE),
    QOS_VIDEO: (10, ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE),
    QOS_STATE: (10, ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE),
    QOS_LATCHED: (1, ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL),
    QOS_RELIABLE: (1, ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE),
}


def subscription_qos(role: str) -> QoSProfile:
    """QoS profile of an input role (cameras: sensor data depth 1; task: reliable + transient local)."""
    if role not in _SUBSCRIPTION_QOS:
        raise ValueError(f"unknown QoS role {role!r}")
    depth, reliability, durability = _SUBSCRIPTION_QOS[role]
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability, durability=durability)


def publication_qos(key: str) -> QoSProfile:
    """Outputs are reliable; the rollout publisher keeps a whole rollout (33 frames) for slow subscribers."""
    depth = 64 if key == "rollout_image" else 10
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def parameter_descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    """``ParameterDescriptor`` from the spec: type, description, read-only, ranges, allowed values."""
    descriptor = ParameterDescriptor(
        name=spec.name, type=_PARAMETER_TYPES[spec.type], description=spec.description, read_only=spec.read_only,
    )
    if spec.range is not None and spec.type == "integer":
        descriptor.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=0)]
    elif spec.range is not None and spec.type == "double":
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(spec.range[0]), to_value=float(spec.range[1]), step=0.0)
        ]
    constraints = []
    if spec.choices is not None:
        constraints.append("one of " + ", ".join(repr(c) for c in spec.choices))
    if spec.range is not None and spec.type == "double_array":
        constraints.append(f"each element in [{spec.range[0]}, {spec.range[1]}]")
    if spec.runtime:
        constraints.append("may change at runtime")
    descriptor.additional_constraints = "; ".join(constraints)
    return descriptor


def python_value(value: Any) -> Any:
    """Rclpy parameter value -> the plain types PARAMETER_SPEC validates (arrays arrive as array.array)."""
    if isinstance(value, (array.array, list, tuple)):
        return list(value)
    return value


class RclpyMessageFactory:
    """``MessageFactory`` for rclpy messages: arrays as ``array.array`` (fast path of the generated setters)."""

    _TYPECODES: ClassVar[dict[str, str]] = {"float32": "f", "float64": "d", "uint8": "B"}

    def new(self, type_name: str, **fields: Any) -> Any:
        """An rclpy message of ``type_name``."""
        return _message_class(type_name)(**fields)

    def array(self, values: np.ndarray, dtype: str) -> array.array:
        """A flat ``array.array`` of ``dtype`` (copying bytes, not element by element)."""
        out = array.array(self._TYPECODES[dtype])
        out.frombytes(np.ascontiguousarray(values, dtype=dtype).tobytes())
        return out

    def byte(self, value: int) -> bytes:
        """Rclpy holds ``byte`` fields as one-byte ``bytes``."""
        return bytes([int(value)])


@cache
def _message_class(type_name: str) -> Any:
    """``pkg/msg/Name`` -> the generated class ``pkg.msg.Name`` (what rosidl_runtime_py does; it has no wheel)."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class _RclpyLogHandler(logging.Handler):
    """Forward the package's Python log records to the node's rclpy logger (and so to /rosout)."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno >= logging.ERROR:
            self._logger.error(message)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(message)
        elif record.levelno >= logging.INFO:
            self._logger.info(message)
        else:
            self._logger.debug(message)


class PolicyNode(Node):
    """Cosmos3 policy / forward dynamics / inverse dynamics node; all behaviour is in ``PolicyNodeCore``."""

    def __init__(self, *, model: Any | None = None, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self._ros_log_handler = _RclpyLogHandler(self)
        logging.getLogger("cosmos3_ros").addHandler(self._ros_log_handler)
        logging.getLogger("cosmos3_ros").setLevel(logging.INFO)
        for spec in PARAMETER_SPEC:
            self._declare_from_spec(spec)
        values = {spec.name: self._value_from_spec(spec) for spec in PARAMETER_SPEC}
        if model is None:
            self.get_logger().info(f"loading {values['checkpoint']!r} ({values['profile']}) on {values['device']}")
            model = load_action_model(values)
        # Subscriptions may run in parallel (the buffer has its own lock). Everything that reads or changes the
        # node's state runs in the node's default group, which is mutually exclusive: rclpy creates the
        # parameter services (set_parameters -> on_parameters, which may recreate the snapshot timer) in that
        # group, so putting the snapshot and diagnostics timers and the pause / resume / clear services there
        # too is what guarantees a parameter change never races a snapshot. A group of our own would not: the
        # executor runs callbacks of different groups in parallel.
        self._inputs_group = ReentrantCallbackGroup()
        self._snapshots_group = self.default_callback_group
        # e-stop, dead-man and the execution timer never wait behind a snapshot or a parameter change
        self._safety_group = MutuallyExclusiveCallbackGroup()
        self._output_publishers: dict[str, Any] = {}
        self._publish_lock = threading.Lock()
        self._publishing = True
        self.execution: StreamingExecution | None = None
        profile = model.profile
        if (values["mode"] or profile.mode) == "policy" and profile.action_space == "joint_position":
            self.execution = StreamingExecution(values, profile, clock=self._node_time_s,
                                                publish=self._publish_execution, factory=RclpyMessageFactory())
        # Event snapshots (a camera frame arrived, the model freed up) run core.on_event in the snapshot group,
        # like the timer: the inputs and the worker only trigger this guard condition.
        self._snapshot_guard = self.create_guard_condition(self._on_snapshot_event,
                                                           callback_group=self._snapshots_group)
        self.core = PolicyNodeCore(
            model, values, clock=self._node_time_s, publish=self._publish_output, factory=RclpyMessageFactory(),
            set_timer_period=self._set_snapshot_period, diagnostic_name=f"{self.get_fully_qualified_name()}: cosmos3",
            hardware_id=values["device"], execution=self.execution, request_snapshot=self._request_snapshot,
        )
        for pub in self.core.publications:
            self._output_publishers[pub.key] = self._create_output_publisher(
                _message_class(pub.type_name), pub.topic, publication_qos(pub.key)
            )
        self._input_subscriptions = [
            self.create_subscription(_message_class(sub.type_name), sub.topic, sub.callback, subscription_qos(sub.qos),
                                     callback_group=self._inputs_group)
            for sub in self.core.subscriptions
        ]
        self._snapshot_timer = self.create_timer(
            self.core.timer_period_s, self.core.on_timer, callback_group=self._snapshots_group
        )
        self._diagnostics_timer = self.create_timer(values["diagnostics_period"], self.core.publish_diagnostics,
                                                    callback_group=self._snapshots_group)
        self._trigger_services = [
            self.create_service(
                Trigger, f"~/{name}", self._trigger_callback(handler), callback_group=self._snapshots_group
            )
            for name, handler in (("pause", self.core.pause), ("resume", self.core.resume),
                                  ("clear_buffers", self.core.clear_buffers))
        ]
        self._gripper_client: Any = None
        self._gripper_goal: Any = None
        if self.execution is not None:
            self.execution.measured_state = self.core.latest_state
            self._wire_execution(values)
        self.add_on_set_parameters_callback(self._validate_parameter_change)
        self.get_logger().info(
            f"{self.core.mode} with profile {self.core.profile.name}: inputs "
            + ", ".join(f"{s.topic} [{s.type_name}]" for s in self.core.subscriptions)
            + f"; dry_run={self.core.dry_run}"
        )

    def _wire_execution(self, values: dict[str, Any]) -> None:
        """E-stop topic + services, heartbeat, execution timer and the gripper output."""
        execution = self.execution
        assert execution is not None
        from std_msgs.msg import Bool

        latched = subscription_qos(QOS_LATCHED)
        self._safety_subscriptions = [
            self.create_subscription(Bool, values["estop_topic"], execution.on_estop_message, latched,
                                     callback_group=self._safety_group)]
        if values["heartbeat_topic"]:
            self._safety_subscriptions.append(self.create_subscription(
                Bool, values["heartbeat_topic"], execution.on_heartbeat, subscription_qos(QOS_RELIABLE),
                callback_group=self._safety_group))
        self._safety_services = [
            self.create_service(Trigger, "~/estop", self._trigger_callback(lambda: execution.engage_estop("service")),
                                callback_group=self._safety_group),
            self.create_service(Trigger, "~/release", self._trigger_callback(execution.release_estop),
                                callback_group=self._safety_group),
        ]
        self._execution_timer = self.create_timer(1.0 / values["execution_rate"], execution.tick,
                                                  callback_group=self._safety_group)
        output = values["gripper_output"]
        if output in ("auto", "action"):
            try:
                action_type = _message_class(values["gripper_action_type"])
                goal_type = _message_class(values["gripper_action_type"].replace("/action/", "/msg/"))
            except (ImportError, AttributeError, ValueError) as exc:
                if output == "action":
                    raise Cosmos3Error(f"parameter 'gripper_action_type': {values['gripper_action_type']!r} does "
                                       f"not import ({exc}); install control_msgs or set gripper_output: "
                                       "topic") from exc
                output = "topic"
            else:
                from rclpy.action import ActionClient

                self._gripper_client = ActionClient(self, action_type, values["gripper_action"],
                                                    callback_group=self._safety_group)
                self._gripper_goal = (action_type, goal_type)
                output = "action"
        if output == "topic":
            from std_msgs.msg import Float64

            self._output_publishers["gripper"] = self._create_output_publisher(
                Float64, values["gripper_command_topic"], publication_qos("gripper"))
        self.get_logger().info(f"execution: {values['execution_mode']}, hand-over {values['handover']}, gripper via "
                               f"{output}; e-stop on {values['estop_topic']!r} and ~/estop, ~/release")

    def _create_output_publisher(self, msg_type: Any, topic: str, qos: QoSProfile) -> Any:
        """A publisher without rclpy's default QoS event handlers (incompatible QoS / type warnings).

        Why: rclpy adds every event handler to the wait set in Python on each executor wake-up; with the node's
        outputs they were half of the handlers, and the wake-ups are what delays a camera set on a loaded
        machine (scripts/measure_dds_overhead.py). A subscriber with a mismatched QoS or type still warns on its
        own side; the node's input subscriptions keep rclpy's warnings, which is where they help an operator.
        """
        return self.create_publisher(msg_type, topic, qos,
                                     event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))

    def _publish_execution(self, key: str, msg: Any) -> None:
        """Execution outputs: trajectories on the node's JointTrajectory publisher, gripper commands."""
        if key == "gripper":
            if self._gripper_client is not None:
                action_type, goal_type = self._gripper_goal
                goal = action_type.Goal(command=goal_type(position=float(msg.position),
                                                          max_effort=float(msg.max_effort)))
                self._gripper_client.send_goal_async(goal)
            elif "gripper" in self._output_publishers:
                from std_msgs.msg import Float64

                self._output_publishers["gripper"].publish(Float64(data=float(msg.position)))
            return
        self._publish_output(key, msg)

    def _declare_from_spec(self, spec: ParameterSpec) -> None:
        descriptor = parameter_descriptor(spec)
        default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        if isinstance(default, list) and not default:
            # rclpy types a bare [] as a byte array, so declare the type (a parameter file may give a value),
            # then give an unset parameter its typed empty value: a declared-but-unset parameter makes rclpy
            # answer a GetParameters request that names it with no values at all (what `ros2 param dump`
            # sends). set_parameters would refuse the read-only ones, so this uses the call rclpy's own
            # declare_parameters makes (rclpy is pinned; test_node_graph checks GetParameters end to end).
            array_type = _EMPTY_ARRAY_TYPES[spec.type]
            self.declare_parameter(spec.name, array_type, descriptor)
            if self.get_parameter_or(spec.name).type_ == Parameter.Type.NOT_SET:
                self._declare_parameter_common([Parameter(spec.name, array_type, [])], {spec.name: descriptor})
        else:
            self.declare_parameter(spec.name, default, descriptor)

    def _value_from_spec(self, spec: ParameterSpec) -> Any:
        return python_value(self.get_parameter(spec.name).value)

    def _node_time_s(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    def _publish_output(self, key: str, msg: Any) -> None:
        # The lock orders a publish from the inference thread against ``stop_publishing`` at teardown.
        with self._publish_lock:
            if self._publishing:
                self._output_publishers[key].publish(msg)

    def _request_snapshot(self) -> None:
        """From any thread: have the executor run ``core.on_event`` (not after teardown began)."""
        with self._publish_lock:
            if self._publishing:
                self._snapshot_guard.trigger()

    def _on_snapshot_event(self) -> None:
        self.core.on_event()

    def stop_publishing(self) -> None:
        """Drop every later output (an abandoned model call may still finish after teardown began)."""
        with self._publish_lock:
            self._publishing = False

    def _set_snapshot_period(self, period_s: float) -> None:
        # Change the period of the running timer and restart it from now. Cancelling it and creating another
        # would race the executor: a timer cancelled between its wait and its call makes rclpy raise from spin.
        self._snapshot_timer.timer_period_ns = round(period_s * 1e9)
        self._snapshot_timer.reset()

    def _trigger_callback(self, handler: Any) -> Any:
        def callback(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            response.success, response.message = handler()
            return response

        return callback

    def _validate_parameter_change(self, parameters: Sequence[Parameter]) -> SetParametersResult:
        accepted, reason = self.core.on_parameters({p.name: python_value(p.value) for p in parameters})
        return SetParametersResult(successful=accepted, reason=reason)

    def shutdown(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Cancel the timers, stop the inference and rollout threads, then stop publishing.

        Returns True if the threads ended within ``timeout``; otherwise a model call is still running and is
        abandoned (its outputs are dropped).
        """
        self._snapshot_timer.cancel()
        self._diagnostics_timer.cancel()
        if self.execution is not None:
            self._execution_timer.cancel()
        try:
            joined = self.core.shutdown(timeout)
        except Exception as exc:  # the hold at shutdown is best effort once the context is gone (Ctrl-C)
            self.get_logger().warning(f"shutdown: {type(exc).__name__}: {exc}")
            joined = self.core.worker.stop(timeout)
        if not joined:
            self.get_logger().info(f"a model call is still running after {timeout} s; its result is dropped")
        self.stop_publishing()
        logging.getLogger("cosmos3_ros").removeHandler(self._ros_log_handler)
        return joined


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: Any) -> None:
    """Before the executor spins (model loading): a signal aborts start-up."""
    raise KeyboardInterrupt


def main(args: Sequence[str] | None = None) -> NoReturn:
    """``ros2 run cosmos3_ros policy_node``: serve until SIGINT / SIGTERM (exit 0); exit code 1 on a start-up error.

    Ends the process (``os._exit``) after the teardown instead of returning.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    node: PolicyNode | None = None
    executor: Executor | None = None
    spinner: Spinner | None = None
    code = 0
    joined = True
    try:
        node = PolicyNode()
        executor = make_executor()
        executor.add_node(node)
        for sig in _STOP_SIGNALS:
            signal.signal(sig, lambda signum, frame: stop.set())
        # The executor spins on a thread of its own so that the main thread stays in Python, where signal
        # handlers run (a C-level wait would delay them until the next callback).
        spinner = Spinner(executor, "ros-executor", on_exit=stop)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    except Cosmos3Error as exc:
        print(f"policy_node: error: {exc}", file=sys.stderr)
        code = 1
    finally:
        for sig in _STOP_SIGNALS:  # a second Ctrl-C must not interrupt the teardown
            signal.signal(sig, signal.SIG_IGN)
        # The executor stops first (it waits for the callbacks it is running), so no callback runs while the
        # node cancels its timers: a timer cancelled under a spinning executor makes rclpy raise from spin.
        # Publishing (the worker's last chunk, the hold at shutdown) does not need the executor.
        if spinner is not None:
            spinner.stop()
        elif executor is not None:
            executor.shutdown(timeout_sec=0)
        if node is not None:
            joined = node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
        with contextlib.suppress(Exception):
            rclpy.get_default_context().destroy()  # the DDS participant (and its shared-memory files) go now
    if not joined:
        log.info("a model call was abandoned at shutdown")
    # Leave without finalising the interpreter: with torch and diffusers loaded that takes 2-4 s on a busy CPU
    # (the 2 s exit budget), and under an abandoned model call it could hang. Everything that must happen at
    # exit has happened above; only Python's own buffers remain.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
