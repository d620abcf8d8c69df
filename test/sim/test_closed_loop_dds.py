"""The closed loop over Fast DDS: policy node (scripted policy) + simulated FR3 (its own process) + an operator,
real rclpy, against the issue's goals.

One short run covers: first trajectory point in the future (no stale points), hand-over continuity, limits
(nothing commanded beyond the FR3's position, velocity and acceleration limits),
gripper hysteresis (a noisy gripper column toggles only with the cycle), the latched e-stop (hold within the
bound, no command until ~/release, commands again after it) and the dead-man (hold after the timeout).
Skipped outside CI when ROS is not installed (``bash scripts/setup_ros.sh``); under CI=true it fails instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros"))
from ros_graph import require_ros, ros_session

require_ros()

from cosmos3_ros.sim.loop import LoopConfig  # noqa: E402
from cosmos3_ros.tools.sim_loop import run_dds_loop  # noqa: E402

pytestmark = pytest.mark.rclpy

@pytest.fixture(scope="module")
def loop():
    config = LoopConfig(handover="prefix+blend", duration_s=7.0, model_latency_s=0.3, disagreement=0.05, seed=0,
                        heartbeat_timeout_s=0.5)
    limits = {"min_lead_time": 0.15}  # a loaded machine can take tens of ms from publication to the controller
    with ros_session():
        metrics, record = run_dds_loop(config, stage=lambda _: None, parameters=limits)
    print({k: v for k, v in metrics.items() if k != "config"})
    return metrics, record


def test_trajectories_start_in_the_future_and_the_arm_is_never_starved(loop):
    metrics, _ = loop
    assert metrics["chunks_executed"] >= 5, metrics
    # the goals, over DDS with the arm as its own process (they failed on this 2-core machine while
    # rclpy's MultiThreadedExecutor busy-spun a core in the policy process: cosmos3_ros.ros.spinning)
    assert metrics["stale_points_commanded"] == 0
    assert metrics["starved_s"] == 0
    # observation stamp -> first executed point: the model latency plus the capture age and the lead
    assert 300 <= metrics["latency_ms_p50"] <= 1000


def test_hand_over_is_continuous(loop):
    metrics, _ = loop
    # goal: the largest hand-over jump at most 20 % of the chunk-to-chunk disagreement (0.05 rad)
    assert metrics["handover_jump_rad_max"] <= 0.2 * 0.05, metrics["handover_jump_rad_max"]


def test_nothing_beyond_the_fr3_limits_is_commanded(loop):
    metrics, record = loop
    # 1 ms controller cycles beyond position / velocity / acceleration: goal 0
    assert metrics["limit_violations"] == 0, metrics["limit_violations"]
    from cosmos3_ros.execution.limits import FR3_POSITION_MAX, FR3_POSITION_MIN

    commanded = np.asarray(record.commanded)
    assert np.all(commanded <= np.asarray(FR3_POSITION_MAX) + 1e-6)
    assert np.all(commanded >= np.asarray(FR3_POSITION_MIN) - 1e-6)


def test_gripper_toggles_with_the_cycle_not_with_the_noise(loop):
    metrics, _ = loop
    # about one closing and one opening per 6 s cycle; the column's noise around the thresholds adds none
    assert 1 <= metrics["gripper_toggles"] <= 4, metrics["gripper_toggles"]


def test_estop_latches_until_release_and_the_deadman_holds(loop):
    metrics, _ = loop
    # goal: e-stop -> hold at the arm within 50 ms
    assert metrics["estop_hold_ms"] <= 50, metrics["estop_hold_ms"]
    assert metrics["estop_hold_points"] == 1
    assert metrics["commands_after_estop"] == 0
    assert metrics["chunks_after_release"] >= 1
    # the dead-man is checked on the 50 Hz execution timer: one period late at most, plus delivery
    assert metrics["deadman_hold_ms"] <= 100, metrics["deadman_hold_ms"]
    assert metrics["deadman_hold_points"] == 1


def test_the_checkpoint_policy_drives_the_arm_through_the_same_loop(tiny_checkpoint):
    """``sim-loop --policy checkpoint``: the real model (tiny random checkpoint, CPU) in the node, as on a robot."""
    from cosmos3_ros.execution.limits import FR3_POSITION_MAX, FR3_POSITION_MIN

    config = LoopConfig(handover="prefix+blend", duration_s=6.0, model_latency_s=1.0, seed=0, scenarios=False)
    with ros_session():
        metrics, record = run_dds_loop(config, policy="checkpoint", checkpoint=str(tiny_checkpoint),
                                       stage=lambda _: None, parameters={"steps": 1, "min_lead_time": 0.15})
    print({k: v for k, v in metrics.items() if k != "config"})
    counters = metrics["counters"]
    # the random weights' chunks are far from the pose and jump between chunks: the limits clamp them or refuse
    # them (counted; the running trajectory goes on)
    assert metrics["chunks_executed"] >= 2, metrics
    assert counters["chunks_executed"] + counters["chunks_rejected"] <= counters["chunks_received"]
    # Nothing beyond the FR3's position, velocity and acceleration limits in any 1 ms controller cycle. Before
    # trajectories started with their anchor point, the controller's first segment (from its state at receipt)
    # was not the one checked, and these random chunks drove it past the limits for up to 87 cycles in 6 s.
    # (the anchor lies min_lead_time / 2 = 75 ms ahead here; trajectories reached the arm 31 - 57 ms before it in
    # the runs of session 5: receipt_lead_ms_min, printed above)
    assert metrics["limit_violations"] == 0, metrics["limit_violation_times_s"]
    commanded = np.asarray(record.commanded)
    assert np.all(commanded <= np.asarray(FR3_POSITION_MAX) + 1e-3), (commanded.max(0), FR3_POSITION_MAX)
    assert np.all(commanded >= np.asarray(FR3_POSITION_MIN) - 1e-3), (commanded.min(0), FR3_POSITION_MIN)
    assert np.ptp(np.asarray(record.executed), axis=0).max() > 1e-3  # the arm moved
