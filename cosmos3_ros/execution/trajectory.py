"""Timed joint trajectories with positions and velocities, and the cubic (Hermite) interpolation that
``joint_trajectory_controller`` applies between points that carry both.

A ``TimedTrajectory`` is what one ``trajectory_msgs/JointTrajectory`` holds: a start stamp and points at
``time_from_start``. Velocities come from a clamped cubic spline through the points (C2 inside, a given start
velocity, zero end velocity), so they are consistent with the point spacing ``dt``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class TimedTrajectory:
    """Points of one trajectory.

    Attributes:
        stamp_s: header stamp (s, node clock): the time ``time_from_start`` counts from.
        times_s: ``[N]`` time_from_start of each point (s), strictly increasing.
        positions: ``[N, J]`` joint positions (rad).
        velocities: ``[N, J]`` joint velocities (rad/s), or None (the controller then interpolates linearly).

    """

    stamp_s: float
    times_s: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None

    @property
    def absolute_times(self) -> np.ndarray:
        """``[N]`` point times on the node clock (s)."""
        return self.stamp_s + self.times_s

    @property
    def end_s(self) -> float:
        """Node-clock time of the last point."""
        return float(self.stamp_s + self.times_s[-1])

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity ``[J]`` at node time ``t``: held at the first / last point outside the span."""
        times = self.absolute_times
        if t <= times[0]:
            return self.positions[0].copy(), np.zeros(self.positions.shape[1])
        if t >= times[-1]:
            return self.positions[-1].copy(), np.zeros(self.positions.shape[1])
        k = int(np.searchsorted(times, t, side="right")) - 1
        t0, t1 = float(times[k]), float(times[k + 1])
        if self.velocities is None:
            s = (t - t0) / (t1 - t0)
            return (1 - s) * self.positions[k] + s * self.positions[k + 1], (
                self.positions[k + 1] - self.positions[k]) / (t1 - t0)
        return hermite(t0, self.positions[k], self.velocities[k], t1, self.positions[k + 1], self.velocities[k + 1], t)


def hermite(t0: float, p0: np.ndarray, v0: np.ndarray, t1: float, p1: np.ndarray, v1: np.ndarray,
            t: float) -> tuple[np.ndarray, np.ndarray]:
    """Cubic Hermite segment from ``(t0, p0, v0)`` to ``(t1, p1, v1)`` evaluated at ``t``: (position, velocity)."""
    span = t1 - t0
    s = (t - t0) / span
    s2, s3 = s * s, s * s * s
    position = (2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * span * v0 + (-2 * s3 + 3 * s2) * p1 \
        + (s3 - s2) * span * v1
    velocity = ((6 * s2 - 6 * s) * p0 + (6 * s - 6 * s2) * p1) / span + (3 * s2 - 4 * s + 1) * v0 \
        + (3 * s2 - 2 * s) * v1
    return position, velocity


def spline_velocities(times: np.ndarray, positions: np.ndarray, start_velocity: np.ndarray | None = None
                      ) -> np.ndarray:
    """Knot velocities ``[N, J]`` of the clamped cubic spline through ``positions [N, J]`` at ``times [N]``.

    Continuous acceleration at interior knots; velocity ``start_velocity`` (zero if None) at the first knot and
    zero at the last (the controller stops there if no newer trajectory replaces this one).

    Raises:
        InputError: times not strictly increasing or shapes that do not match.

    """
    times = np.asarray(times, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[0] != times.shape[0]:
        raise InputError(f"spline: positions {list(positions.shape)} do not match times {list(times.shape)}")
    spans = np.diff(times)
    if np.any(spans <= 0):
        raise InputError(f"spline: point times must increase strictly; got spans {spans.round(6).tolist()}")
    n, joints = positions.shape
    velocities = np.zeros((n, joints))
    if start_velocity is not None:
        velocities[0] = start_velocity
    if n <= 2:
        return velocities
    # Interior knots i = 1..n-2: (1/h0) v_{i-1} + 2 (1/h0 + 1/h1) v_i + (1/h1) v_{i+1}
    #   = 3 ((p_i - p_{i-1}) / h0^2 + (p_{i+1} - p_i) / h1^2), with h0 = t_i - t_{i-1}, h1 = t_{i+1} - t_i.
    m = n - 2
    system = np.zeros((m, m))
    rhs = np.zeros((m, joints))
    for row in range(m):
        i = row + 1
        h0, h1 = spans[i - 1], spans[i]
        system[row, row] = 2.0 * (1.0 / h0 + 1.0 / h1)
        rhs[row] = 3.0 * ((positions[i] - positions[i - 1]) / h0**2 + (positions[i + 1] - positions[i]) / h1**2)
        if row > 0:
            system[row, row - 1] = 1.0 / h0
        else:
            rhs[row] -= velocities[0] / h0
        if row < m - 1:
            system[row, row + 1] = 1.0 / h1
        # the last knot's velocity is zero: nothing to move to the right-hand side
    velocities[1:-1] = np.linalg.solve(system, rhs)
    return velocities


def _velocity_quadratics(times: np.ndarray, positions: np.ndarray, velocities: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per cubic segment ``k``: ``(span [K, 1] s, a, b, c [K, J])`` with velocity ``a s^2 + b s + c`` (rad/s) at
    the segment fraction ``s`` in [0, 1], and acceleration ``(2 a s + b) / span``.
    """
    times = np.asarray(times, dtype=np.float64)
    v0, v1 = velocities[:-1], velocities[1:]
    span = np.diff(times)[:, None]
    delta = (positions[:-1] - positions[1:]) / span
    return span, 6 * delta + 3 * v0 + 3 * v1, -6 * delta - 4 * v0 - 2 * v1, v0


def max_abs_acceleration(times: np.ndarray, positions: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """``[J]`` largest |acceleration| of the piecewise-cubic trajectory (it is linear per segment: ends suffice)."""
    span, a, b, _ = _velocity_quadratics(times, positions, velocities)
    ends = np.maximum(np.abs(b), np.abs(2 * a + b)) / span
    return ends.max(axis=0, initial=0.0)


def position_and_velocity_extremes(times: np.ndarray, positions: np.ndarray, velocities: np.ndarray
                                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lowest [J], highest [J], largest |velocity| [J])`` of the piecewise-cubic trajectory between its knots.

    A cubic through points inside the limits can swing beyond them between points. Per segment the velocity is
    a quadratic in the segment fraction ``s``: positions peak where it is zero, and its own peak is where the
    (linear) acceleration is zero; both are checked besides the ends.
    """
    p0, p1 = positions[:-1], positions[1:]
    v0, v1 = velocities[:-1], velocities[1:]
    span, a, b, c = _velocity_quadratics(times, positions, velocities)
    lowest = positions.min(axis=0)
    highest = positions.max(axis=0)
    fastest = np.abs(velocities).max(axis=0)

    def position_at(s: np.ndarray) -> np.ndarray:
        s2, s3 = s * s, s * s * s
        return (2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * span * v0 + (-2 * s3 + 3 * s2) * p1 \
            + (s3 - s2) * span * v1

    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.where(a != 0, -b / (2 * a), np.nan)
        inside = (vertex > 0) & (vertex < 1)
        peak_v = np.abs(a * vertex**2 + b * vertex + c)
        fastest = np.maximum(fastest, np.where(inside, peak_v, 0.0).max(axis=0))
        disc = b * b - 4 * a * c
        root = np.sqrt(np.where(disc >= 0, disc, np.nan))
        for s in ((-b + root) / (2 * a), (-b - root) / (2 * a), np.where(a == 0, -c / b, np.nan)):
            ok = (s > 0) & (s < 1)
            at = position_at(np.where(ok, s, 0.0))
            lowest = np.minimum(lowest, np.where(ok, at, np.inf).min(axis=0))
            highest = np.maximum(highest, np.where(ok, at, -np.inf).max(axis=0))
    return lowest, highest, fastest


def monotone_near_limits(times: np.ndarray, positions: np.ndarray, velocities: np.ndarray,
                         lower: np.ndarray | None, upper: np.ndarray | None, near: float = 0.05) -> np.ndarray:
    """Knot velocities ``[N, J]`` made monotone (Fritsch-Carlson) on segments within ``near`` rad of a limit.

    A cubic segment stays between its two end positions when each end velocity has the sign of the segment's
    mean slope and at most three times its size (zero on a flat segment). Applied only next to a position
    limit, where a swing between points would leave the limits; elsewhere the C2 velocities stay. Velocities
    only shrink, so the neighbouring segments' swings do too. The first knot (the running command) is kept.
    """
    v = np.array(velocities, dtype=np.float64, copy=True)
    for k in range(len(times) - 1):
        p0, p1 = positions[k], positions[k + 1]
        close = np.zeros(p0.shape, dtype=bool)
        if upper is not None:
            close |= np.maximum(p0, p1) > upper - near
        if lower is not None:
            close |= np.minimum(p0, p1) < lower + near
        if not close.any():
            continue
        slope = (p1 - p0) / (times[k + 1] - times[k])
        for index in (k, k + 1):
            if index == 0:
                continue
            flat = close & (slope == 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(slope != 0, v[index] / slope, 0.0)
            v[index] = np.where(flat | (close & (ratio < 0)), 0.0, v[index])
            v[index] = np.where(close & ~flat & (ratio > 3), 3 * slope, v[index])
    return v
