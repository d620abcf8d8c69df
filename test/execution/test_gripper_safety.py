"""Gripper hysteresis / rate limit and the e-stop latch / dead-man."""

from __future__ import annotations

import math

import pytest

from cosmos3_ros.errors import InputError
from cosmos3_ros.execution.gripper import GripperCommander
from cosmos3_ros.execution.safety import SafetySupervisor


def test_hysteresis_ignores_values_between_the_thresholds():
    g = GripperCommander(close_above=0.6, open_below=0.4, min_interval_s=0.0)
    g.observe(False)
    values = [0.3, 0.55, 0.45, 0.58, 0.65, 0.5, 0.45, 0.41, 0.39, 0.5]
    commands = [g.update(v, float(t)) for t, v in enumerate(values)]
    changes = [(t, c.closed) for t, c in enumerate(commands) if c is not None]
    assert changes == [(4, True), (8, False)]
    assert g.toggles == 2


def test_rate_limit_delays_a_change_until_the_interval_passed():
    g = GripperCommander(min_interval_s=1.0)
    g.observe(False)
    assert g.update(0.9, 0.0).closed is True
    assert g.update(0.1, 0.5) is None  # too soon
    assert g.suppressed == 1
    command = g.update(0.1, 1.2)
    assert command is not None and command.closed is False and command.position == pytest.approx(0.04)


def test_first_command_without_a_measurement_uses_one_half():
    g = GripperCommander()
    assert g.update(0.7, 0.0).closed is True
    assert g.toggles == 0  # the first command is not a toggle


def test_gripper_rejects_bad_settings_and_values():
    with pytest.raises(InputError, match="open_below"):
        GripperCommander(close_above=0.4, open_below=0.6)
    with pytest.raises(InputError, match="finite"):
        GripperCommander().update(math.nan, 0.0)


def test_estop_latches_until_released():
    s = SafetySupervisor()
    assert s.check(0.0)[0].allows_commands
    assert s.engage() is True
    assert s.engage() is False  # already latched: counted once
    assert s.estops == 1
    for t in (1.0, 100.0):
        assert not s.check(t)[0].allows_commands
    s.heartbeat(5.0)  # a heartbeat does not release an e-stop
    assert s.check(5.0)[0].reason == "estop"
    assert s.release() is True
    assert s.check(6.0)[0].allows_commands


def test_deadman_trips_once_after_the_timeout_and_rearms_on_a_heartbeat():
    s = SafetySupervisor(heartbeat_timeout_s=0.5)
    state, tripped = s.check(0.0)
    assert tripped and not state.allows_commands and state.reason == "deadman"  # no heartbeat yet: no commands
    s.heartbeat(1.0)
    assert s.check(1.4) == (s.check(1.4)[0], False) and s.check(1.4)[0].allows_commands
    state, tripped = s.check(1.6)
    assert tripped and state.reason == "deadman"
    assert s.check(1.7)[1] is False  # trips once per expiry
    s.heartbeat(2.0)
    assert s.check(2.1)[0].allows_commands
    assert s.deadman_trips == 2
    assert s.deadman_deadline() == pytest.approx(2.5)


def test_no_deadman_when_timeout_is_zero():
    s = SafetySupervisor(0.0)
    assert s.check(1e9)[0].allows_commands and s.deadman_deadline() == math.inf
