"""Simulated FR3: joint_trajectory_controller semantics, limits, gripper, cameras; scripted policy; closed loop."""

from __future__ import annotations

import numpy as np
import pytest

from cosmos3_ros.execution.limits import JointLimits
from cosmos3_ros.execution.trajectory import TimedTrajectory
from cosmos3_ros.sim.controller import TrajectoryFollower
from cosmos3_ros.sim.fr3 import FR3_HOME, SimulatedFR3
from cosmos3_ros.sim.loop import LOOP_METRICS, LoopConfig, run_loop
from cosmos3_ros.sim.scripted_policy import ScriptedPolicy

T0 = 100.0


def line(stamp, times, start, end, velocities=True):
    positions = np.linspace(start, end, len(times))[:, None].repeat(2, axis=1)
    v = np.zeros_like(positions) if velocities else None
    return TimedTrajectory(stamp, np.asarray(times, dtype=float), positions, v)


def test_follower_interpolates_from_the_state_at_receipt_to_the_first_point():
    f = TrajectoryFollower(np.zeros(2))
    f.receive(line(T0, [0.2, 0.4], 1.0, 2.0, velocities=False), T0, np.zeros(2), np.zeros(2))
    assert f.sample(T0 + 0.1)[0][0] == pytest.approx(0.5)  # linear: half way to the first point
    assert f.sample(T0 + 0.3)[0][0] == pytest.approx(1.5)
    assert f.sample(T0 + 9.0)[0][0] == pytest.approx(2.0)  # holds the last point


def test_follower_skips_past_points_and_rejects_a_trajectory_entirely_in_the_past():
    f = TrajectoryFollower(np.zeros(2))
    accepted = f.receive(line(T0, [0.1, 0.2, 0.3, 0.4], 0.0, 3.0, velocities=False), T0 + 0.25, np.zeros(2),
                         np.zeros(2))
    assert accepted.stale_points == 2
    # samples straight into the middle: no blend from the state at receipt
    assert f.sample(T0 + 0.25)[0][0] == pytest.approx(1.5)
    assert f.receive(line(T0, [0.1, 0.2], 0.0, 1.0), T0 + 1.0, np.zeros(2), np.zeros(2)) is None
    assert f.rejected_past == 1
    assert f.sample(T0 + 0.25)[0][0] == pytest.approx(1.5)  # the running one stays


def test_follower_stamp_zero_means_now_and_a_new_trajectory_replaces_the_old():
    f = TrajectoryFollower(np.zeros(2))
    f.receive(line(0.0, [1.0], 5.0, 5.0), T0, np.zeros(2), np.zeros(2))
    assert f.end_time() == pytest.approx(T0 + 1.0)
    f.receive(line(T0 + 0.5, [0.5], -1.0, -1.0), T0 + 0.5, np.ones(2), np.zeros(2))
    assert f.sample(T0 + 2.0)[0][0] == pytest.approx(-1.0)
    f.receive(None, T0 + 3.0, np.full(2, 0.3), np.zeros(2))  # empty: stop and hold where it is
    assert f.sample(T0 + 4.0)[0][0] == pytest.approx(0.3)


def test_cubic_with_velocities_is_smooth_at_the_first_point():
    f = TrajectoryFollower(np.zeros(1))
    traj = TimedTrajectory(T0, np.array([0.5, 1.0]), np.array([[1.0], [2.0]]), np.array([[2.0], [0.0]]))
    f.receive(traj, T0, np.zeros(1), np.array([2.0]))
    before = f.sample(T0 + 0.5 - 1e-6)[1][0]
    after = f.sample(T0 + 0.5 + 1e-6)[1][0]
    assert before == pytest.approx(2.0, abs=1e-3) and after == pytest.approx(2.0, abs=1e-3)


def test_arm_obeys_velocity_and_position_limits_and_counts_commands_beyond_them():
    sim = SimulatedFR3()
    sim.time_s = T0
    far = np.array(FR3_HOME) + np.array([5.0, 0, 0, 0, 0, 0, 0])  # beyond joint 1's limit, 5 rad in 0.1 s
    traj = TimedTrajectory(T0, np.array([0.1]), far[None, :], None)
    sim.receive_trajectory(traj, T0)
    peak = 0.0
    for k in range(1, 3000):
        sim.step(T0 + k * 0.001)
        peak = max(peak, abs(sim.qd[0]))
    limits = JointLimits.fr3()
    assert peak <= limits.velocity_max[0] + 1e-9
    assert sim.q[0] <= limits.position_max[0] + 1e-12
    assert sim.metrics.limit_violations > 0


def test_gripper_moves_at_its_speed_and_cameras_change_with_the_joints():
    sim = SimulatedFR3(gripper_speed=0.05)
    sim.time_s = T0
    sim.command_gripper(True, T0)
    sim.step(T0 + 0.4)
    assert sim.gripper_closure() == pytest.approx(0.5, abs=0.01)  # 0.02 m of 0.04 m in 0.4 s
    sim.step(T0 + 1.0)
    assert sim.gripper_closure() == pytest.approx(1.0)
    names, positions, _ = sim.joint_state()
    assert names[-2:] == ["fr3_finger_joint1", "fr3_finger_joint2"] and positions[-1] == pytest.approx(0.0)
    images = {c: sim.render(c) for c in ("wrist", "exterior_1", "exterior_2")}
    assert all(img.shape == (96, 128, 3) and img.dtype == np.uint8 for img in images.values())
    sim.q = sim.q + 0.3
    for camera, before in images.items():
        assert np.abs(sim.render(camera).astype(int) - before).sum() > 0, camera


def test_scripted_policy_honours_a_prefix_and_is_seeded():
    state = np.array([*FR3_HOME, 0.0])
    a = ScriptedPolicy(disagreement=0.05, seed=4).predict(state)
    b = ScriptedPolicy(disagreement=0.05, seed=4).predict(state)
    np.testing.assert_array_equal(a, b)
    prefix = a[:6].copy()
    c = ScriptedPolicy(disagreement=0.05, seed=9).predict(state, prefix)
    np.testing.assert_array_equal(c[:6], prefix)
    # the row after the prefix continues from it (one control step of motion), not from the state
    assert np.abs(c[6, :7] - prefix[5, :7]).max() < 0.02
    chunks = [ScriptedPolicy(disagreement=0.05, seed=s).predict(state) for s in range(6)]
    spread = np.ptp(np.stack([ch[10, :7] for ch in chunks]), axis=0)
    assert np.all(spread <= 0.1 + 1e-6) and spread.max() > 0.02  # offsets within [-d, d]


@pytest.mark.parametrize("handover", ["none", "prefix"])
def test_closed_loop_meets_the_goals(handover):
    metrics, record = run_loop(LoopConfig(handover=handover, duration_s=6.0, model_latency_s=0.66, seed=1))
    assert set(LOOP_METRICS) <= set(metrics)
    assert metrics["starved_s"] == 0.0
    assert metrics["stale_points_commanded"] == 0
    assert metrics["limit_violations"] == 0
    assert metrics["commands_after_estop"] == 0
    assert metrics["chunks_executed"] >= 6
    assert 0 <= metrics["estop_hold_ms"] <= 50 and 0 <= metrics["deadman_hold_ms"] <= 50
    assert len(record.t) == len(record.commanded) and record.handovers


def test_prefix_blend_hand_over_is_continuous_where_none_jumps():
    none, _ = run_loop(LoopConfig(handover="none", duration_s=8.0, seed=2, scenarios=False))
    smooth, _ = run_loop(LoopConfig(handover="prefix+blend", duration_s=8.0, seed=2, scenarios=False))
    assert smooth["handover_jump_rad_max"] <= 0.2 * 0.05  # the goal: 20 % of the disagreement
    assert none["handover_jump_rad_max"] > 2 * smooth["handover_jump_rad_max"]


@pytest.mark.parametrize("disagreement", [0.5, 2.0])
def test_wild_chunks_never_command_beyond_the_limits(disagreement):
    # chunk-to-chunk offsets of 0.5-2 rad (random weights, a broken policy): clamped, slowed or refused, but
    # nothing the simulated controller interpolates leaves the FR3's position / velocity / acceleration limits
    metrics, _ = run_loop(LoopConfig(disagreement=disagreement, model_latency_s=1.0, duration_s=10.0, seed=0,
                                     scenarios=False))
    assert metrics["limit_violations"] == 0
    assert metrics["chunks_executed"] >= 5
