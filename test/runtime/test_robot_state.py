"""JointState -> arm joints and gripper closure, on CDR-decoded messages."""

import math

import numpy as np
import pytest
from ros_messages import joint_state_msg

from cosmos3_ros.errors import InputError
from cosmos3_ros.runtime.robot_state import read_gripper, read_joint_positions

ARM = [f"fr3_joint{i}" for i in range(1, 8)]


def test_joints_are_matched_by_name_in_parameter_order():
    names = ["fr3_finger_joint1", *reversed(ARM)]
    positions = [0.04, *[float(7 - i) for i in range(7)]]
    q = read_joint_positions(joint_state_msg(names, positions, 1), ARM)
    np.testing.assert_allclose(q, [1, 2, 3, 4, 5, 6, 7])


def test_nameless_message_must_hold_exactly_the_arm_joints():
    np.testing.assert_allclose(read_joint_positions(joint_state_msg([], [0.1] * 7, 1), ARM), [0.1] * 7)
    with pytest.raises(InputError, match=r"6 positions and no names; expected 7"):
        read_joint_positions(joint_state_msg([], [0.1] * 6, 1), ARM)


def test_missing_joint_is_named():
    with pytest.raises(InputError, match=r"lacks joints \['fr3_joint7'\]"):
        read_joint_positions(joint_state_msg(ARM[:6], [0.0] * 6, 1), ARM)


def test_nan_joint_is_rejected():
    positions = [0.0] * 7
    positions[2] = math.nan
    with pytest.raises(InputError, match=r"non-finite position for joints \['fr3_joint3'\]"):
        read_joint_positions(joint_state_msg(ARM, positions, 1), ARM)


def test_gripper_closure_maps_open_to_zero_and_closed_to_one():
    msg = joint_state_msg(["fr3_finger_joint1"], [0.01], 1)
    assert read_gripper(msg, "fr3_finger_joint1", 0.04, 0.0) == pytest.approx(0.75)
    assert read_gripper(joint_state_msg(["g"], [0.08], 1), "g", 0.04, 0.0) == 0.0
    assert read_gripper(msg, "other", 0.04, 0.0) is None
