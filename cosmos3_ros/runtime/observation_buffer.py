"""Per-input ring buffers keyed by header stamp, synchronised snapshots and zero-order-hold resampling.

Subscription callbacks only ``add`` here (a lock and a list insert); the node's timer asks for the newest set
of messages whose stamps agree within a tolerance, and inverse dynamics asks for ``chunk + 1`` frames on the
model's time grid. Memory is bounded per input by a message cap and a retention window.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stamped:
    """One buffered input: header stamp (ns), the payload (message or parsed values), receive time (s, node clock)."""

    stamp_ns: int
    value: Any
    received_s: float


@dataclass(frozen=True)
class SyncResult:
    """A synchronised set (``items`` per source) or, when none exists, the ``reason`` in words."""

    items: dict[str, Stamped] | None
    reason: str = ""

    @property
    def newest_ns(self) -> int:
        """Stamp of the newest message in the set."""
        assert self.items is not None
        return max(item.stamp_ns for item in self.items.values())

    @property
    def oldest_ns(self) -> int:
        """Stamp of the oldest message in the set."""
        assert self.items is not None
        return min(item.stamp_ns for item in self.items.values())


class _SourceRing:
    """Stamp-ordered items of one source. Not thread-safe; ObservationBuffer holds the lock."""

    def __init__(self, max_messages: int, retention_ns: int, min_interval_ns: int) -> None:
        self.max_messages = max_messages
        self.retention_ns = retention_ns
        self.min_interval_ns = min_interval_ns
        self.items: list[Stamped] = []
        self.stamps: list[int] = []

    def add(self, item: Stamped) -> None:
        stamps = self.stamps
        if stamps and item.stamp_ns >= stamps[-1]:
            if item.stamp_ns == stamps[-1]:
                self.items[-1] = item  # same stamp republished: keep the newer copy
                return
            # The newest slot floats: while it is closer than min_interval to the one before, it is overwritten,
            # so high-rate inputs (1 kHz joint states) keep a long enough history within the message cap.
            if len(stamps) >= 2 and stamps[-1] - stamps[-2] < self.min_interval_ns:
                self.items[-1] = item
                stamps[-1] = item.stamp_ns
            else:
                self.items.append(item)
                stamps.append(item.stamp_ns)
        else:
            index = bisect.bisect_left(stamps, item.stamp_ns)
            if index < len(stamps) and stamps[index] == item.stamp_ns:
                self.items[index] = item
                return
            self.items.insert(index, item)
            stamps.insert(index, item.stamp_ns)
        self._trim()

    def _trim(self) -> None:
        newest = self.stamps[-1]
        drop = bisect.bisect_left(self.stamps, newest - self.retention_ns)
        drop = max(drop, len(self.stamps) - self.max_messages)
        drop = min(drop, len(self.stamps) - 1)  # always keep the newest
        if drop > 0:
            del self.items[:drop]
            del self.stamps[:drop]

    def nearest(self, stamp_ns: int) -> Stamped | None:
        if not self.stamps:
            return None
        index = bisect.bisect_left(self.stamps, stamp_ns)
        candidates = [i for i in (index - 1, index) if 0 <= i < len(self.stamps)]
        best = min(candidates, key=lambda i: abs(self.stamps[i] - stamp_ns))
        return self.items[best]

    def at_or_before(self, stamp_ns: int) -> Stamped | None:
        index = bisect.bisect_right(self.stamps, stamp_ns) - 1
        return self.items[index] if index >= 0 else None


class ObservationBuffer:
    """Thread-safe ring buffers, one per named source (cameras, joint states, ...).

    Args:
        sources: source names.
        max_messages: cap per source (memory bound).
        retention_s: older messages than ``newest - retention_s`` are dropped (per source).
        min_interval_s: per-source spacing kept between retained messages (0 keeps every message).

    """

    def __init__(
        self,
        sources: Iterable[str],
        *,
        max_messages: int,
        retention_s: float,
        min_interval_s: Mapping[str, float] | None = None,
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages={max_messages}; expected >= 1")
        intervals = dict(min_interval_s or {})
        self._lock = threading.Lock()
        self._rings = {
            name: _SourceRing(max_messages, round(retention_s * 1e9), round(intervals.get(name, 0.0) * 1e9))
            for name in sources
        }

    @property
    def sources(self) -> tuple[str, ...]:
        """Source names."""
        return tuple(self._rings)

    def add(self, source: str, stamp_ns: int, value: Any, received_s: float) -> None:
        """Buffer one input. Cheap: no decoding, one lock, one insert."""
        ring = self._rings[source]
        with self._lock:
            ring.add(Stamped(int(stamp_ns), value, float(received_s)))

    def latest(self, source: str) -> Stamped | None:
        """Newest item of ``source`` or None."""
        with self._lock:
            items = self._rings[source].items
            return items[-1] if items else None

    def sizes(self) -> dict[str, int]:
        """Buffered items per source."""
        with self._lock:
            return {name: len(ring.items) for name, ring in self._rings.items()}

    def clear(self) -> None:
        """Drop everything buffered."""
        with self._lock:
            for ring in self._rings.values():
                ring.items.clear()
                ring.stamps.clear()

    def synchronised(self, sources: Sequence[str], tolerance_s: float) -> SyncResult:
        """The newest set with one item per source whose stamps all lie within ``tolerance_s`` of each other.

        The source whose newest stamp is oldest sets the pace: starting from its newest item (then older ones),
        every other source contributes its item nearest in stamp; the first complete set within tolerance wins.
        """
        tolerance_ns = round(tolerance_s * 1e9)
        with self._lock:
            rings = {name: self._rings[name] for name in sources}
            missing = [name for name, ring in rings.items() if not ring.items]
            if missing:
                return SyncResult(None, f"no message yet from {missing}")
            pacer = min(rings, key=lambda name: rings[name].stamps[-1])
            for candidate in reversed(rings[pacer].items):
                picked = {pacer: candidate}
                for name, ring in rings.items():
                    if name == pacer:
                        continue
                    near = ring.nearest(candidate.stamp_ns)
                    assert near is not None
                    picked[name] = near
                stamps = [item.stamp_ns for item in picked.values()]
                if max(stamps) - min(stamps) <= tolerance_ns:
                    return SyncResult({name: picked[name] for name in sources})
            newest = {name: rings[name].stamps[-1] / 1e9 for name in sources}
            return SyncResult(
                None,
                f"no set of stamps within sync_tolerance={tolerance_s} s; newest stamps (s): "
                + ", ".join(f"{name}={t:.3f}" for name, t in newest.items()),
            )

    def sample_zero_order_hold(
        self, source: str, times_ns: Sequence[int], tolerance_s: float = 0.0
    ) -> list[Stamped] | None:
        """For each time, the last item stamped at or before it (+ tolerance); None if history is too short."""
        tolerance_ns = round(tolerance_s * 1e9)
        with self._lock:
            ring = self._rings[source]
            samples = []
            for t in times_ns:
                item = ring.at_or_before(int(t) + tolerance_ns)
                if item is None:
                    return None
                samples.append(item)
            return samples
