"""The real ``policy_node`` over Fast DDS: started from its console script with a parameter file, as a user does.

One node process (tiny random checkpoint on CPU, released DROID profile from config/released_droid_policy.yaml,
one denoising step, dry_run false, rollout published) serves every test of this module; an rclpy node in the
test process talks to it. Inputs: wrist and exterior_1 as raw rgb8 Images, exterior_2 as a png CompressedImage,
arm and gripper JointStates, the task. Skipped outside CI when ROS is not installed (``bash
scripts/setup_ros.sh``); under CI=true a missing ROS fails.
"""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest
from ros_graph import (  # noqa: F401 (pytest fixtures)
    HOME_Q,
    DiagnosticsListener,
    DroidInputs,
    droid_params,
    require_ros,
    ros_env_fixture,
    ros_peer_fixture,
    start_node_fixture,
    wait_for,
)

require_ros()

from cosmos3_ros_msgs.msg import ActionChunk  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters, SetParameters  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from cosmos3_ros.runtime.parameters import PARAMETER_SPEC  # noqa: E402

pytestmark = pytest.mark.rclpy

NS = "/graph"
NODE = f"{NS}/policy_node"
TASK = "put the marker in the cup"
Q = (0.0, -0.4, 0.1, -2.2, 0.05, 1.9, 0.8)
FINGER = 0.03  # open 0.04 .. closed 0.0 -> gripper 0.25
HORIZON = 16
RELIABLE = QoSProfile(depth=64, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


class Collector:
    """Keeps every message of one topic (thread-safe: the peer's executor delivers from its threads)."""

    def __init__(self, peer, msg_type, topic, qos=RELIABLE):
        self.messages = []
        self._lock = threading.Lock()
        self._sub = peer.node.create_subscription(msg_type, topic, self._add, qos)

    def _add(self, msg):
        with self._lock:
            self.messages.append(msg)

    def stamped(self, stamp):
        with self._lock:
            return [m for m in self.messages if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp]


@pytest.fixture(scope="module")
def node(start_node, tiny_checkpoint):
    """One policy_node for the module, in namespace /graph."""
    # per_chunk: one JointTrajectory per chunk, what this module checks; streaming execution (the default when
    # dry_run is off) is tested against the simulated FR3 in test/sim.
    params = droid_params(NS, tiny_checkpoint, compressed=("exterior_2",), steps=1, dry_run=False,
                          execution_mode="per_chunk", execution_horizon=HORIZON, publish_rollout=True,
                          inference_rate=4.0, diagnostics_period=0.2)
    process = start_node(params, name="graph", ros_args=("-r", "__ns:=" + NS))
    process.wait_for_log(r"policy with profile released_droid_policy", timeout=240)
    yield process
    code, _ = process.stop()
    assert code == 0, process.log()
    assert "Traceback" not in process.log()


@pytest.fixture(scope="module")
def outputs(node, ros_peer):
    """Subscribers to every output, created once so no test misses a message."""
    peer = ros_peer
    collectors = {
        "chunk": Collector(peer, ActionChunk, f"{NODE}/action_chunk"),
        "trajectory": Collector(peer, JointTrajectory, f"{NODE}/joint_trajectory"),
        "rollout": Collector(peer, Image, f"{NODE}/rollout/image"),
    }
    collectors["diagnostics"] = DiagnosticsListener(peer, NODE)
    return collectors


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(7)
    return {name: rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for name in ("wrist", "exterior_1", "exterior_2")}


@pytest.fixture(scope="module")
def inputs(node, ros_peer, frames):
    publishers = DroidInputs(ros_peer, NS, frames, formats={"exterior_2": "png"})
    publishers.send_task(TASK)
    assert publishers.wait_connected(), node.log()
    yield publishers
    publishers.close()


@pytest.fixture(scope="module")
def served(node, inputs, outputs):
    """Send the same observation (new stamps) until a chunk for one of them arrives; returns (stamp, chunk).

    Cameras are best effort, so one set may lose a frame; every set carries the same pixels and joints.
    """
    sent = []

    def answered():
        return next((key for key in sent if outputs["chunk"].stamped(key)), None)

    deadline = time.monotonic() + 240
    while answered() is None and time.monotonic() < deadline:
        stamp = inputs.send(q=Q, gripper_position=FINGER)
        sent.append((stamp.sec, stamp.nanosec))
        wait_for(answered, timeout=0.5)
    key = answered()
    if key is None:
        raise AssertionError(f"no ActionChunk for {len(sent)} observations:\n{node.log()}")
    return key, outputs["chunk"].stamped(key)[0]


def test_topics_types_and_qos(node, ros_peer):
    peer = ros_peer.node
    assert wait_for(lambda: peer.get_subscriptions_info_by_topic(f"{NS}/task"), timeout=15)
    camera = peer.get_subscriptions_info_by_topic(f"{NS}/wrist/image_raw")
    assert camera and camera[0].topic_type == "sensor_msgs/msg/Image"
    assert camera[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    compressed = peer.get_subscriptions_info_by_topic(f"{NS}/exterior_2/image_raw/compressed")
    assert compressed and compressed[0].topic_type == "sensor_msgs/msg/CompressedImage"
    joints = peer.get_subscriptions_info_by_topic(f"{NS}/joint_states")
    assert joints[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    task = peer.get_subscriptions_info_by_topic(f"{NS}/task")
    assert task[0].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert task[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert wait_for(lambda: f"{NODE}/action_chunk" in dict(peer.get_topic_names_and_types()), timeout=15)
    names = dict(peer.get_topic_names_and_types())
    assert names[f"{NODE}/action_chunk"] == ["cosmos3_ros_msgs/msg/ActionChunk"]
    assert names[f"{NODE}/joint_trajectory"] == ["trajectory_msgs/msg/JointTrajectory"]
    assert names[f"{NODE}/rollout/image"] == ["sensor_msgs/msg/Image"]
    assert names["/diagnostics"] == ["diagnostic_msgs/msg/DiagnosticArray"]
    chunk_pub = peer.get_publishers_info_by_topic(f"{NODE}/action_chunk")
    assert chunk_pub[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE


def test_action_chunk_equals_the_cli_on_the_same_inputs(served, frames, tiny_checkpoint, tmp_path):
    from PIL import Image as PILImage

    from cosmos3_ros.tools.cli import main

    _, chunk = served
    assert (chunk.chunk_length, chunk.action_dim) == (32, 8)
    assert (chunk.mode, chunk.profile, chunk.action_space) == ("policy", "released_droid_policy", "joint_position")
    assert chunk.header.frame_id == "fr3_link0" and chunk.model_latency > 0
    args = ["run", "--checkpoint", str(tiny_checkpoint), "--profile", "released_droid_policy", "--device", "cpu",
            "--steps", "1", "--prompt", TASK, "--no-video", "--out", str(tmp_path / "cli")]
    for name, rgb in frames.items():
        path = tmp_path / f"{name}.png"
        PILImage.fromarray(rgb).save(path)
        args += ["--camera", f"{name}={path}"]
    gripper = (FINGER - 0.04) / (0.0 - 0.04)
    args += ["--state", json.dumps([*Q, gripper])]
    assert main(args) == 0
    expected = np.asarray(json.loads((tmp_path / "cli_action.json").read_text())["data"], np.float32)
    # Same weights, inputs, seed and torch build, but another process: kernels may split work differently
    # between threads, so allow float32 rounding rather than demand identical bits.
    np.testing.assert_allclose(np.asarray(chunk.data, np.float32).reshape(32, 8), expected, rtol=0, atol=1e-5)


def test_joint_trajectory_is_the_chunk_made_safe(served, outputs):
    from cosmos3_ros.runtime.safety import JointSafetyLimits, make_safe_joint_targets

    key, chunk = served
    assert wait_for(lambda: outputs["trajectory"].stamped(key), timeout=30)
    trajectory = outputs["trajectory"].stamped(key)[0]
    joints = [f"fr3_joint{i}" for i in range(1, 8)]
    assert list(trajectory.joint_names) == joints and len(trajectory.points) == HORIZON
    positions = np.asarray([p.positions for p in trajectory.points])
    # The limits and max_joint_step of config/released_droid_policy.yaml, applied from the measured joints.
    limits = JointSafetyLimits.from_parameters(
        joints, [-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159],
        [2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159], 0.2)
    actions = np.asarray(chunk.data, np.float32).reshape(32, 8)
    expected = make_safe_joint_targets(actions[:HORIZON, :7], np.asarray(Q), limits).positions
    np.testing.assert_allclose(positions, expected, rtol=0, atol=1e-6)  # float32 chunk vs float64 message
    assert np.abs(np.diff(np.vstack([Q, positions]), axis=0)).max() <= 0.2 + 1e-6
    start = trajectory.points[0].time_from_start
    assert math.isclose(start.sec + start.nanosec / 1e9, 1 / 15, abs_tol=1e-6)


def test_rollout_images_follow_the_observation(served, outputs):
    key, _ = served
    stamp_ns = key[0] * 10**9 + key[1]

    def rollout():
        return [m for m in outputs["rollout"].messages if m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                >= stamp_ns]

    assert wait_for(lambda: len(rollout()) >= 2, timeout=60)
    frames = rollout()
    assert all(f.encoding == "rgb8" and f.height > 0 and len(f.data) == f.step * f.height for f in frames)
    stamps = [f.header.stamp.sec * 10**9 + f.header.stamp.nanosec for f in frames]
    assert stamps[0] == stamp_ns and stamps[1] - stamps[0] == round(1e9 / 15)


def test_diagnostics_report_the_served_chunk(served, outputs):
    diagnostics = outputs["diagnostics"]
    # The job publishes the chunk and the trajectory, decodes the video, publishes its frames, and only
    # then records its latency: a diagnostics message sent in between shows some of these and not the
    # rest. Wait for one that shows all four.
    published = ("chunks published", "trajectories published", "rollout frames published")

    def complete() -> bool:
        values = diagnostics.values()
        return "inference latency last (s)" in values and all(int(values.get(k, 0)) >= 1 for k in published)

    assert wait_for(complete, timeout=60), diagnostics.values()
    values = diagnostics.values()
    assert values["mode"] == "policy" and values["dry_run"] == "False"
    assert float(values["inference latency last (s)"]) > 0
    assert wait_for(lambda: diagnostics.values().get("last rollout video", "none").endswith("last_rollout.mp4"),
                    timeout=60)


def test_every_parameter_is_listed_described_and_returned_at_once(node, ros_peer):
    listed = ros_peer.call(ListParameters, f"{NODE}/list_parameters", ListParameters.Request())
    names = list(listed.result.names)
    assert {spec.name for spec in PARAMETER_SPEC} <= set(names)
    request = DescribeParameters.Request(names=[spec.name for spec in PARAMETER_SPEC])
    described = ros_peer.call(DescribeParameters, f"{NODE}/describe_parameters", request)
    for spec, descriptor in zip(PARAMETER_SPEC, described.descriptors, strict=True):
        assert descriptor.name == spec.name
        assert descriptor.read_only == spec.read_only, spec.name
        assert descriptor.description == spec.description
    # What `ros2 param dump` does: every listed name in one request (bug 3: the empty arrays emptied the answer).
    values = ros_peer.call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=names)).values
    assert len(values) == len(names)
    by_name = dict(zip(names, values, strict=True))
    assert by_name["action_stats_mean"].type == ParameterType.PARAMETER_DOUBLE_ARRAY
    assert list(by_name["action_stats_mean"].double_array_value) == []
    assert by_name["joint_position_min"].type == ParameterType.PARAMETER_DOUBLE_ARRAY
    assert len(by_name["joint_position_min"].double_array_value) == 7
    assert by_name["steps"].integer_value == 1


def _set(ros_peer, name, value):
    if isinstance(value, bool):
        pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    elif isinstance(value, float):
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    elif isinstance(value, list):
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=pv)])
    return ros_peer.call(SetParameters, f"{NODE}/set_parameters", request).results[0]


def test_parameters_set_through_the_service_are_validated_with_reasons(node, ros_peer):
    assert _set(ros_peer, "inference_rate", 3.0).successful
    refused = _set(ros_peer, "inference_rate", 500.0)
    assert not refused.successful and "inference_rate" in refused.reason
    refused = _set(ros_peer, "checkpoint", "/other")
    assert not refused.successful and "read-only" in refused.reason
    refused = _set(ros_peer, "action_stats_mean", [0.0, 1.0])
    assert not refused.successful and "2 values; expected 8" in refused.reason
    assert _set(ros_peer, "action_stats_mean", []).successful
    assert _set(ros_peer, "inference_rate", 4.0).successful


def test_pause_resume_and_clear_services(node, ros_peer):
    for name, expected in (("pause", "paused"), ("resume", "resumed"), ("clear_buffers", "cleared")):
        response = ros_peer.call(Trigger, f"{NODE}/{name}", Trigger.Request())
        assert response.success and response.message.startswith(expected), response.message


def test_bad_inputs_are_counted_and_the_node_stays_alive(node, ros_peer, inputs, outputs):
    diagnostics = outputs["diagnostics"]
    assert wait_for(lambda: "input errors" in diagnostics.values(), timeout=15)
    before = int(diagnostics.values()["input errors"])
    now = ros_peer.node.get_clock().now().to_msg()
    depth = Image(height=2, width=2, encoding="16UC1", step=4, data=bytes(8))
    depth.header.stamp = now
    inputs.cameras[0].publish(depth)  # a depth image on the wrist topic: dropped on the worker or counted
    nan = JointState(name=[f"fr3_joint{i}" for i in range(1, 8)], position=[math.nan] * 7)
    nan.header.stamp = now
    inputs.joints.publish(nan)
    inputs.send_task("   ")
    future = JointState(name=[f"fr3_joint{i}" for i in range(1, 8)], position=list(HOME_Q))
    future.header.stamp.sec = now.sec + 3600
    inputs.joints.publish(future)
    assert wait_for(lambda: int(diagnostics.values()["input errors"]) >= before + 3, timeout=15), diagnostics.values()
    assert wait_for(lambda: int(diagnostics.values()["future stamps dropped"]) >= 1, timeout=15)
    assert node.alive()
    response = ros_peer.call(Trigger, f"{NODE}/clear_buffers", Trigger.Request())
    assert response.success
    inputs.send_task(TASK)
