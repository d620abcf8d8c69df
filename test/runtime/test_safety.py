"""Safety filter for JointTrajectory outputs."""

import numpy as np
import pytest

from cosmos3_ros.errors import InputError
from cosmos3_ros.runtime.safety import JointSafetyLimits, make_safe_joint_targets, trajectory_allowed

NAMES = ("j1", "j2")


def test_targets_are_clamped_into_joint_limits():
    limits = JointSafetyLimits.from_parameters(NAMES, [-1.0, 0.0], [1.0, 2.0], 0.0)
    safe = make_safe_joint_targets(np.array([[2.0, -1.0], [0.5, 1.0]]), None, limits)
    np.testing.assert_allclose(safe.positions, [[1.0, 0.0], [0.5, 1.0]])
    assert safe.clamped_to_limits == 2 and safe.rate_limited == 0


def test_a_far_first_target_becomes_a_ramp_from_the_current_joints():
    limits = JointSafetyLimits.from_parameters(NAMES, [], [], 0.1)
    safe = make_safe_joint_targets(np.array([[0.5, 0.0], [0.5, 0.05], [0.5, 0.05]]), np.array([0.0, 0.0]), limits)
    np.testing.assert_allclose(safe.positions, [[0.1, 0.0], [0.2, 0.05], [0.3, 0.05]])
    assert safe.rate_limited == 3


def test_without_current_joints_no_rate_limit_is_applied():
    limits = JointSafetyLimits.from_parameters(NAMES, [], [], 0.1)
    targets = np.array([[5.0, 5.0]])
    np.testing.assert_allclose(make_safe_joint_targets(targets, None, limits).positions, targets)


def test_current_joints_outside_the_limits_refuse_the_trajectory():
    limits = JointSafetyLimits.from_parameters(NAMES, [-1.0, -1.0], [1.0, 1.0], 0.1)
    with pytest.raises(InputError, match=r"current joints \[1\] are outside joint_position_min/max \(\[1.5\]\)"):
        make_safe_joint_targets(np.zeros((2, 2)), np.array([0.0, 1.5]), limits)
    make_safe_joint_targets(np.zeros((2, 2)), np.array([0.0, 1.0005]), limits)  # within slack


def test_non_finite_targets_are_rejected():
    limits = JointSafetyLimits.from_parameters(NAMES, [], [], 0.0)
    with pytest.raises(InputError, match=r"joint targets: 1 non-finite values \(first at row 1, column 0\)"):
        make_safe_joint_targets(np.array([[0.0, 0.0], [np.nan, 0.0]]), None, limits)


def test_limit_parameters_are_validated():
    with pytest.raises(InputError, match=r"'joint_position_min': 1 values; expected 2"):
        JointSafetyLimits.from_parameters(NAMES, [0.0], [], 0.0)
    with pytest.raises(InputError, match=r"joint_position_min >= joint_position_max for joints \['j2'\]"):
        JointSafetyLimits.from_parameters(NAMES, [0.0, 1.0], [1.0, 1.0], 0.0)


def test_trajectories_only_in_policy_mode_with_joint_actions_and_dry_run_off():
    assert trajectory_allowed(dry_run=False, mode="policy", joint_space=True) == (True, "")
    assert trajectory_allowed(dry_run=True, mode="policy", joint_space=True)[0] is False
    assert trajectory_allowed(dry_run=False, mode="inverse_dynamics", joint_space=True)[0] is False
    assert trajectory_allowed(dry_run=False, mode="policy", joint_space=False)[0] is False
