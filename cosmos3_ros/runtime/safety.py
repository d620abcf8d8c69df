"""What may reach the robot: non-finite rejection, joint-limit clamps, a per-step rate limit, dry-run gating.

The ``ActionChunk`` always carries the model's prediction; only the ``JointTrajectory`` (a robot command) goes
through this filter, and only in policy mode with ``dry_run`` off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

# Measured joints may sit a hair outside a limit (encoder noise at a hard stop).
_LIMIT_SLACK = 1e-3


@dataclass(frozen=True)
class JointSafetyLimits:
    """Joint limits (rad, ``[J]`` each, None = no clamp) and the largest change per step (rad, 0 = off)."""

    position_min: np.ndarray | None
    position_max: np.ndarray | None
    max_step: float

    @classmethod
    def from_parameters(
        cls, joint_names: Sequence[str], position_min: Sequence[float], position_max: Sequence[float], max_step: float
    ) -> JointSafetyLimits:
        """Validate parameter values: limits empty or one per joint, min < max.

        Raises:
            InputError: naming the parameter and what was expected.

        """
        count = len(joint_names)
        arrays: list[np.ndarray | None] = []
        for name, values in (("joint_position_min", position_min), ("joint_position_max", position_max)):
            if len(values) == 0:
                arrays.append(None)
            elif len(values) != count:
                raise InputError(
                    f"parameter {name!r}: {len(values)} values; expected {count} (one per joint_names entry)"
                )
            else:
                arrays.append(np.asarray(values, dtype=np.float64))
        low, high = arrays
        if low is not None and high is not None and not np.all(low < high):
            bad = [str(j) for j, lo, hi in zip(joint_names, low, high, strict=True) if not lo < hi]
            raise InputError(f"joint limits: joint_position_min >= joint_position_max for joints {bad}")
        return cls(low, high, float(max_step))


@dataclass(frozen=True)
class SafeJointTargets:
    """Filtered targets ``[N, J]`` and how many values each stage changed."""

    positions: np.ndarray
    clamped_to_limits: int
    rate_limited: int


def require_finite(actions: np.ndarray, what: str) -> None:
    """Raise InputError naming the first rows / columns with NaN or inf."""
    finite = np.isfinite(actions)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        raise InputError(
            f"{what}: {int((~finite).sum())} non-finite values (first at row {int(rows[0])}, column {int(cols[0])})"
        )


def _clamp(positions: np.ndarray, limits: JointSafetyLimits) -> np.ndarray:
    low = -np.inf if limits.position_min is None else limits.position_min
    high = np.inf if limits.position_max is None else limits.position_max
    return np.clip(positions, low, high)


def make_safe_joint_targets(
    targets: np.ndarray, current: np.ndarray | None, limits: JointSafetyLimits
) -> SafeJointTargets:
    """Clamp ``targets [N, J]`` into the joint limits, then limit each step to ``max_step`` starting at ``current``.

    The rate limit walks the chunk in order, so a far first target becomes a ramp rather than a jump.

    Raises:
        InputError: non-finite targets or current joints, or current joints outside the limits (clamping would
            then command a jump to the limit).

    """
    require_finite(targets, "joint targets")
    positions = np.asarray(targets, dtype=np.float64)
    if current is not None:
        current = np.asarray(current, dtype=np.float64)
        require_finite(current[None, :], "current joints")
        outside = np.abs(_clamp(current, limits) - current) > _LIMIT_SLACK
        if outside.any():
            raise InputError(
                f"current joints {np.flatnonzero(outside).tolist()} are outside joint_position_min/max "
                f"({current[outside].round(4).tolist()}); no trajectory is commanded"
            )
    clamped = _clamp(positions, limits)
    clamped_count = int(np.count_nonzero(clamped != positions))
    rate_limited = 0
    if limits.max_step > 0 and current is not None:
        limited = np.empty_like(clamped)
        previous = current
        for k, row in enumerate(clamped):
            limited[k] = previous + np.clip(row - previous, -limits.max_step, limits.max_step)
            previous = limited[k]
        rate_limited = int(np.count_nonzero(~np.isclose(limited, clamped, rtol=0.0, atol=1e-12)))
        # A walk from a point inside the limits towards points inside them stays inside (the box is convex).
        clamped = limited
    return SafeJointTargets(clamped, clamped_count, rate_limited)


def trajectory_allowed(*, dry_run: bool, mode: str, joint_space: bool) -> tuple[bool, str]:
    """Whether a JointTrajectory may be published, and why not."""
    if dry_run:
        return False, "dry_run is true"
    if mode != "policy":
        return False, f"mode {mode!r} describes given or past actions, not commands"
    if not joint_space:
        return False, "the profile's actions are not joint positions"
    return True, ""
