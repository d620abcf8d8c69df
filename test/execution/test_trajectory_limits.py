"""Trajectory building (cubic velocities) and joint limits."""

from __future__ import annotations

import numpy as np
import pytest

from cosmos3_ros.errors import InputError
from cosmos3_ros.execution.limits import FR3_POSITION_MIN, JointLimits, apply_limits
from cosmos3_ros.execution.trajectory import (
    TimedTrajectory,
    hermite,
    max_abs_acceleration,
    spline_velocities,
)

DT = 1.0 / 15.0


def hermite_acceleration(t0, p0, v0, t1, p1, v1, t):
    """Reference: second derivative (rad/s²) of the cubic Hermite segment at ``t``, from its basis functions."""
    span = t1 - t0
    s = (t - t0) / span
    return ((12 * s - 6) * (p0 - p1) / span + (6 * s - 4) * v0 + (6 * s - 2) * v1) / span


def test_spline_velocities_match_a_smooth_motion_and_end_at_zero():
    times = np.arange(0, 33) * DT
    positions = np.sin(times)[:, None] * np.array([[1.0, 0.5]])
    v = spline_velocities(times, positions, start_velocity=np.array([1.0, 0.5]))
    assert v.shape == (33, 2)
    assert np.all(v[-1] == 0)
    # interior velocities track the derivative (cos) away from the clamped end; tolerance: spline error ~ dt^3
    np.testing.assert_allclose(v[1:20, 0], np.cos(times[1:20]), atol=2e-3)


def test_spline_is_c2_at_interior_knots():
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.05, 0.1, size=8))
    positions = rng.normal(size=(8, 3))
    v = spline_velocities(times, positions, np.zeros(3))
    for k in range(1, 7):
        left = hermite_acceleration(times[k - 1], positions[k - 1], v[k - 1], times[k], positions[k], v[k], times[k])
        right = hermite_acceleration(times[k], positions[k], v[k], times[k + 1], positions[k + 1], v[k + 1], times[k])
        np.testing.assert_allclose(left, right, atol=1e-8)  # linear solve: equal up to rounding


def test_hermite_hits_its_end_points():
    p, v = hermite(0.0, np.array([0.0]), np.array([1.0]), 0.5, np.array([2.0]), np.array([-1.0]), 0.5)
    np.testing.assert_allclose(p, [2.0], atol=1e-12)
    np.testing.assert_allclose(v, [-1.0], atol=1e-12)


def test_timed_trajectory_sampling_holds_outside_and_interpolates_inside():
    traj = TimedTrajectory(10.0, np.array([0.1, 0.2]), np.array([[0.0], [1.0]]), None)
    assert traj.sample(9.0)[0][0] == 0.0
    assert traj.sample(11.0)[0][0] == 1.0
    assert traj.sample(10.15)[0][0] == pytest.approx(0.5)
    assert traj.end_s == pytest.approx(10.2)


def test_spline_rejects_non_increasing_times():
    with pytest.raises(InputError, match="increase strictly"):
        spline_velocities(np.array([0.0, 0.0, 0.1]), np.zeros((3, 1)))


def test_fr3_limits_are_the_published_ones():
    limits = JointLimits.fr3()
    assert limits.position_min.tolist() == list(FR3_POSITION_MIN)
    assert limits.position_max[3] == pytest.approx(-0.1518)
    assert limits.velocity_max.tolist() == [2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26]
    assert limits.acceleration_max.tolist() == [10.0] * 7


def _walk(targets, limits, start=None):
    times = 100.0 + (np.arange(len(targets)) + 1) * DT
    start = np.zeros(targets.shape[1]) if start is None else start
    return apply_limits(targets, times, start, np.zeros_like(start), 100.0, start, limits)


def test_position_limits_clamp_and_count():
    limits = JointLimits.from_parameters(["a"], position_min=[-1.0], position_max=[1.0])
    out, report = _walk(np.array([[0.5], [1.5], [-2.0]]), limits)
    assert out[:, 0].tolist() == [0.5, 1.0, -1.0]
    assert report.position == 2 and not report.rejected


def test_velocity_limit_turns_a_jump_into_a_ramp():
    limits = JointLimits.from_parameters(["a"], velocity_max=[1.5])
    out, report = _walk(np.full((5, 1), 1.0), limits)
    steps = np.diff(np.concatenate([[0.0], out[:, 0]]))
    assert np.all(steps <= 1.5 * DT + 1e-12)
    assert report.velocity > 0


def test_acceleration_limit_bounds_the_change_of_velocity():
    limits = JointLimits.from_parameters(["a"], acceleration_max=[10.0])
    out, report = _walk(np.full((8, 1), 0.3), limits)
    v = np.diff(np.concatenate([[0.0], out[:, 0]])) / DT
    assert np.all(np.abs(np.diff(np.concatenate([[0.0], v]))) <= 10.0 * 0.5 * DT + 1e-9)
    assert report.acceleration > 0


def test_max_step_is_measured_from_the_measured_joints():
    limits = JointLimits.from_parameters(["a"], max_step=0.05)
    out, report = _walk(np.array([[0.2], [0.2]]), limits)
    assert out[0, 0] == pytest.approx(0.05) and out[1, 0] == pytest.approx(0.1)
    assert report.step == 2


def test_reject_mode_refuses_instead_of_clamping():
    limits = JointLimits.from_parameters(["a"], position_min=[-1.0], position_max=[1.0], on_violation="reject")
    out, report = _walk(np.array([[0.5], [1.5]]), limits)
    assert "outside" in report.rejected
    np.testing.assert_array_equal(out, [[0.5], [1.5]])


def test_bad_parameters_name_the_parameter():
    with pytest.raises(InputError, match="joint_velocity_max"):
        JointLimits.from_parameters(["a", "b"], velocity_max=[1.0])
    with pytest.raises(InputError, match="expected values > 0"):
        JointLimits.from_parameters(["a"], acceleration_max=[0.0])
    with pytest.raises(InputError, match="limit_violation"):
        JointLimits.from_parameters(["a"], on_violation="ignore")
    with pytest.raises(InputError, match="outside joint_position_min/max"):
        apply_limits(np.zeros((1, 1)), np.array([1.0]), np.zeros(1), np.zeros(1), 0.0, np.array([5.0]),
                     JointLimits.from_parameters(["a"], position_min=[-1.0], position_max=[1.0]))
    with pytest.raises(InputError, match="non-finite"):
        _walk(np.array([[np.nan]]), JointLimits())


def test_max_abs_acceleration_of_a_constant_velocity_line_is_zero():
    times = np.array([0.0, 1.0, 2.0])
    positions = np.array([[0.0], [1.0], [2.0]])
    velocities = np.ones((3, 1))
    assert max_abs_acceleration(times, positions, velocities)[0] == pytest.approx(0.0, abs=1e-12)


def test_approach_to_a_position_limit_brakes_within_the_acceleration_limit():
    limits = JointLimits.from_parameters(["a"], position_min=[-1.0], position_max=[0.1], acceleration_max=[10.0])
    ramp = (np.arange(1, 21) * 0.02)[:, None]  # 0.3 rad/s towards a limit at 0.1 rad
    times = 100.0 + np.arange(1, 21) * DT
    out, report = apply_limits(ramp, times, np.zeros(1), np.full(1, 0.3), 100.0, np.zeros(1), limits)
    v = np.diff(np.concatenate([[0.0], out[:, 0]])) / DT
    a = np.diff(np.concatenate([[0.3], v])) / DT
    assert out[:, 0].max() <= 0.1 + 1e-12 and report.position > 0
    assert np.abs(a).max() <= 10.0 * 0.5 + 1e-6  # the walk's margin of the limit


def test_extremes_between_the_points_match_a_dense_sampling():
    from cosmos3_ros.execution.trajectory import position_and_velocity_extremes

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 8))
        times = np.cumsum(rng.uniform(0.02, 0.2, n))
        positions, velocities = rng.normal(size=(n, 3)), 5 * rng.normal(size=(n, 3))
        lowest, highest, fastest = position_and_velocity_extremes(times, positions, velocities)
        trajectory = TimedTrajectory(0.0, times, positions, velocities)
        samples = [trajectory.sample(t) for t in np.linspace(times[0], times[-1], 5001)]
        sampled_p = np.array([p for p, _ in samples])
        sampled_v = np.abs(np.array([v for _, v in samples]))
        np.testing.assert_allclose(sampled_p.min(0), lowest, atol=1e-3)
        np.testing.assert_allclose(sampled_p.max(0), highest, atol=1e-3)
        np.testing.assert_allclose(sampled_v.max(0), fastest, rtol=1e-2)


def test_monotone_velocities_keep_each_segment_between_its_end_points_near_a_limit():
    from cosmos3_ros.execution.trajectory import monotone_near_limits, position_and_velocity_extremes

    times = np.array([0.0, 0.1, 0.2, 0.3])
    upper = np.array([1.0])
    positions = np.array([[0.90], [0.99], [1.0], [0.97]])  # up to the limit and back
    swinging = spline_velocities(times, positions, np.array([1.5]))
    assert position_and_velocity_extremes(times, positions, swinging)[1][0] > 1.0  # the C2 cubic leaves the limit
    fixed = monotone_near_limits(times, positions, swinging, None, upper)
    assert fixed[0, 0] == swinging[0, 0]  # the running command's velocity is kept
    assert position_and_velocity_extremes(times, positions, fixed)[1][0] <= 1.0 + 1e-12
