"""The rclpy adapter's own logic, run against a minimal stand-in of the rclpy API (rclpy is not on PyPI).

This checks what ``cosmos3_ros/ros/policy_node.py`` does with the API: every parameter declared from
PARAMETER_SPEC with its descriptor, subscriptions / publishers / timers / services created from the core's tables
with the intended QoS, the set-parameters callback, the message factory's array types and the teardown order.
Whether rclpy itself behaves as assumed is checked by test_policy_node_rclpy.py under colcon test.
"""

from __future__ import annotations

import array
import enum
import importlib
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from cosmos3_ros.processing.profiles import RELEASED_DROID_POLICY
from cosmos3_ros.processing.request import ActionPrediction
from cosmos3_ros.runtime.parameters import PARAMETER_SPEC

EVENTS: list[str] = []


class Record:
    """A message / descriptor stand-in: keeps its keyword arguments as attributes."""

    type_name = ""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def message_class(type_name):
    return type(type_name.replace("/", "_"), (Record,), {"type_name": type_name})


class ParameterType:
    PARAMETER_BOOL, PARAMETER_INTEGER, PARAMETER_DOUBLE, PARAMETER_STRING = 1, 2, 3, 4
    PARAMETER_DOUBLE_ARRAY, PARAMETER_STRING_ARRAY = 8, 9


class Parameter:
    class Type(enum.Enum):
        DOUBLE_ARRAY = 8
        STRING_ARRAY = 9

    def __init__(self, name, type_=None, value=None):
        self.name, self.type_, self.value = name, type_, value


class Timer:
    def __init__(self, period, callback):
        self.period, self.callback, self.cancelled = period, callback, False

    def cancel(self):
        self.cancelled = True
        EVENTS.append("timer cancelled")


class Publisher:
    def __init__(self, cls, topic, qos):
        self.cls, self.topic, self.qos, self.sent = cls, topic, qos, []

    def publish(self, msg):
        self.sent.append(msg)


class Logger:
    def __init__(self):
        self.lines = []

    def info(self, m):
        self.lines.append(("info", m))

    warning = error = debug = info


class StubNode:
    def __init__(self, name, parameter_overrides=(), **kwargs):
        self.name = name
        self.overrides = {p.name: p.value for p in parameter_overrides}
        self.values, self.descriptors = {}, {}
        self.publishers_, self.subscriptions_, self.timers_, self.services_, self.param_callbacks = [], [], [], [], []
        self.logger = Logger()
        self.clock_ns = 5_000_000_000

    def get_logger(self):
        return self.logger

    def declare_parameter(self, name, value, descriptor):
        assert name not in self.values, f"{name} declared twice"
        if isinstance(value, Parameter.Type):
            assert descriptor.type == value.value
            value = self.overrides.get(name)
        else:
            value = self.overrides.get(name, value)
        self.values[name], self.descriptors[name] = value, descriptor

    def get_parameter(self, name):
        return SimpleNamespace(value=self.values[name])

    def get_parameter_or(self, name, alternative):
        value = self.values[name]
        return alternative if value is None else SimpleNamespace(value=value)

    def get_fully_qualified_name(self):
        return f"/{self.name}"

    def get_clock(self):
        return SimpleNamespace(now=lambda: SimpleNamespace(nanoseconds=self.clock_ns))

    def create_publisher(self, cls, topic, qos):
        self.publishers_.append(Publisher(cls, topic, qos))
        return self.publishers_[-1]

    def create_subscription(self, cls, topic, callback, qos, callback_group=None):
        self.subscriptions_.append(SimpleNamespace(cls=cls, topic=topic, callback=callback, qos=qos,
                                                   group=callback_group))
        return self.subscriptions_[-1]

    def create_timer(self, period, callback, callback_group=None):
        self.timers_.append(Timer(period, callback))
        return self.timers_[-1]

    def destroy_timer(self, timer):
        self.timers_.remove(timer)

    def create_service(self, srv, name, callback, callback_group=None):
        self.services_.append(SimpleNamespace(srv=srv, name=name, callback=callback))
        return self.services_[-1]

    def add_on_set_parameters_callback(self, callback):
        self.param_callbacks.append(callback)

    def destroy_node(self):
        EVENTS.append("node destroyed")


def enum_class(name, *members):
    return enum.Enum(name, {m: m for m in members})


def stub_modules():
    qos = types.ModuleType("rclpy.qos")
    qos.QoSProfile = Record
    qos.DurabilityPolicy = enum_class("DurabilityPolicy", "VOLATILE", "TRANSIENT_LOCAL")
    qos.ReliabilityPolicy = enum_class("ReliabilityPolicy", "RELIABLE", "BEST_EFFORT")
    qos.HistoryPolicy = enum_class("HistoryPolicy", "KEEP_LAST")
    rclpy = types.ModuleType("rclpy")
    rclpy.init = lambda args=None: EVENTS.append("init")
    rclpy.try_shutdown = lambda: EVENTS.append("rclpy shutdown")
    node = types.ModuleType("rclpy.node")
    node.Node = StubNode
    groups = types.ModuleType("rclpy.callback_groups")
    groups.MutuallyExclusiveCallbackGroup = type("MutuallyExclusiveCallbackGroup", (), {})
    groups.ReentrantCallbackGroup = type("ReentrantCallbackGroup", (), {})
    executors = types.ModuleType("rclpy.executors")
    executors.ExternalShutdownException = type("ExternalShutdownException", (Exception,), {})
    executors.MultiThreadedExecutor = None
    parameter = types.ModuleType("rclpy.parameter")
    parameter.Parameter = Parameter
    rcl_msg = types.ModuleType("rcl_interfaces.msg")
    for name in ("FloatingPointRange", "IntegerRange", "ParameterDescriptor", "SetParametersResult"):
        setattr(rcl_msg, name, type(name, (Record,), {}))
    rcl_msg.ParameterType = ParameterType
    utilities = types.ModuleType("rosidl_runtime_py.utilities")
    utilities.get_message = message_class
    srv = types.ModuleType("std_srvs.srv")
    srv.Trigger = type("Trigger", (), {"Request": Record, "Response": Record})
    return {"rclpy": rclpy, "rclpy.node": node, "rclpy.qos": qos, "rclpy.callback_groups": groups,
            "rclpy.executors": executors, "rclpy.parameter": parameter, "rcl_interfaces": types.ModuleType("x"),
            "rcl_interfaces.msg": rcl_msg, "rosidl_runtime_py": types.ModuleType("x"),
            "rosidl_runtime_py.utilities": utilities, "std_srvs": types.ModuleType("x"), "std_srvs.srv": srv}


class StandInModel:
    profile = RELEASED_DROID_POLICY

    def with_profile(self, profile):
        twin = StandInModel()
        twin.profile = profile
        return twin

    def predict(self, request):
        p = self.profile
        return ActionPrediction(actions=np.ones((32, 8), np.float32), rollout=None, mode="policy", profile=p.name,
                                domain_name=p.domain_name, domain_id=p.domain_id,
                                dimension_names=p.dimension_names, fps=p.fps, seed=0)


@pytest.fixture
def policy_node(monkeypatch):
    for name, module in stub_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "cosmos3_ros.ros.policy_node", raising=False)
    module = importlib.import_module("cosmos3_ros.ros.policy_node")
    EVENTS.clear()
    node = module.PolicyNode(model=StandInModel(), parameter_overrides=[
        Parameter("checkpoint", value="/stand-in"), Parameter("task", value="pick"),
        Parameter("joint_position_min", value=[-3.0] * 7), Parameter("joint_position_max", value=[3.0] * 7)])
    yield module, node
    node.core.shutdown(5)
    sys.modules.pop("cosmos3_ros.ros.policy_node", None)


def test_every_parameter_is_declared_from_the_spec(policy_node):
    _, node = policy_node
    assert list(node.descriptors) == [spec.name for spec in PARAMETER_SPEC]
    for spec in PARAMETER_SPEC:
        descriptor = node.descriptors[spec.name]
        assert descriptor.read_only == spec.read_only and descriptor.description == spec.description
    assert node.descriptors["inference_rate"].floating_point_range[0].to_value == 100.0
    assert node.descriptors["steps"].integer_range[0].from_value == 0
    assert "'policy', 'forward_dynamics'" in node.descriptors["mode"].additional_constraints
    assert node.core.params["joint_position_min"] == (-3.0,) * 7
    assert node.core.params["action_stats_q01"] == ()  # declared by type, read with the empty fallback


def test_topics_qos_timers_and_services(policy_node):
    _, node = policy_node
    subs = {s.topic: s for s in node.subscriptions_}
    assert subs["/camera/wrist/image_raw"].cls.type_name == "sensor_msgs/msg/Image"
    assert subs["/camera/wrist/image_raw"].qos.reliability.name == "BEST_EFFORT"
    assert subs["/camera/wrist/image_raw"].qos.depth == 1
    assert subs["task"].qos.durability.name == "TRANSIENT_LOCAL" and subs["task"].qos.reliability.name == "RELIABLE"
    pubs = {p.topic: p for p in node.publishers_}
    assert pubs["~/action_chunk"].cls.type_name == "cosmos3_ros_msgs/msg/ActionChunk"
    assert set(pubs) == {"~/action_chunk", "~/joint_trajectory", "/diagnostics"}
    assert [t.period for t in node.timers_] == [0.5, 1.0]
    assert sorted(s.name for s in node.services_) == ["~/clear_buffers", "~/pause", "~/resume"]
    response = node.services_[0].callback(Record(), Record())
    assert response.success is True and response.message.startswith("paused")


def test_parameter_callback_validates_and_resets_the_timer(policy_node):
    _, node = policy_node
    callback = node.param_callbacks[0]
    result = callback([Parameter("inference_rate", value=4.0)])
    assert result.successful is True
    assert [t.period for t in node.timers_] == [1.0, 0.25]
    result = callback([Parameter("checkpoint", value="/x")])
    assert result.successful is False and "read-only" in result.reason
    result = callback([Parameter("action_stats_q01", value=array.array("d", [1.0] * 3))])
    # Arrays arrive as array.array and are validated like lists: 3 values for 8 columns is refused.
    assert result.successful is False and "'q01' has 3 values; expected 8" in result.reason


def test_diagnostics_and_chunks_are_published_as_rclpy_style_messages(policy_node):
    _, node = policy_node
    pubs = {p.topic: p for p in node.publishers_}
    node.timers_[1].callback()
    status = pubs["/diagnostics"].sent[-1].status[0]
    assert status.level == b"\x00" and status.hardware_id == "cuda"
    stamp = SimpleNamespace(sec=5, nanosec=0)
    for sub in node.subscriptions_:
        if sub.cls.type_name == "sensor_msgs/msg/Image":
            sub.callback(SimpleNamespace(header=SimpleNamespace(stamp=stamp), height=2, width=2, step=6,
                                         encoding="rgb8", is_bigendian=0, data=array.array("B", bytes(12))))
        elif sub.cls.type_name == "sensor_msgs/msg/JointState":
            names = [*(f"fr3_joint{i}" for i in range(1, 8)), "fr3_finger_joint1"]
            sub.callback(SimpleNamespace(header=SimpleNamespace(stamp=stamp), name=names,
                                         position=array.array("d", [0.0] * 7 + [0.04])))
    assert node.timers_[0].callback() == "submitted"
    assert node.core.worker.wait_idle(5)
    chunk = pubs["~/action_chunk"].sent[-1]
    assert isinstance(chunk.data, array.array) and chunk.data.typecode == "f" and len(chunk.data) == 256
    assert (chunk.header.stamp.sec, chunk.chunk_length) == (5, 32)
    assert pubs["~/joint_trajectory"].sent == []  # dry run by default


def test_shutdown_cancels_timers_then_joins_the_worker(policy_node):
    _, node = policy_node
    assert node.shutdown(timeout=5)
    assert all(t.cancelled for t in node.timers_)
    assert not node.core.worker.alive
    assert EVENTS[:2] == ["timer cancelled", "timer cancelled"]
