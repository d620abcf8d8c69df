"""Overload: 1000 camera frames at 100 Hz against a deliberately slow model."""

import time
import tracemalloc

import numpy as np
import pytest
from ros_messages import FACTORY, FakeClock, FakeModel, Recorder, image_msg, stamp_ns_of

from cosmos3_ros.processing.profiles import BASE
from cosmos3_ros.runtime.node_core import PolicyNodeCore

FRAMES = 1000
FRAME_BYTES = 360 * 640 * 3


@pytest.mark.parametrize("trigger", ["timer", "event"])
def test_a_slow_model_under_a_100_hz_camera_keeps_memory_bounded_and_runs_the_latest_snapshot(trigger):
    """timer: snapshots at 50 Hz wait in the one-job slot and replace each other. event: a snapshot is taken only
    when the model is free (the rclpy layer calls on_event on each frame and when the worker goes idle)."""
    clock = FakeClock(0.0)
    publish = Recorder()
    # 50 ms per chunk: the model can take at most about one in five snapshots.
    model = FakeModel(BASE, delay_s=0.05, keep_requests=False)
    core = PolicyNodeCore(
        model, {"checkpoint": "/fake", "task": "wipe the table", "camera_topics": ["/cam/image_raw"],
                "inference_rate": 50.0, "max_buffered_messages": 20, "max_observation_age": 0.5,
                "snapshot_trigger": trigger},
        clock=clock, publish=publish, factory=FACTORY,
    )
    camera = core.subscriptions[0].callback
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        last_stamp = 0
        for k in range(FRAMES):
            stamp = 1_000_000_000 + k * 10_000_000  # 100 Hz header stamps
            clock.now = stamp / 1e9 + 0.005
            pixels[0, 0, 0] = k % 256
            camera(image_msg(pixels, stamp))
            last_stamp = stamp
            if k % 2 == 1:  # the 50 Hz snapshot timer
                core.on_timer()
            if trigger == "event":
                core.on_event()  # the frame's wake-up
            time.sleep(0.001)  # frames arrive over time while the worker runs
        assert max(core.buffer.sizes().values()) <= 20
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert core.worker.wait_idle(10)
    if trigger == "event":  # a later wake-up (the rate cap may have held the last frame back): the newest set
        clock.now += 0.05
        assert core.on_event() in ("submitted", None)
        assert core.worker.wait_idle(10)
    assert core.worker.alive
    # 1000 frames of 691 KB went in; at most the ring buffer (20 frames) plus a few in flight were held.
    assert peak < 30 * FRAME_BYTES, f"peak traced memory {peak / 1e6:.1f} MB"
    chunks = publish.messages["action_chunk"]
    stamps = [stamp_ns_of(c) for c in chunks]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert stamps[-1] == last_stamp  # the newest snapshot was the one run last
    assert model.max_active == 1  # one GPU thread, never two requests at once
    assert len(chunks) < FRAMES // 2 - 50  # most snapshots were dropped, not queued
    counts = core.worker.counts
    assert counts["failed"] == 0
    status = FACTORY.deserialize(FACTORY.serialize(core.diagnostics_message()), "diagnostic_msgs/msg/DiagnosticArray")
    values = {kv.key: kv.value for kv in status.status[0].values}
    if trigger == "timer":
        assert int(values["skipped: model_busy"]) == counts["replaced"] > 0
        assert int(values["snapshots submitted"]) == FRAMES // 2
    else:  # nothing ever waits in the slot: every snapshot taken is run
        assert counts["replaced"] == 0 and "skipped: model_busy" not in values
        assert int(values["snapshots submitted"]) == len(chunks)
    assert int(values["snapshots replaced"]) == counts["replaced"]
    assert int(values["chunks published"]) == len(chunks)
    assert float(values["input rate image (Hz)"]) > 90
    assert core.shutdown(5)
