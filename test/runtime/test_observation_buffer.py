"""ObservationBuffer: synchronised snapshots, bounded memory, zero-order-hold resampling."""

import threading

import pytest

from cosmos3_ros.runtime.observation_buffer import ObservationBuffer

MS = 1_000_000


def make(sources=("a", "b"), **kwargs):
    kwargs.setdefault("max_messages", 10)
    kwargs.setdefault("retention_s", 10.0)
    return ObservationBuffer(sources, **kwargs)


def test_snapshot_is_the_newest_set_within_tolerance():
    buf = make()
    for t in (0, 33, 66, 100):
        buf.add("a", t * MS, f"a{t}", 0.0)
    for t in (10, 43, 76):
        buf.add("b", t * MS, f"b{t}", 0.0)
    result = buf.synchronised(["a", "b"], tolerance_s=0.015)
    assert {k: v.value for k, v in result.items.items()} == {"a": "a66", "b": "b76"}
    assert result.newest_ns == 76 * MS and result.oldest_ns == 66 * MS


def test_pacing_source_falls_back_to_an_older_frame_when_its_newest_has_no_partner():
    buf = make()
    buf.add("a", 100 * MS, "a100", 0.0)
    buf.add("a", 200 * MS, "a200", 0.0)
    buf.add("b", 105 * MS, "b105", 0.0)
    buf.add("b", 300 * MS, "b300", 0.0)
    result = buf.synchronised(["a", "b"], tolerance_s=0.01)
    assert {k: v.value for k, v in result.items.items()} == {"a": "a100", "b": "b105"}


def test_no_set_within_tolerance_reports_the_newest_stamps():
    buf = make()
    buf.add("a", 1_000 * MS, 1, 0.0)
    buf.add("b", 1_500 * MS, 2, 0.0)
    result = buf.synchronised(["a", "b"], tolerance_s=0.1)
    assert result.items is None
    assert "no set of stamps within sync_tolerance=0.1 s" in result.reason
    assert "a=1.000, b=1.500" in result.reason


def test_missing_source_is_named():
    buf = make()
    buf.add("a", 1, 1, 0.0)
    result = buf.synchronised(["a", "b"], tolerance_s=1.0)
    assert result.items is None and result.reason == "no message yet from ['b']"


def test_out_of_order_and_duplicate_stamps_keep_stamp_order():
    buf = make(sources=("a",))
    for t, v in ((30, "x"), (10, "y"), (20, "z"), (20, "z2")):
        buf.add("a", t * MS, v, 0.0)
    samples = buf.sample_zero_order_hold("a", [10 * MS, 20 * MS, 30 * MS])
    assert [s.value for s in samples] == ["y", "z2", "x"]
    assert buf.sizes() == {"a": 3}


def test_message_cap_bounds_memory():
    buf = make(sources=("a",), max_messages=5)
    for t in range(1000):
        buf.add("a", t * MS, t, 0.0)
    assert buf.sizes() == {"a": 5}
    assert buf.latest("a").value == 999


def test_retention_window_drops_old_messages_but_keeps_the_newest():
    buf = make(sources=("a",), max_messages=100, retention_s=0.05)
    for t in range(0, 200, 10):
        buf.add("a", t * MS, t, 0.0)
    assert [s.value for s in buf.sample_zero_order_hold("a", [140 * MS, 190 * MS])] == [140, 190]
    assert buf.sample_zero_order_hold("a", [130 * MS]) is None


def test_min_interval_decimates_history_but_always_holds_the_newest():
    buf = make(sources=("s",), max_messages=1000, min_interval_s={"s": 0.025})
    for t in range(0, 1001):  # 1 kHz for one second
        buf.add("s", t * MS, t, 0.0)
    assert buf.latest("s").value == 1000
    assert buf.sizes()["s"] <= 42
    held = buf.sample_zero_order_hold("s", [500 * MS])[0]
    assert 500 - held.value < 25


def test_zero_order_hold_resamples_on_a_time_grid():
    buf = make(sources=("cam",))
    for t in (0, 40, 80, 120):
        buf.add("cam", t * MS, t, 0.0)
    grid = [0, 30 * MS, 60 * MS, 90 * MS, 120 * MS]
    assert [s.value for s in buf.sample_zero_order_hold("cam", grid)] == [0, 0, 40, 80, 120]
    assert [s.value for s in buf.sample_zero_order_hold("cam", [39 * MS], tolerance_s=0.002)] == [40]


def test_zero_order_hold_before_the_first_message_is_insufficient_history():
    buf = make(sources=("cam",))
    buf.add("cam", 100 * MS, 1, 0.0)
    assert buf.sample_zero_order_hold("cam", [50 * MS, 100 * MS]) is None


def test_clear_empties_every_source():
    buf = make()
    buf.add("a", 1, 1, 0.0)
    buf.add("b", 1, 1, 0.0)
    buf.clear()
    assert buf.sizes() == {"a": 0, "b": 0}
    assert buf.latest("a") is None


def test_concurrent_adds_and_snapshots_are_safe():
    buf = make(max_messages=8)
    errors = []

    def writer(source):
        try:
            for t in range(5000):
                buf.add(source, t * MS, t, 0.0)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in ("a", "b")]
    for th in threads:
        th.start()
    for _ in range(2000):
        buf.synchronised(["a", "b"], tolerance_s=1.0)
    for th in threads:
        th.join()
    assert not errors
    assert buf.sizes() == {"a": 8, "b": 8}


def test_invalid_cap_is_rejected():
    with pytest.raises(ValueError, match="max_messages=0"):
        ObservationBuffer(["a"], max_messages=0, retention_s=1.0)
