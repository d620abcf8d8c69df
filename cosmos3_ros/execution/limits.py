"""Joint limits for commands: position box, velocity, acceleration, largest step from the measured joints.

A chunk's targets either get clamped into the limits (counted per kind) or, with ``on_violation="reject"``,
the whole chunk is refused (the running trajectory continues). FR3 values, with sources:

* positions and velocities: ``franka_description`` ``robots/fr3/joint_limits.yaml`` (lower/upper, velocity);
* acceleration 10 rad/s² on every joint: libfranka ``include/franka/rate_limiting.h`` (FR3 release, 2023,
  ``kMaxJointAcceleration``), the limits page https://frankarobotics.github.io/docs/robot_specifications.html.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

FR3_JOINT_NAMES = tuple(f"fr3_joint{i}" for i in range(1, 8))
FR3_POSITION_MIN = (-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159)
FR3_POSITION_MAX = (2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159)
FR3_VELOCITY_MAX = (2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26)
FR3_ACCELERATION_MAX = (10.0,) * 7
ON_VIOLATION = ("clamp", "reject")
# Measured joints may sit a hair outside a limit (encoder noise at a hard stop).
_SLACK = 1e-3


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits ``[J]`` (None = not limited) and what to do with a target beyond them.

    Attributes:
        position_min / position_max: rad.
        velocity_max: rad/s (symmetric).
        acceleration_max: rad/s² (symmetric), checked on the finite differences of the targets.
        max_step: rad between consecutive targets and from the measured joints to the first one; 0 = off.
        on_violation: ``clamp`` (change the targets, count them) or ``reject`` (refuse the chunk).

    """

    position_min: np.ndarray | None = None
    position_max: np.ndarray | None = None
    velocity_max: np.ndarray | None = None
    acceleration_max: np.ndarray | None = None
    max_step: float = 0.0
    on_violation: str = "clamp"

    @classmethod
    def from_parameters(cls, joint_names: Sequence[str], *, position_min: Sequence[float] = (),
                        position_max: Sequence[float] = (), velocity_max: Sequence[float] = (),
                        acceleration_max: Sequence[float] = (), max_step: float = 0.0,
                        on_violation: str = "clamp") -> JointLimits:
        """Validate parameter values: each list empty or one value per joint; min < max; maxima > 0.

        Raises:
            InputError: naming the parameter and what was expected.

        """
        count = len(joint_names)

        def array(name: str, values: Sequence[float], positive: bool) -> np.ndarray | None:
            if len(values) == 0:
                return None
            if len(values) != count:
                raise InputError(f"parameter {name!r}: {len(values)} values; expected {count} (one per joint_names "
                                 "entry) or none")
            out = np.asarray(values, dtype=np.float64)
            if positive and not np.all(out > 0):
                raise InputError(f"parameter {name!r}: {out.tolist()}; expected values > 0")
            return out

        low = array("joint_position_min", position_min, False)
        high = array("joint_position_max", position_max, False)
        if low is not None and high is not None and not np.all(low < high):
            bad = [str(j) for j, lo, hi in zip(joint_names, low, high, strict=True) if not lo < hi]
            raise InputError(f"joint limits: joint_position_min >= joint_position_max for joints {bad}")
        if on_violation not in ON_VIOLATION:
            raise InputError(f"parameter 'limit_violation': {on_violation!r}; expected one of {list(ON_VIOLATION)}")
        if max_step < 0:
            raise InputError(f"parameter 'max_joint_step': {max_step}; expected >= 0 (0 = off)")
        return cls(low, high, array("joint_velocity_max", velocity_max, True),
                   array("joint_acceleration_max", acceleration_max, True), float(max_step), on_violation)

    @classmethod
    def fr3(cls, on_violation: str = "clamp", max_step: float = 0.0) -> JointLimits:
        """The FR3's published limits (module docstring)."""
        return cls.from_parameters(FR3_JOINT_NAMES, position_min=FR3_POSITION_MIN, position_max=FR3_POSITION_MAX,
                                   velocity_max=FR3_VELOCITY_MAX, acceleration_max=FR3_ACCELERATION_MAX,
                                   max_step=max_step, on_violation=on_violation)

    def clip_positions(self, positions: np.ndarray) -> np.ndarray:
        """``positions`` clipped into the position box."""
        low = -np.inf if self.position_min is None else self.position_min
        high = np.inf if self.position_max is None else self.position_max
        return np.clip(positions, low, high)


@dataclass
class LimitReport:
    """What the limits did to one chunk: values changed per kind (clamp) or why it was refused (reject)."""

    position: int = 0
    velocity: int = 0
    acceleration: int = 0
    step: int = 0
    rejected: str = ""
    details: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Values changed (clamp) or found beyond a limit (reject)."""
        return self.position + self.velocity + self.acceleration + self.step


def apply_limits(targets: np.ndarray, times: np.ndarray, start_position: np.ndarray, start_velocity: np.ndarray,
                 start_time: float, measured: np.ndarray | None, limits: JointLimits,
                 acceleration_margin: float = 0.5, velocity_margin: float = 1.0) -> tuple[np.ndarray, LimitReport]:
    """Limit ``targets [N, J]`` at node times ``times [N]``, walking from ``(start_time, start_position,
    start_velocity)`` (the commanded state the controller will interpolate from).

    Velocity and acceleration are limited on the finite differences of the targets; the cubic through the
    limited targets can overshoot a finite-difference acceleration (and velocity), so the walk uses
    ``acceleration_margin`` (``velocity_margin``) of the limit. ``max_step`` bounds each change between
    consecutive targets and the first target's distance from ``measured``.

    Returns:
        ``(positions [N, J], report)``; with ``on_violation="reject"`` the positions are the inputs and
        ``report.rejected`` says why when anything is beyond a limit.

    Raises:
        InputError: non-finite targets or measured joints, or measured joints outside the position limits.

    """
    targets = np.asarray(targets, dtype=np.float64)
    if not np.all(np.isfinite(targets)):
        rows, cols = np.nonzero(~np.isfinite(targets))
        raise InputError(f"joint targets: non-finite value at row {int(rows[0])}, joint {int(cols[0])}")
    report = LimitReport()
    if measured is not None:
        measured = np.asarray(measured, dtype=np.float64)
        if not np.all(np.isfinite(measured)):
            raise InputError("measured joints: non-finite values; no trajectory is commanded")
        outside = np.abs(limits.clip_positions(measured) - measured) > _SLACK
        if outside.any():
            raise InputError(f"measured joints {np.flatnonzero(outside).tolist()} are outside joint_position_min/max "
                             f"({measured[outside].round(4).tolist()}); no trajectory is commanded")
    reject = limits.on_violation == "reject"
    out = limits.clip_positions(targets)
    report.position = int(np.count_nonzero(out != targets))
    if reject and report.position:
        report.rejected = f"{report.position} target values outside joint_position_min/max"
        return targets, report
    previous_p = np.asarray(start_position, dtype=np.float64).copy()
    previous_v = np.asarray(start_velocity, dtype=np.float64).copy()
    previous_t = float(start_time)
    vmax = None if limits.velocity_max is None else limits.velocity_max * velocity_margin
    amax = None if limits.acceleration_max is None else limits.acceleration_max * acceleration_margin
    for k in range(out.shape[0]):
        h = float(times[k]) - previous_t
        if h <= 0:
            raise InputError(f"joint targets: point {k} at {times[k]:.4f} s is not after {previous_t:.4f} s")
        row = out[k]
        step = row - previous_p
        if limits.max_step > 0:
            reference = measured if (k == 0 and measured is not None) else previous_p
            step_bound = limits.max_step
            delta = row - reference
            over = np.abs(delta) > step_bound + 1e-12
            if over.any():
                report.step += int(np.count_nonzero(over))
                if reject:
                    report.rejected = f"point {k} moves {np.abs(delta).max():.4f} rad > max_joint_step {step_bound}"
                    return targets, report
                row = reference + np.clip(delta, -step_bound, step_bound)
                step = row - previous_p
        velocity = step / h
        if vmax is not None:
            over = np.abs(velocity) > vmax + 1e-9
            if over.any():
                report.velocity += int(np.count_nonzero(over))
                if reject:
                    report.rejected = f"point {k} needs {np.abs(velocity).max():.3f} rad/s > joint_velocity_max"
                    return targets, report
                velocity = np.clip(velocity, -vmax, vmax)
        if amax is not None and (limits.position_min is not None or limits.position_max is not None):
            # towards a position limit, no faster than the arm can still stop before it (v^2 <= 2 a d)
            room_up = np.inf if limits.position_max is None else np.maximum(limits.position_max - previous_p, 0.0)
            room_down = np.inf if limits.position_min is None else np.maximum(previous_p - limits.position_min, 0.0)
            braking = np.where(velocity > 0, np.sqrt(2.0 * amax * room_up), np.sqrt(2.0 * amax * room_down))
            over = np.abs(velocity) > braking + 1e-9
            if over.any():
                report.position += int(np.count_nonzero(over))
                if reject:
                    report.rejected = f"point {k} approaches a position limit faster than the arm can stop"
                    return targets, report
                velocity = np.clip(velocity, -braking, braking)
        if amax is not None:
            # the finite-difference velocity is the segment's mean; its change over ~h/2 + previous h/2 ~ h
            low, high = previous_v - amax * h, previous_v + amax * h
            over = (velocity < low - 1e-9) | (velocity > high + 1e-9)
            if over.any():
                report.acceleration += int(np.count_nonzero(over))
                if reject:
                    report.rejected = f"point {k} needs more than joint_acceleration_max (x{acceleration_margin})"
                    return targets, report
                velocity = np.clip(velocity, low, high)
        row = limits.clip_positions(previous_p + velocity * h)
        out[k] = row
        previous_p, previous_v, previous_t = row, velocity, float(times[k])
    return out, report
