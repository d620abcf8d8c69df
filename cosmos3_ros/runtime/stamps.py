"""ROS time stamps as exact integer nanoseconds (float seconds lose the last digits of epoch stamps)."""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (``sec``, ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_sec_nanosec(ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> (``sec``, ``nanosec``) with ``0 <= nanosec < 1e9`` (floor division for negatives)."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return sec, nanosec


def seconds_to_ns(seconds: float) -> int:
    """Seconds -> integer nanoseconds, rounded."""
    return round(seconds * NS_PER_S)
