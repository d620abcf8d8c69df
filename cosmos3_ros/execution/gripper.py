"""The gripper column (0 open .. 1 closed, the released contract's convention at the model output) becomes
open / close commands: binarised with hysteresis and rate-limited, so a value hovering near 0.5 does not
make the gripper chatter (a recurring complaint with peers: openpi#360).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class GripperCommand:
    """One command: ``closed`` plus what ``control_msgs/action/GripperCommand`` carries.

    Attributes:
        closed: the commanded state.
        position: target finger position (m) sent to the gripper server.
        max_effort: grasp force (N) sent to the gripper server.
        time_s: node time the command was decided.
        value: the column value that triggered it.

    """

    closed: bool
    position: float
    max_effort: float
    time_s: float
    value: float


class GripperCommander:
    """Hysteresis + rate limit on the gripper column.

    Args:
        close_above: close when the value rises above this (while open).
        open_below: open when the value falls below this (while closed); must be < ``close_above``.
        min_interval_s: no two commands closer than this (node clock); a change is re-evaluated later.
        open_position / closed_position: finger positions (m) sent with each command.
        max_effort: grasp force (N).

    """

    def __init__(self, close_above: float = 0.6, open_below: float = 0.4, min_interval_s: float = 0.5,
                 open_position: float = 0.04, closed_position: float = 0.0, max_effort: float = 20.0) -> None:
        if not open_below < close_above:
            raise InputError(f"gripper thresholds: open_below {open_below} must be < close_above {close_above}")
        if min_interval_s < 0:
            raise InputError(f"gripper_min_interval: {min_interval_s}; expected >= 0")
        self.close_above = float(close_above)
        self.open_below = float(open_below)
        self.min_interval_s = float(min_interval_s)
        self.open_position = float(open_position)
        self.closed_position = float(closed_position)
        self.max_effort = float(max_effort)
        self.closed: bool | None = None  # unknown until the first command or measurement
        self.last_command_s = -math.inf
        self.toggles = 0
        self.suppressed = 0

    def observe(self, closed: bool) -> None:
        """Seed the state from the measured gripper (before the first command)."""
        if self.closed is None:
            self.closed = bool(closed)

    def update(self, value: float, now: float) -> GripperCommand | None:
        """The command to send for column ``value`` at node time ``now``, or None (no change, or too soon)."""
        if not math.isfinite(value):
            raise InputError(f"gripper value {value!r}; expected a finite number (0 open .. 1 closed)")
        if self.closed is None:
            wanted = value > 0.5
        elif self.closed:
            wanted = not value < self.open_below
        else:
            wanted = value > self.close_above
        if wanted == self.closed:
            return None
        if now - self.last_command_s < self.min_interval_s:
            self.suppressed += 1
            return None
        if self.closed is not None:
            self.toggles += 1
        self.closed = wanted
        self.last_command_s = now
        return GripperCommand(wanted, self.closed_position if wanted else self.open_position, self.max_effort, now,
                              float(value))
