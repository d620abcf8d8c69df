"""policy_node under sim time (``use_sim_time``, a /clock publisher in the test): forward and backward jumps.

A backward jump (a bag looping, /clock restarting) used to leave the pre-jump messages in the buffers, skip
every tick as ``no_new_observation`` until ``clear_buffers`` and report input rates of 1e11 Hz (issue 10 bug 6,
issue 9 section 7). Now the node flushes its buffers, reports the jump on /diagnostics and serves the inputs
stamped after it.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ros_graph import DiagnosticsListener, DroidInputs, SimClock, droid_params, require_ros, wait_for

require_ros()

from cosmos3_ros_msgs.msg import ActionChunk  # noqa: E402

pytestmark = pytest.mark.rclpy

NS = "/simtime"
NODE = f"{NS}/policy_node"


@pytest.fixture(scope="module")
def graph(start_node, tiny_checkpoint, ros_peer, droid_cameras):
    process = start_node(droid_params(NS, tiny_checkpoint, steps=1, use_sim_time=True, diagnostics_period=0.2,
                                      inference_rate=4.0),
                         name="simtime", ros_args=("-r", f"__ns:={NS}"))
    clock = SimClock(ros_peer, start_s=1000.0)
    chunks: list = []
    lock = threading.Lock()

    def keep(msg):
        with lock:
            chunks.append(msg)

    sub = ros_peer.node.create_subscription(ActionChunk, f"{NODE}/action_chunk", keep, 10)
    diagnostics = DiagnosticsListener(ros_peer, NODE)
    process.wait_for_log(r"policy with profile", timeout=240)
    inputs = DroidInputs(ros_peer, NS, droid_cameras)
    inputs.send_task("put the marker in the cup")
    assert inputs.wait_connected(), process.log()
    yield process, clock, inputs, chunks, diagnostics
    inputs.close()
    diagnostics.close()
    ros_peer.node.destroy_subscription(sub)
    clock.close()
    code, _ = process.stop()
    assert code == 0, process.log()


def serve_at_sim_time(clock, inputs, chunks, timeout=240.0):
    """Send observations stamped with the sim clock until one is answered; returns the chunk's stamp (s)."""
    sent = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stamp = inputs.send(stamp=clock.stamp())
        sent.add((stamp.sec, stamp.nanosec))
        if wait_for(lambda: any((c.header.stamp.sec, c.header.stamp.nanosec) in sent for c in list(chunks)), 0.5):
            hit = next(c for c in list(chunks) if (c.header.stamp.sec, c.header.stamp.nanosec) in sent)
            return hit.header.stamp.sec + hit.header.stamp.nanosec / 1e9
    raise AssertionError(f"no chunk for {len(sent)} observations at sim time {clock.now_s():.1f} s")


def test_the_node_runs_on_sim_time_and_follows_a_forward_jump(graph):
    process, clock, inputs, chunks, diagnostics = graph
    assert wait_for(lambda: diagnostics.latest_stamp_s is not None
                    and abs(diagnostics.latest_stamp_s - clock.now_s()) < 5.0, timeout=30), process.log()
    clock.jump_to(1100.0)
    stamp = serve_at_sim_time(clock, inputs, chunks)
    assert 1100.0 <= stamp < 1100.0 + 300.0, process.log()


def test_a_backward_jump_flushes_the_buffers_and_the_node_serves_again(graph):
    process, clock, inputs, chunks, diagnostics = graph
    serve_at_sim_time(clock, inputs, chunks)  # buffers now hold messages stamped after 1100 s
    clock.jump_to(clock.now_s() - 30.0)
    jumped_at = clock.now_s()
    assert wait_for(lambda: int(diagnostics.values().get("clock jumps backward", 0)) >= 1, timeout=30), process.log()
    values = diagnostics.values()
    assert values["last clock jump"].startswith("back ")
    assert "node clock jumped back" in process.log()
    stamp = serve_at_sim_time(clock, inputs, chunks)
    assert jumped_at <= stamp < jumped_at + 300.0
    rates = [float(v) for k, v in diagnostics.values().items() if k.startswith("input rate")]
    assert rates and max(rates) < 1000.0, rates  # was 1.4e11 Hz after a backward jump
    assert np.isfinite(np.asarray(chunks[-1].data)).all()
