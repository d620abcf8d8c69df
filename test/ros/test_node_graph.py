"""The real ``policy_node`` over Fast DDS: started from its console script with a parameter file, as a user does.

One node process (tiny random checkpoint on CPU, released DROID profile) serves every test of this module; an
rclpy node in the test process talks to it. Skipped outside CI when ROS is not installed
(``bash scripts/setup_ros.sh``); under CI=true a missing ROS fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from ros_graph import require_ros, wait_for

require_ros()

from cosmos3_ros_msgs.msg import ActionChunk  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from cosmos3_ros.runtime.parameters import PARAMETER_SPEC  # noqa: E402

pytestmark = pytest.mark.rclpy

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
NS = "/graph"
CAMERA_TOPICS = [f"{NS}/wrist/image_raw", f"{NS}/exterior_1/image_raw", f"{NS}/exterior_2/image_raw"]
JOINT_TOPIC = f"{NS}/joint_states"
GRIPPER_TOPIC = f"{NS}/gripper/joint_states"
NODE = f"{NS}/policy_node"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def node(start_node, tiny_checkpoint):
    """One policy_node for the module: released profile, tiny checkpoint on CPU, in namespace /graph."""
    process = start_node({
        "checkpoint": str(tiny_checkpoint), "device": "cpu", "camera_topics": CAMERA_TOPICS,
        "joint_state_topic": JOINT_TOPIC, "gripper_joint_state_topic": GRIPPER_TOPIC, "inference_rate": 4.0,
        "max_observation_age": 2.0,
    }, name="graph", ros_args=("-r", "__ns:=" + NS))
    process.wait_for_log(r"policy with profile released_droid_policy", timeout=180)
    yield process
    code, _ = process.stop()
    assert code == 0, process.log()


def test_topics_types_and_qos(node, ros_peer):
    peer = ros_peer.node
    assert wait_for(lambda: peer.get_subscriptions_info_by_topic(f"{NS}/task"), timeout=15)
    camera = peer.get_subscriptions_info_by_topic(CAMERA_TOPICS[0])
    assert camera and camera[0].topic_type == "sensor_msgs/msg/Image"
    assert camera[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    task = peer.get_subscriptions_info_by_topic(f"{NS}/task")
    assert task[0].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert task[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert wait_for(lambda: f"{NODE}/action_chunk" in dict(peer.get_topic_names_and_types()), timeout=15)
    names = dict(peer.get_topic_names_and_types())
    assert names[f"{NODE}/action_chunk"] == ["cosmos3_ros_msgs/msg/ActionChunk"]
    assert names[f"{NODE}/joint_trajectory"] == ["trajectory_msgs/msg/JointTrajectory"]
    assert names["/diagnostics"] == ["diagnostic_msgs/msg/DiagnosticArray"]


def test_cameras_joints_gripper_and_task_in_action_chunk_out(node, ros_peer, droid_cameras):
    peer = ros_peer.node
    received: list[ActionChunk] = []
    sub = peer.create_subscription(ActionChunk, f"{NODE}/action_chunk", received.append, 10)
    task = peer.create_publisher(String, f"{NS}/task", LATCHED)
    cameras = [peer.create_publisher(Image, topic, 1) for topic in CAMERA_TOPICS]
    joints = peer.create_publisher(JointState, JOINT_TOPIC, 10)
    gripper = peer.create_publisher(JointState, GRIPPER_TOPIC, 10)
    try:
        task.publish(String(data="put the marker in the cup"))
        assert wait_for(lambda: all(p.get_subscription_count() for p in cameras), timeout=15)
        q = [0.0, -0.6, 0.0, -2.2, 0.0, 1.6, 0.8]
        for _ in range(100):
            stamp = peer.get_clock().now().to_msg()
            for pub, name in zip(cameras, ("wrist", "exterior_1", "exterior_2"), strict=True):
                frame = droid_cameras[name]
                image = Image(height=frame.shape[0], width=frame.shape[1], encoding="rgb8", step=frame.shape[1] * 3)
                image.header.stamp = stamp
                image.data = frame.tobytes()
                pub.publish(image)
            for pub, names, positions in ((joints, ARM, q), (gripper, ["fr3_finger_joint1"], [0.04])):
                state = JointState(name=names, position=positions)
                state.header.stamp = stamp
                pub.publish(state)
            if wait_for(lambda: received, timeout=0.2):
                break
        assert wait_for(lambda: received, timeout=30), node.log()
    finally:
        for entity in (sub,):
            peer.destroy_subscription(entity)
        for pub in (task, *cameras, joints, gripper):
            peer.destroy_publisher(pub)
    chunk = received[0]
    assert (chunk.chunk_length, chunk.action_dim) == (32, 8)
    assert chunk.mode == "policy" and chunk.profile == "released_droid_policy"
    data = np.asarray(chunk.data, np.float32).reshape(32, 8)
    assert np.isfinite(data).all()
    assert chunk.header.stamp.sec > 0 and chunk.sequence_number >= 1


def test_every_parameter_is_listed_and_described(node, ros_peer):
    from rcl_interfaces.srv import DescribeParameters, ListParameters

    listed = ros_peer.call(ListParameters, f"{NODE}/list_parameters", ListParameters.Request())
    names = set(listed.result.names)
    assert {spec.name for spec in PARAMETER_SPEC} <= names
    request = DescribeParameters.Request(names=[spec.name for spec in PARAMETER_SPEC])
    described = ros_peer.call(DescribeParameters, f"{NODE}/describe_parameters", request)
    for spec, descriptor in zip(PARAMETER_SPEC, described.descriptors, strict=True):
        assert descriptor.name == spec.name
        assert descriptor.read_only == spec.read_only, spec.name
        assert descriptor.description == spec.description


def test_pause_resume_and_clear_services(node, ros_peer):
    for name, expected in (("pause", "paused"), ("resume", "resumed"), ("clear_buffers", "cleared")):
        response = ros_peer.call(Trigger, f"{NODE}/{name}", Trigger.Request())
        assert response.success and response.message.startswith(expected), response.message
