"""rclpy wiring of policy_node: parameters, topics and QoS, services, a message round trip, clean shutdown.

Needs a ROS 2 Jazzy workspace with cosmos3_ros_msgs built: ``colcon test --packages-select cosmos3_ros``.
Skipped (with this reason printed) where rclpy is not installed. The model is a CPU stand-in: these tests
check the ROS graph, not the network.
"""

from __future__ import annotations

import array
import threading
import time
import uuid

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed; run under colcon test in a ROS 2 Jazzy workspace")

from builtin_interfaces.msg import Time  # noqa: E402
from cosmos3_ros_msgs.msg import ActionChunk  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from cosmos3_ros.processing.profiles import RELEASED_DROID_POLICY  # noqa: E402
from cosmos3_ros.processing.request import ActionPrediction  # noqa: E402
from cosmos3_ros.ros.policy_node import PolicyNode  # noqa: E402
from cosmos3_ros.runtime.parameters import PARAMETER_SPEC  # noqa: E402

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
CAMERA_TOPICS = ["/test_cam/wrist", "/test_cam/exterior_1", "/test_cam/exterior_2"]


class StandInModel:
    """Returns a [32, 8] chunk of zeros plus the state; no GPU."""

    profile = RELEASED_DROID_POLICY

    def with_profile(self, profile):
        twin = StandInModel()
        twin.profile = profile
        return twin

    def predict(self, request):
        actions = np.zeros((32, 8), np.float32) + np.asarray(request.state, np.float32)
        p = self.profile
        return ActionPrediction(actions=actions, rollout=None, mode="policy", profile=p.name,
                                domain_name=p.domain_name, domain_id=p.domain_id,
                                dimension_names=p.dimension_names, fps=p.fps, seed=0)


@pytest.fixture
def graph():
    """A policy node and a test node in a unique namespace, spun by one executor thread."""
    rclpy.init()
    namespace = f"/t{uuid.uuid4().hex[:8]}"
    node = PolicyNode(model=StandInModel(), namespace=namespace, parameter_overrides=[
        Parameter("checkpoint", value="/stand-in"),
        Parameter("camera_topics", value=CAMERA_TOPICS),
        Parameter("gripper_source", value="none"),
        Parameter("inference_rate", value=20.0),
    ])
    peer = Node("peer", namespace=namespace)
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    executor.add_node(peer)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield node, peer, namespace
    finally:
        joined = node.shutdown(timeout=10)
        executor.shutdown()
        spinner.join(timeout=10)
        node.destroy_node()
        peer.destroy_node()
        rclpy.try_shutdown()
        assert joined and not node.core.worker.alive


def wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_every_parameter_is_declared_with_its_descriptor(graph):
    node, _, _ = graph
    for spec in PARAMETER_SPEC:
        assert node.has_parameter(spec.name), spec.name
        descriptor = node.describe_parameter(spec.name)
        assert descriptor.read_only == spec.read_only, spec.name
        assert descriptor.description == spec.description
    assert node.get_parameter("dry_run").value is True


def test_topics_types_and_qos(graph):
    node, _, namespace = graph
    assert wait(lambda: node.count_subscribers(f"{namespace}/task") >= 1)
    camera = node.get_subscriptions_info_by_topic(CAMERA_TOPICS[0])
    assert camera and camera[0].topic_type == "sensor_msgs/msg/Image"
    # Depth is not part of discovery data; reliability and durability are.
    assert camera[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    task = node.get_subscriptions_info_by_topic(f"{namespace}/task")
    assert task[0].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert task[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    names = dict(node.get_topic_names_and_types())
    assert names[f"{namespace}/policy_node/action_chunk"] == ["cosmos3_ros_msgs/msg/ActionChunk"]
    assert names[f"{namespace}/policy_node/joint_trajectory"] == ["trajectory_msgs/msg/JointTrajectory"]
    assert names["/diagnostics"] == ["diagnostic_msgs/msg/DiagnosticArray"]


def test_images_joint_states_and_task_in_action_chunk_out(graph):
    node, peer, namespace = graph
    received = []
    peer.create_subscription(ActionChunk, f"{namespace}/policy_node/action_chunk", received.append, 10)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    peer.create_publisher(String, f"{namespace}/task", latched).publish(String(data="pick up the cup"))
    cameras = [peer.create_publisher(Image, topic, 1) for topic in CAMERA_TOPICS]
    joints = peer.create_publisher(JointState, "/joint_states", 10)
    assert wait(lambda: all(p.get_subscription_count() for p in cameras))
    q = [0.1 * i for i in range(7)]
    for _ in range(20):
        stamp = node.get_clock().now().to_msg()
        for pub in cameras:
            image = Image(height=4, width=6, encoding="rgb8", step=18)
            image.header.stamp = stamp
            image.data = array.array("B", bytes(72))
            pub.publish(image)
        state = JointState(name=ARM, position=q)
        state.header.stamp = stamp
        joints.publish(state)
        if received:
            break
        time.sleep(0.1)
    assert wait(lambda: received)
    chunk = received[0]
    assert (chunk.chunk_length, chunk.action_dim) == (32, 8)
    assert isinstance(chunk.header.stamp, Time) and chunk.header.stamp.sec > 0
    np.testing.assert_allclose(np.asarray(chunk.data).reshape(32, 8)[0], [*q, 0.0], atol=1e-6)


def test_runtime_parameters_are_validated(graph):
    node, _, _ = graph
    assert node.set_parameters([Parameter("inference_rate", value=5.0)])[0].successful
    assert not node.set_parameters([Parameter("inference_rate", value=500.0)])[0].successful
    assert not node.set_parameters([Parameter("checkpoint", value="/other")])[0].successful
    assert node.set_parameters([Parameter("guidance", value=1.0)])[0].successful
    assert node.core.profile.guidance == 1.0


def test_pause_resume_and_clear_services(graph):
    _, peer, namespace = graph
    for name, expected in (("pause", "paused"), ("resume", "resumed"), ("clear_buffers", "cleared")):
        client = peer.create_client(Trigger, f"{namespace}/policy_node/{name}")
        assert client.wait_for_service(timeout_sec=5)
        future = client.call_async(Trigger.Request())
        assert wait(future.done)
        assert future.result().success and future.result().message.startswith(expected)
