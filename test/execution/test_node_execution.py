"""StreamingExecution inside PolicyNodeCore without ROS: rosbags messages through CDR, a scripted model, a clock
the test moves. The same hooks the rclpy node uses.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from ros_messages import FACTORY, FakeClock, image_msg, joint_state_msg, string_msg

from cosmos3_ros.execution.gripper import GripperCommand
from cosmos3_ros.execution.messages import trajectory_from_message
from cosmos3_ros.execution.node_execution import StreamingExecution
from cosmos3_ros.runtime.node_core import PolicyNodeCore
from cosmos3_ros.runtime.parameters import resolve_parameters
from cosmos3_ros.sim.fr3 import FR3_HOME
from cosmos3_ros.sim.loop import LoopConfig
from cosmos3_ros.sim.scripted_policy import ScriptedActionModel, ScriptedPolicy
from cosmos3_ros.tools.sim_loop import policy_parameters

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
T0 = 1_700_000_000.0


class Outputs:
    """publish(key, msg): CDR round trip for messages, gripper commands kept as they are."""

    def __init__(self) -> None:
        self.messages: dict[str, list] = {"joint_trajectory": [], "gripper": []}

    def __call__(self, key, msg):
        if isinstance(msg, GripperCommand):
            self.messages[key].append(msg)
        else:
            self.messages[key].append(FACTORY.deserialize(FACTORY.serialize(msg), msg.__msgtype__))


@pytest.fixture
def node():
    values = resolve_parameters({**policy_parameters(LoopConfig(model_latency_s=0.0)), "heartbeat_topic": "hb",
                                 "camera_topics": ["/w", "/e1", "/e2"]})
    clock, out = FakeClock(), Outputs()
    clock.now = T0
    model = ScriptedActionModel(ScriptedPolicy(latency_s=0.0), sleep=lambda _: None)
    execution = StreamingExecution(values, model.profile, clock=clock, publish=out, factory=FACTORY)
    core = PolicyNodeCore(model, values, clock=clock, publish=lambda k, m: out(k, m) if k == "joint_trajectory"
                          else None, factory=FACTORY, execution=execution)
    execution.measured_state = core.latest_state
    yield core, execution, clock, out
    core.shutdown(10)


def observe(core, clock, q=FR3_HOME):
    stamp = round(clock.now * 1e9) - 10_000_000
    callbacks = {s.topic: s.callback for s in core.subscriptions}
    callbacks["task"](string_msg("circle"))
    frame = np.zeros((24, 32, 3), np.uint8)
    for topic in ("/w", "/e1", "/e2"):
        callbacks[topic](image_msg(frame, stamp))
    callbacks["/joint_states"](joint_state_msg([*ARM, "fr3_finger_joint1"], [*q, 0.04], stamp))


def wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    return predicate()


def test_a_scheduled_snapshot_becomes_a_trajectory_with_velocities_in_the_future(node):
    core, execution, clock, out = node
    execution.on_heartbeat(type("B", (), {"data": True})())
    assert core.streaming and core.timer_period_s == pytest.approx(1 / 50)
    observe(core, clock)
    assert core.on_timer() == "submitted"
    assert wait(lambda: out.messages["joint_trajectory"])
    traj = trajectory_from_message(out.messages["joint_trajectory"][0])
    assert traj.velocities is not None and np.all(traj.velocities[-1] == 0)
    # an anchor point half min_lead_time ahead (the arm at rest: zero velocity), then the chunk from min_lead_time
    assert traj.absolute_times[0] == pytest.approx(clock.now + 0.05) and np.all(traj.velocities[0] == 0)
    assert traj.absolute_times[1] >= clock.now + 0.1 - 1e-6
    assert core.on_timer() == "not_scheduled"  # the next capture waits for the execution horizon


def test_estop_holds_at_once_and_refuses_until_release(node):
    core, execution, clock, out = node
    execution.on_heartbeat(type("B", (), {"data": True})())
    observe(core, clock)
    core.on_timer()
    assert wait(lambda: out.messages["joint_trajectory"])
    ok, message = execution.engage_estop("test")
    assert ok and "release" in message
    hold = trajectory_from_message(out.messages["joint_trajectory"][-1])
    assert len(hold.times_s) == 1 and np.allclose(hold.positions[0], FR3_HOME) and np.all(hold.velocities == 0)
    clock.now += 5.0
    execution.on_heartbeat(type("B", (), {"data": True})())
    observe(core, clock)
    assert core.on_timer() == "not_scheduled"
    count = len(out.messages["joint_trajectory"])
    execution.release_estop()
    assert core.on_timer() == "submitted"
    assert wait(lambda: len(out.messages["joint_trajectory"]) > count)
    report = core.diagnostics_message()
    values = {v.key: v.value for v in report.status[0].values}
    assert values["execution holds_estop"] == "1"


def test_deadman_holds_when_heartbeats_stop(node):
    core, execution, clock, out = node
    execution.on_heartbeat(type("B", (), {"data": True})())
    observe(core, clock)
    core.on_timer()
    assert wait(lambda: out.messages["joint_trajectory"])
    clock.now += 0.6  # heartbeat_timeout 0.5 s
    execution.tick()
    hold = trajectory_from_message(out.messages["joint_trajectory"][-1])
    assert len(hold.times_s) == 1
    assert execution.executor.counters["holds_deadman"] == 1


def test_stale_observations_when_a_chunk_is_due_hold_the_arm(node):
    core, execution, clock, out = node
    execution.on_heartbeat(type("B", (), {"data": True})())
    observe(core, clock)
    core.on_timer()
    assert wait(lambda: out.messages["joint_trajectory"])
    clock.now += 2.0  # the next capture is due, but the newest frames are 2 s old (max_observation_age 0.5)
    execution.on_heartbeat(type("B", (), {"data": True})())
    assert core.on_timer() == "stale"
    hold = trajectory_from_message(out.messages["joint_trajectory"][-1])
    assert len(hold.times_s) == 1 and execution.executor.holding == "stale_observation"
    assert core.on_timer() == "stale"  # held once, not again on every tick
    assert execution.executor.counters["holds_stale_observation"] == 1
