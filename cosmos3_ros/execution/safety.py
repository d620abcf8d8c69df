"""E-stop latch, dead-man heartbeat and the reasons to hold the arm.

``SafetySupervisor`` only decides; the executor turns a hold into a trajectory at the measured position.
The e-stop latches: it stays engaged until ``release`` is called explicitly, whatever arrives meanwhile.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

HOLD_REASONS = ("estop", "deadman", "stale_observation", "model_error", "shutdown", "rejected_chunk")


@dataclass(frozen=True)
class SafetyState:
    """A snapshot: whether commands may flow and, if not, why."""

    estop: bool
    deadman_expired: bool
    reason: str

    @property
    def allows_commands(self) -> bool:
        """No e-stop and no expired dead-man."""
        return not self.estop and not self.deadman_expired


class SafetySupervisor:
    """E-stop latch and dead-man timer on the node clock (thread-safe: topics, services and timers call it).

    Args:
        heartbeat_timeout_s: no heartbeat for this long -> hold; 0 = no dead-man.

    """

    def __init__(self, heartbeat_timeout_s: float = 0.0) -> None:
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        self._lock = threading.Lock()
        self._estop = False
        self._estop_reason = ""
        self._last_heartbeat = -math.inf
        self._deadman_tripped = False
        self.estops = 0
        self.deadman_trips = 0

    @property
    def uses_deadman(self) -> bool:
        """Whether a heartbeat is required."""
        return self.heartbeat_timeout_s > 0

    def engage(self, reason: str = "estop") -> bool:
        """Latch the e-stop; returns True if it was not engaged before."""
        with self._lock:
            first = not self._estop
            self._estop = True
            self._estop_reason = reason
            if first:
                self.estops += 1
            return first

    def release(self) -> bool:
        """Release the latch; returns True if it was engaged. A release does not satisfy the dead-man."""
        with self._lock:
            was = self._estop
            self._estop = False
            self._estop_reason = ""
            return was

    def heartbeat(self, now: float) -> None:
        """A heartbeat arrived at node time ``now``; re-arms a tripped dead-man."""
        with self._lock:
            self._last_heartbeat = now
            self._deadman_tripped = False

    def deadman_deadline(self) -> float:
        """Node time after which the dead-man trips (inf without a dead-man)."""
        with self._lock:
            return self._last_heartbeat + self.heartbeat_timeout_s if self.uses_deadman else math.inf

    def state(self, now: float) -> SafetyState:
        """The state at ``now`` without consuming a dead-man trip (``check`` reports each trip once)."""
        with self._lock:
            expired = self.uses_deadman and now - self._last_heartbeat > self.heartbeat_timeout_s
            return SafetyState(self._estop, expired, "estop" if self._estop else "deadman" if expired else "")

    def check(self, now: float) -> tuple[SafetyState, bool]:
        """The state at ``now`` and whether the dead-man tripped just now (then the caller publishes a hold)."""
        with self._lock:
            expired = self.uses_deadman and now - self._last_heartbeat > self.heartbeat_timeout_s
            tripped_now = expired and not self._deadman_tripped
            if tripped_now:
                self._deadman_tripped = True
                self.deadman_trips += 1
            reason = "estop" if self._estop else "deadman" if expired else ""
            return SafetyState(self._estop, expired, reason), tripped_now
