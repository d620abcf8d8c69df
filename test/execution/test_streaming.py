"""ChunkExecutor: scheduling, latency compensation, hand-over options, holds, gripper (ROS-free, clock passed in)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosmos3_ros.errors import InputError
from cosmos3_ros.execution.gripper import GripperCommander
from cosmos3_ros.execution.handover import parse_handover
from cosmos3_ros.execution.limits import JointLimits
from cosmos3_ros.execution.safety import SafetySupervisor
from cosmos3_ros.execution.streaming import ChunkExecutor, ExecutionSettings
from cosmos3_ros.execution.trajectory import max_abs_acceleration

DT = 1.0 / 15.0
T0 = 500.0
HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


def make(handover="none", horizon=8, latency=0.66, safety=None, **kw):
    settings = ExecutionSettings(dt_s=DT, arm_columns=tuple(range(7)), gripper_column=7, execution_horizon=horizon,
                                 handover=handover, expected_latency_s=latency, **kw)
    return ChunkExecutor(settings, JointLimits.fr3(), safety or SafetySupervisor(), GripperCommander())


def chunk(start=HOME, slope=0.01, rows=32, gripper=0.0):
    k = np.arange(1, rows + 1)[:, None]
    arm = start[None, :] + slope * k
    return np.concatenate([arm, np.full((rows, 1), gripper)], axis=1)


def state(q=HOME, g=0.0):
    return np.concatenate([q, [g]])


def test_first_chunk_drops_past_rows_and_starts_in_the_future():
    ex = make()
    plan = ex.plan_request(T0, T0 - 0.02, state())
    now = T0 + 0.66
    result = ex.on_chunk(now, plan, chunk(), HOME)
    traj = result.trajectory
    assert traj is not None and traj.stamp_s == pytest.approx(T0 - 0.02)  # header stamp = observation stamp
    # the anchor: half the lead ahead, the state the arm is commanded to then (here at rest at the measured joints)
    assert traj.absolute_times[0] == pytest.approx(now + 0.5 * ex.settings.min_lead_s)
    np.testing.assert_allclose(traj.positions[0], HOME)
    np.testing.assert_allclose(traj.velocities[0], 0.0)
    assert traj.absolute_times[1] >= now + ex.settings.min_lead_s
    kept = len(traj.times_s) - 2  # the anchor, the kept rows and a stopping point after the last one
    assert result.dropped_rows == 32 - kept
    # rows kept at their own times: row k at obs + (k + 1) dt
    first_row = 32 - kept
    assert traj.times_s[1] == pytest.approx((first_row + 1) * DT)
    assert traj.times_s[-1] > traj.times_s[-2] >= 32 * DT - 1e-9
    np.testing.assert_allclose(traj.velocities[-1], 0.0)
    # the stopping point continues the motion (half the last rows' velocity times the stopping time)
    assert np.all(traj.positions[-1] >= traj.positions[-2] - 1e-12)
    assert ex.counters["rows_dropped_past"] == result.dropped_rows


def test_velocities_are_consistent_with_dt():
    ex = make()
    plan = ex.plan_request(T0, T0, state())
    traj = ex.on_chunk(T0 + 0.3, plan, chunk(slope=0.01), HOME).trajectory
    # a constant-slope chunk: interior velocity = slope / dt (the spline's error decays away from both ends)
    mid = len(traj.times_s) // 2
    np.testing.assert_allclose(traj.velocities[mid], 0.01 / DT, rtol=0.02)


def test_next_request_is_scheduled_from_the_measured_latency():
    ex = make(horizon=10, latency=0.3)
    assert ex.should_request(T0)  # nothing running: request now
    plan = ex.plan_request(T0, T0 - 0.01, state())
    assert not ex.should_request(T0 + 5)  # one in flight
    now = T0 + 0.8  # measured latency 0.81 s, larger than expected
    ex.on_chunk(now, plan, chunk(), HOME)
    expected = now + 10 * DT - (0.81 + ex.settings.latency_margin_s)
    assert ex.next_request_time() == pytest.approx(expected)
    assert not ex.should_request(expected - 0.01)
    assert ex.should_request(expected + 0.001)


def test_a_chunk_entirely_in_the_past_is_discarded_and_counted():
    ex = make()
    plan = ex.plan_request(T0, T0, state())
    result = ex.on_chunk(T0 + 3.0, plan, chunk(), HOME)
    assert result.trajectory is None and "in the past" in result.reason
    assert ex.counters["chunks_discarded"] == 1


def test_prefix_plan_hands_the_running_rows_to_the_model():
    ex = make("prefix", latency=0.3)
    plan = ex.plan_request(T0, T0, state())
    ex.on_chunk(T0 + 0.3, plan, chunk(), HOME)
    obs = T0 + 0.5
    second = ex.plan_request(T0 + 0.52, obs, state())
    # every row up to the first one that will be kept: latency estimate + margin + the lead
    count = math.ceil((0.3 + ex.settings.latency_margin_s + ex.settings.min_lead_s) / DT)
    assert second.prefix.shape == (count, 8)
    for k in range(count):
        np.testing.assert_allclose(second.prefix[k, :7], ex.active.sample(obs + (k + 1) * DT)[0])
    assert second.base_time_s == obs


def test_rollforward_plan_moves_the_state_and_the_time_base():
    ex = make("rollforward", latency=0.3)
    plan = ex.plan_request(T0, T0, state())
    ex.on_chunk(T0 + 0.3, plan, chunk(), HOME)
    obs = T0 + 0.5
    second = ex.plan_request(T0 + 0.52, obs, state(g=0.5))
    steps = math.ceil((0.3 + ex.settings.latency_margin_s + ex.settings.min_lead_s) / DT)
    assert second.base_time_s == pytest.approx(obs + (steps - 1) * DT)  # row 0 is the first row kept
    np.testing.assert_allclose(second.state[:7], ex.active.sample(second.base_time_s)[0])
    assert second.state[7] == 0.5 and second.prefix is None


def test_blend_cross_fades_from_the_running_chunk():
    ex = make("blend", blend_steps=4)
    plan = ex.plan_request(T0, T0, state())
    ex.on_chunk(T0 + 0.3, plan, chunk(slope=0.0), HOME)
    running = ex.active
    plan2 = ex.plan_request(T0 + 0.5, T0 + 0.5, state())
    offset = chunk(slope=0.0) + 0.05  # a chunk that disagrees by 0.05 rad
    offset[:, 7] = 0.0
    traj = ex.on_chunk(T0 + 0.8, plan2, offset, HOME).trajectory
    # the anchor repeats the running command; first kept row: weight 1/5 on the new chunk, so 0.01 from the
    # running one (limits do not bite here)
    anchor = traj.positions[0] - running.sample(traj.absolute_times[0])[0]
    np.testing.assert_allclose(anchor, 0.0, atol=1e-12)
    first = traj.positions[1] - running.sample(traj.absolute_times[1])[0]
    np.testing.assert_allclose(first, 0.05 / 5, atol=1e-9)
    np.testing.assert_allclose(traj.positions[6], HOME + 0.05, atol=1e-9)


def test_estop_holds_at_the_measured_joints_and_refuses_chunks_until_released():
    safety = SafetySupervisor()
    ex = make(safety=safety)
    plan = ex.plan_request(T0, T0, state())
    ex.on_chunk(T0 + 0.3, plan, chunk(), HOME)
    in_flight = ex.plan_request(T0 + 0.5, T0 + 0.5, state())
    safety.engage()
    measured = HOME + 0.003
    hold = ex.hold(T0 + 0.6, measured, "estop")
    assert hold.trajectory.positions.shape == (1, 7)
    np.testing.assert_allclose(hold.trajectory.positions[0], measured)
    np.testing.assert_allclose(hold.trajectory.velocities, 0.0)
    assert hold.trajectory.stamp_s == T0 + 0.6
    assert ex.on_chunk(T0 + 0.9, in_flight, chunk(), HOME).trajectory is None  # planned before the hold
    assert not ex.should_request(T0 + 1.0)
    late = ex.plan_request(T0 + 1.0, T0 + 1.0, state())
    assert "estop" in ex.on_chunk(T0 + 1.2, late, chunk(), HOME).reason
    safety.release()
    assert ex.should_request(T0 + 1.3)
    assert ex.counters["holds_estop"] == 1


def test_hold_from_motion_respects_the_acceleration_limit():
    ex = make()
    plan = ex.plan_request(T0, T0, state())
    ex.on_chunk(T0 + 0.3, plan, chunk(slope=0.05), HOME)  # ramps up towards 0.75 rad/s
    now = T0 + 1.2
    p0, v0 = ex.active.sample(now)
    assert np.abs(v0).max() > 0.3
    hold = ex.hold(now, p0, "model_error")
    running = ex.active  # the hold as the controller runs it: from the commanded state to the hold point
    acc = max_abs_acceleration(running.times_s, running.positions, running.velocities)
    assert np.all(acc <= 10.0 + 1e-9)
    assert hold.trajectory.times_s[0] > ex.settings.hold_time_s


def test_gripper_commands_follow_the_chunk_column_over_time():
    ex = make()
    plan = ex.plan_request(T0, T0, state())
    rows = chunk()
    rows[:, 7] = np.where(np.arange(32) < 15, 0.1, 0.9)
    ex.on_chunk(T0 + 0.3, plan, rows, HOME)
    first = ex.gripper_command(T0 + 0.4)
    assert first is not None and first.closed is False
    assert ex.gripper_command(T0 + 0.5) is None
    later = ex.gripper_command(T0 + 16 * DT + 0.01)
    assert later is not None and later.closed is True


def test_reject_mode_keeps_the_running_trajectory():
    settings = ExecutionSettings(dt_s=DT, arm_columns=tuple(range(7)), gripper_column=7)
    limits = JointLimits.from_parameters([f"j{i}" for i in range(7)], position_min=[-3.0] * 7, position_max=[0.5] * 7,
                                         on_violation="reject")
    ex = ChunkExecutor(settings, limits)
    plan = ex.plan_request(T0, T0, state(np.zeros(7)))
    result = ex.on_chunk(T0 + 0.3, plan, chunk(start=np.zeros(7), slope=0.1), np.zeros(7))
    assert result.trajectory is None and "rejected" in result.reason
    assert ex.counters["chunks_rejected"] == 1 and ex.active is None


def test_bad_settings_and_inputs_are_clear_errors():
    with pytest.raises(InputError, match="execution_horizon"):
        make(horizon=0)
    with pytest.raises(InputError, match="rollforward and prefix"):
        parse_handover("rollforward+prefix")
    with pytest.raises(InputError, match="expected one of"):
        parse_handover("smooth")
    assert parse_handover("prefix+blend") == {"prefix", "blend"} and parse_handover("none") == frozenset()
    ex = make()
    plan = ex.plan_request(T0, T0, state())
    with pytest.raises(InputError, match="chunk shape"):
        ex.on_chunk(T0 + 0.3, plan, np.zeros((32, 3)), HOME)
    with pytest.raises(InputError, match="hold reason"):
        ex.hold(T0, HOME, "tired")
