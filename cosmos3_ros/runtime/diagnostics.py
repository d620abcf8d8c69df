"""Health counters of the node and their ``diagnostic_msgs/DiagnosticArray`` form.

Reported: input rates, observation age, model latency, ROS overhead, skipped snapshots by reason, input and
inference errors with the last message, published chunks and safety interventions.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .action_chunk import MessageFactory, make_header

OK, WARN, ERROR = 0, 1, 2


class RateMeter:
    """Arrivals per second over a sliding window of ``window_s`` seconds (node clock)."""

    def __init__(self, window_s: float = 5.0, max_samples: int = 2000) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=max_samples)

    def tick(self, now_s: float) -> None:
        """Record one arrival; an arrival earlier than the last one (the clock went back) starts afresh."""
        if self._times and now_s < self._times[-1]:
            self._times.clear()
        self._times.append(now_s)

    def reset(self) -> None:
        """Forget every arrival."""
        self._times.clear()

    def rate_hz(self, now_s: float) -> float:
        """Arrivals per second in the window ending now (0 with fewer than two arrivals)."""
        recent = [t for t in self._times if 0.0 <= now_s - t <= self.window_s]
        if len(recent) < 2:
            return 0.0
        span = max(recent[-1] - recent[0], 1e-9)
        return (len(recent) - 1) / span


@dataclass
class DiagnosticReport:
    """One status in plain Python: level (0 OK, 1 WARN, 2 ERROR), summary, key/value pairs."""

    level: int
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)


class NodeDiagnostics:
    """Thread-safe counters fed by callbacks, the timer and the worker thread."""

    def __init__(self, sources: Iterable[str], latency_window: int = 100) -> None:
        self._lock = threading.Lock()
        self._rates = {name: RateMeter() for name in sources}
        self.counts: Counter[str] = Counter()
        self.skips: Counter[str] = Counter()
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._overheads: deque[float] = deque(maxlen=latency_window)
        self.last_observation_age_s: float | None = None
        self.last_error = ""
        self.last_job_failed = False
        self._reported_counts: Counter[str] = Counter()
        self._reported_skips: Counter[str] = Counter()
        self._last_skip_reason = ""
        self.last_clock_jump = ""

    def on_input(self, source: str, now_s: float) -> None:
        """One message arrived on ``source``."""
        with self._lock:
            self._rates[source].tick(now_s)

    def count(self, key: str, n: int = 1) -> None:
        """Add to a named counter (``chunks_published``, ``snapshots_submitted``, ...)."""
        with self._lock:
            self.counts[key] += n

    def skip(self, reason: str, detail: str = "") -> None:
        """One timer tick did not produce a job, for ``reason``."""
        with self._lock:
            self.skips[reason] += 1
            self._last_skip_reason = f"{reason}: {detail}" if detail else reason

    def input_error(self, message: str) -> None:
        """A malformed input was dropped."""
        with self._lock:
            self.counts["input_errors"] += 1
            self.last_error = message

    def clock_jumped_back(self, jump_s: float) -> None:
        """The node clock went back by ``jump_s`` seconds; rates restart from the new time."""
        with self._lock:
            self.counts["clock_jumps_backward"] += 1
            self.last_clock_jump = f"back {jump_s:.3f} s; buffers flushed"
            for meter in self._rates.values():
                meter.reset()

    def job_failed(self, message: str) -> None:
        """A model job raised."""
        with self._lock:
            self.counts["inference_errors"] += 1
            self.last_error = message
            self.last_job_failed = True

    def job_succeeded(self, model_s: float, overhead_s: float, observation_age_s: float) -> None:
        """A model job produced a chunk."""
        with self._lock:
            self._latencies.append(model_s)
            self._overheads.append(overhead_s)
            self.last_observation_age_s = observation_age_s
            self.last_job_failed = False

    def report(self, now_s: float, info: Mapping[str, Any]) -> DiagnosticReport:
        """Snapshot of all counters; WARN if anything was skipped or rejected since the previous report."""
        with self._lock:
            new_skips = self.skips - self._reported_skips
            new_counts = self.counts - self._reported_counts
            self._reported_skips = Counter(self.skips)
            self._reported_counts = Counter(self.counts)
            values: list[tuple[str, str]] = []
            for name, meter in self._rates.items():
                values.append((f"input rate {name} (Hz)", f"{meter.rate_hz(now_s):.2f}"))
            age = self.last_observation_age_s
            values.append(("observation age at snapshot (s)", "n/a" if age is None else f"{age:.3f}"))
            if self._latencies:
                lat = np.asarray(self._latencies)
                over = np.asarray(self._overheads) * 1e3
                values += [
                    ("inference latency last (s)", f"{lat[-1]:.3f}"),
                    ("inference latency p50 (s)", f"{np.percentile(lat, 50):.3f}"),
                    ("inference latency max (s)", f"{lat.max():.3f}"),
                    ("ros overhead p99 (ms)", f"{np.percentile(over, 99):.2f}"),
                ]
            for key in ("snapshots_submitted", "snapshots_replaced", "chunks_published", "trajectories_published",
                        "trajectory_values_clamped", "trajectory_values_rate_limited", "rollout_frames_published",
                        "rollout_videos_written", "rollout_videos_skipped", "video_frames_held", "input_errors",
                        "future_stamps_dropped",
                        "inference_errors", "clock_jumps_backward"):
                values.append((key.replace("_", " "), str(self.counts[key])))
            values.append(("snapshots skipped", str(sum(self.skips.values()))))
            values += [(f"skipped: {reason}", str(n)) for reason, n in sorted(self.skips.items())]
            values.append(("last error", self.last_error or "none"))
            values.append(("last clock jump", self.last_clock_jump or "none"))
            values += [(key, str(value)) for key, value in info.items()]

            problems = []
            if new_skips:
                problems.append(f"skipped {sum(new_skips.values())} snapshots ({self._last_skip_reason})")
            if new_counts["input_errors"]:
                problems.append(f"{new_counts['input_errors']} bad inputs ({self.last_error})")
            if new_counts["clock_jumps_backward"]:
                problems.append(f"node clock jumped {self.last_clock_jump}")
            if new_counts["inference_errors"]:
                problems.append(f"{new_counts['inference_errors']} failed inferences ({self.last_error})")
            if self.last_job_failed:
                level = ERROR
            elif problems or info.get("paused"):
                level = WARN
            else:
                level = OK
            if info.get("paused"):
                problems.insert(0, "paused")
            message = "; ".join(problems) if problems else f"ok: {self.counts['chunks_published']} chunks published"
            return DiagnosticReport(level, message, values)


def build_diagnostic_array(
    factory: MessageFactory, report: DiagnosticReport, *, stamp_ns: int, name: str, hardware_id: str
) -> Any:
    """``diagnostic_msgs/DiagnosticArray`` holding one status built from ``report``."""
    status = factory.new(
        "diagnostic_msgs/msg/DiagnosticStatus",
        level=factory.byte(report.level),
        name=name,
        message=report.message,
        hardware_id=hardware_id,
        values=[factory.new("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in report.values],
    )
    header = make_header(factory, stamp_ns, "")
    return factory.new("diagnostic_msgs/msg/DiagnosticArray", header=header, status=[status])
