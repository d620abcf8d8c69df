"""SIGINT / SIGTERM end policy_node cleanly: exit 0 within 2 s, no traceback, no error log (issue 10, bugs 1-2).

Each case starts the real node from its console script (tiny checkpoint on CPU), brings it to the state named
(idle; a model call running; the rollout mp4 being written; idle under sim time with /clock running), sends
the signal to its pid and checks the exit. The node processes start together so their start-up overlaps.
"""

from __future__ import annotations

import signal

import pytest
from ros_graph import DiagnosticsListener, DroidInputs, SimClock, droid_params, require_ros, wait_for

require_ros()

pytestmark = pytest.mark.rclpy

# (case, signal): every state with SIGINT; SIGTERM at idle and during a model call.
CASES = [("idle", signal.SIGINT), ("idle", signal.SIGTERM), ("inference", signal.SIGINT),
         ("inference", signal.SIGTERM), ("rollout_writing", signal.SIGINT), ("sim_time", signal.SIGINT)]
EXIT_WITHIN_S = 2.0


def case_id(case):
    return f"{case[0]}-{signal.Signals(case[1]).name}"


@pytest.fixture(scope="module")
def nodes(start_node, tiny_checkpoint):
    """One node per case, all started at once (start-up is mostly imports and loading)."""
    started = {}
    for index, case in enumerate(CASES):
        name, _ = case
        ns = f"/shutdown{index}"
        extra = {"diagnostics_period": 0.05, "inference_rate": 10.0}
        if name == "rollout_writing":
            extra.update(publish_rollout=True)
        if name == "sim_time":
            extra.update(use_sim_time=True)
        started[case] = (ns, start_node(droid_params(ns, tiny_checkpoint, **extra), name=f"shutdown{index}",
                                        ros_args=("-r", f"__ns:={ns}")))
    for _, process in started.values():
        process.wait_for_log(r"policy with profile", timeout=240)
    return started


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_signal_exits_zero_quickly_without_traceback(case, nodes, ros_peer, droid_cameras):
    name, sig = case
    ns, process = nodes[case]
    diagnostics = DiagnosticsListener(ros_peer, f"{ns}/policy_node")
    inputs = DroidInputs(ros_peer, ns, droid_cameras)
    clock = SimClock(ros_peer) if name == "sim_time" else None
    try:
        assert wait_for(diagnostics.values, timeout=30), process.log()
        if name in ("inference", "rollout_writing"):
            inputs.send_task("put the marker in the cup")
            assert inputs.wait_connected(), process.log()
            busy_key = "model busy" if name == "inference" else "writing rollout video"

            def reached():
                inputs.send()
                return diagnostics.values().get(busy_key) == "True"

            assert wait_for(reached, timeout=240, period=0.1), f"never saw {busy_key}:\n{process.log()}"
        elif name == "sim_time":
            # The node runs on /clock: the stamps of its diagnostics follow the sim clock (1000 s, not epoch).
            assert wait_for(lambda: diagnostics.latest_stamp_s is not None
                            and abs(diagnostics.latest_stamp_s - clock.now_s()) < 5.0, timeout=30), process.log()
        code, elapsed = process.stop(sig, timeout=15)
    finally:
        if clock is not None:
            clock.close()
        inputs.close()
        diagnostics.close()
    log = process.log()
    print(f"{case_id(case)}: exit {code} after {elapsed:.2f} s")
    assert code == 0, log
    assert elapsed < EXIT_WITHIN_S, f"exit took {elapsed:.2f} s\n{log}"
    assert "Traceback" not in log, log
    assert "[ERROR]" not in log, log

