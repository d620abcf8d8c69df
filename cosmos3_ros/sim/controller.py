"""What ``joint_trajectory_controller`` (ros2_controllers, Jazzy) does with a ``JointTrajectory`` on its topic,
re-implemented for the simulator:

* the header stamp is the trajectory's start time (0 = when received);
* a trajectory whose last point is already past is rejected; earlier points that are past are skipped (the
  controller samples straight into the middle);
* before the first point it interpolates from the state at receipt (its measured position and velocity) to the
  first point;
* points with velocities -> cubic (Hermite) segments; positions only -> linear;
* a new trajectory replaces the running one wholesale; an empty one stops and holds the current position;
* after the last point it holds the last point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..execution.trajectory import TimedTrajectory, hermite


@dataclass
class ReceivedTrajectory:
    """A trajectory as the controller holds it, with the state it started from."""

    trajectory: TimedTrajectory
    received_s: float
    before_position: np.ndarray
    before_velocity: np.ndarray
    stale_points: int


class TrajectoryFollower:
    """The controller's interpolation (module docstring); ``sample(t)`` gives the commanded position/velocity."""

    def __init__(self, initial_position: np.ndarray) -> None:
        self.current: ReceivedTrajectory | None = None
        self._hold = np.asarray(initial_position, dtype=np.float64).copy()
        self.rejected_past = 0
        self.received = 0

    def receive(self, trajectory: TimedTrajectory | None, now: float, position: np.ndarray,
                velocity: np.ndarray) -> ReceivedTrajectory | None:
        """Take a new trajectory at ``now`` (``None`` or no points = stop and hold ``position``).

        Returns the accepted trajectory, or None when it was empty or rejected (entirely in the past).
        """
        self.received += 1
        if trajectory is None or len(trajectory.times_s) == 0:
            self.current = None
            self._hold = np.asarray(position, dtype=np.float64).copy()
            return None
        if trajectory.stamp_s == 0.0:
            trajectory = TimedTrajectory(now, trajectory.times_s, trajectory.positions, trajectory.velocities)
        times = trajectory.absolute_times
        if times[-1] < now:
            self.rejected_past += 1
            return None
        stale = int(np.count_nonzero(times < now))
        self.current = ReceivedTrajectory(trajectory, now, np.asarray(position, dtype=np.float64).copy(),
                                          np.asarray(velocity, dtype=np.float64).copy(), stale)
        return self.current

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Commanded (position, velocity) ``[J]`` at ``t``."""
        current = self.current
        if current is None:
            return self._hold.copy(), np.zeros_like(self._hold)
        trajectory = current.trajectory
        first_time = float(trajectory.absolute_times[0])
        if t < first_time:
            if first_time <= current.received_s:  # first point already past at receipt: sample into the middle
                return trajectory.sample(t)
            p1 = trajectory.positions[0]
            if trajectory.velocities is None:
                s = (t - current.received_s) / (first_time - current.received_s)
                return (1 - s) * current.before_position + s * p1, (p1 - current.before_position) / (
                    first_time - current.received_s)
            return hermite(current.received_s, current.before_position, current.before_velocity, first_time, p1,
                           trajectory.velocities[0], t)
        return trajectory.sample(t)

    def end_time(self) -> float:
        """Node time of the running trajectory's last point (-inf when holding)."""
        return -np.inf if self.current is None else self.current.trajectory.end_s
