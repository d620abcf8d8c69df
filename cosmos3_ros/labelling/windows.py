"""Window planning for bag labelling: the model's time grid laid over recorded header stamps by zero-order hold.

Pure functions on integer-nanosecond stamps (no bag I/O, no model). The grid starts at ``origin_ns`` and
ticks at the model fps; window ``k`` covers grid ticks ``k * stride .. k * stride + chunk`` (``chunk + 1``
frames); frame ``i`` of a window is, per topic, the newest message stamped at or before the tick. A window
is skipped when a topic has no message yet at a tick, or when the held message is older than ``max_hold_ns``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

NS_PER_S = 1_000_000_000


def grid_times(origin_ns: int, fps: float, ticks: np.ndarray | range) -> np.ndarray:
    """``int64`` stamps of grid ticks: ``origin_ns + round(tick * 1e9 / fps)`` (no drift over long bags)."""
    index = np.asarray(ticks, dtype=np.float64)
    return origin_ns + np.rint(index * (NS_PER_S / fps)).astype(np.int64)


def hold_indices(stamps_ns: np.ndarray, times_ns: np.ndarray, *, strict: bool = False) -> np.ndarray:
    """Zero-order hold: per time, the index of the newest stamp ``<= time`` (``< time`` if ``strict``), or -1.

    ``stamps_ns`` must be sorted ascending; equal stamps resolve to the last of them.
    """
    side = "left" if strict else "right"
    return np.searchsorted(np.asarray(stamps_ns, dtype=np.int64), np.asarray(times_ns, dtype=np.int64),
                           side=side).astype(np.int64) - 1


def held_values(stamps_ns: np.ndarray, values: np.ndarray, times_ns: np.ndarray, max_hold_ns: int, *,
                strict: bool = False) -> np.ndarray:
    """``values`` rows held at ``times_ns`` (``[len(times), D]`` float64); NaN where none or older than the limit."""
    rows = np.asarray(values, dtype=np.float64).reshape(len(stamps_ns), -1)
    out = np.full((len(times_ns), rows.shape[1]), np.nan)
    if len(stamps_ns) == 0:
        return out
    index = hold_indices(stamps_ns, times_ns, strict=strict)
    ok = index >= 0
    ok[ok] = (np.asarray(times_ns)[ok] - np.asarray(stamps_ns)[index[ok]]) <= max_hold_ns
    out[ok] = rows[index[ok]]
    return out


@dataclass(frozen=True)
class Window:
    """One planned window.

    Attributes:
        index: window number ``k`` (also the seed offset).
        times_ns: ``[chunk + 1]`` grid stamps of the window's frames; ``times_ns[0]`` is the window start t0.
        frames: per topic, ``[chunk + 1]`` indices into that topic's sorted stamps (the held message per frame).
        state: index of the held state message at t0, or None when no state topic is planned.

    """

    index: int
    times_ns: tuple[int, ...]
    frames: Mapping[str, tuple[int, ...]]
    state: int | None

    @property
    def t0_ns(self) -> int:
        """Grid time of frame 0 (the window start)."""
        return self.times_ns[0]


@dataclass(frozen=True)
class SkippedWindow:
    """A window on the grid that was not run, and why (one line naming the topic)."""

    index: int
    t0_ns: int
    reason: str


@dataclass(frozen=True)
class WindowPlan:
    """All windows on the grid within the requested range.

    Attributes:
        origin_ns: grid tick 0.
        range_start_ns / range_end_ns: the requested time range (clipped to the data).
        windows: windows whose inputs are complete and fresh enough, in order.
        skipped: the other windows of the range.

    """

    origin_ns: int
    range_start_ns: int
    range_end_ns: int
    windows: tuple[Window, ...]
    skipped: tuple[SkippedWindow, ...]


def plan_windows(camera_stamps: Mapping[str, np.ndarray], state_stamps: np.ndarray | None, *, fps: float,
                 chunk: int, stride: int, start_ns: int | None = None, end_ns: int | None = None,
                 max_hold_ns: int, state_name: str = "state") -> WindowPlan:
    """Lay the model's grid over the recorded stamps and pick the held message of each frame.

    The grid's tick 0 is the first instant at or after ``start_ns`` at which every camera (and the state topic,
    when given) has a message. Windows end at or before ``end_ns`` and the earliest of the cameras' last stamps.

    Args:
        camera_stamps: topic -> sorted ``int64`` header stamps (ns). Must not be empty.
        state_stamps: sorted stamps of the state topic sampled at each window start, or None.
        fps: model rate (Hz).
        chunk: actions per window (a window has ``chunk + 1`` frames).
        stride: grid ticks between window starts (``chunk`` = back to back, sharing one frame).
        start_ns: earliest window start (absolute stamp); None = the data's start.
        end_ns: latest window end (absolute stamp); None = the data's end.
        max_hold_ns: the oldest a held message may be at a tick.
        state_name: how skip reasons name the state topic.

    """
    if chunk < 1 or stride < 1:
        raise ValueError(f"chunk={chunk}, stride={stride}; expected both >= 1")
    topics = {name: np.asarray(stamps, dtype=np.int64) for name, stamps in camera_stamps.items()}
    empty = [name for name, stamps in topics.items() if stamps.size == 0]
    if not topics or empty:
        raise ValueError(f"camera topics without messages: {empty}")
    state = None if state_stamps is None else np.asarray(state_stamps, dtype=np.int64)
    firsts = [int(stamps[0]) for stamps in topics.values()]
    if state is not None and state.size:
        firsts.append(int(state[0]))
    origin = max([*firsts, start_ns if start_ns is not None else min(firsts)])
    data_end = min(int(stamps[-1]) for stamps in topics.values())
    range_end = data_end if end_ns is None else min(end_ns, data_end)
    dt_ns = NS_PER_S / fps
    if range_end < origin:
        return WindowPlan(origin, origin, range_end, (), ())
    last_tick = int(np.floor((range_end - origin) / dt_ns)) + 1
    while last_tick >= 0 and int(grid_times(origin, fps, [last_tick])[0]) > range_end:
        last_tick -= 1  # the float estimate may be one tick off either way of the rounded grid stamps
    count = 0 if last_tick < chunk else (last_tick - chunk) // stride + 1
    windows: list[Window] = []
    skipped: list[SkippedWindow] = []
    for k in range(count):
        times = grid_times(origin, fps, range(k * stride, k * stride + chunk + 1))
        frames: dict[str, tuple[int, ...]] = {}
        reason = None
        for name, stamps in topics.items():
            index = hold_indices(stamps, times)
            reason = _hold_problem(name, stamps, index, times, max_hold_ns)
            if reason:
                break
            frames[name] = tuple(int(i) for i in index)
        state_index: int | None = None
        if reason is None and state is not None:
            index = hold_indices(state, times[:1])
            reason = _hold_problem(state_name, state, index, times[:1], max_hold_ns)
            state_index = int(index[0])
        if reason:
            skipped.append(SkippedWindow(k, int(times[0]), reason))
        else:
            windows.append(Window(k, tuple(int(t) for t in times), frames, state_index))
    return WindowPlan(origin, origin, range_end, tuple(windows), tuple(skipped))


def _hold_problem(name: str, stamps: np.ndarray, index: np.ndarray, times: np.ndarray, max_hold_ns: int) -> str | None:
    if np.any(index < 0):
        at = int(times[int(np.argmax(index < 0))])
        return f"{name}: no message at or before {at / NS_PER_S:.3f} s"
    age = times - stamps[index]
    if np.any(age > max_hold_ns):
        worst = int(np.argmax(age))
        return (f"{name}: newest message at {int(times[worst]) / NS_PER_S:.3f} s is {age[worst] / 1e6:.1f} ms old "
                f"> max hold {max_hold_ns / 1e6:.1f} ms")
    return None
