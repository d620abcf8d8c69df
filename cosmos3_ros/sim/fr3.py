"""A position-controlled FR3 under ``joint_trajectory_controller``: the arm tracks the controller's command
through a stiff second-order loop whose velocity and acceleration saturate at the FR3's limits (and whose
positions stop at its joint limits), a Franka Hand moving its fingers at a fixed speed, and three cameras
rendered from the joint state.

It also measures what the execution layer is judged by: commands beyond the limits, points already past when
received, hand-over jumps and jerks, starvation and latency (``SimMetrics``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..execution.limits import JointLimits
from ..execution.trajectory import TimedTrajectory
from .controller import TrajectoryFollower

FR3_HOME = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
FINGER_JOINTS = ("fr3_finger_joint1", "fr3_finger_joint2")
HAND_MAX_WIDTH = 0.08  # m, both fingers open (0.04 each)
CAMERAS = ("wrist", "exterior_1", "exterior_2")


@dataclass
class HandOver:
    """One trajectory replacement seen by the controller."""

    time_s: float
    jump_rad: float
    jerk: float
    between_chunks: bool = True  # False when either trajectory is a single hold point


@dataclass
class SimMetrics:
    """What the simulator measured while running."""

    limit_violations: int = 0
    stale_points: int = 0
    trajectories: int = 0
    rejected_past: int = 0
    handovers: list[HandOver] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    executed_points: int = 0
    gripper_commands: int = 0
    gripper_toggles: int = 0
    # per accepted trajectory: its first future point's time minus the receipt time (the controller's first
    # segment; a trajectory that arrives later than planned has a shorter one)
    receipt_leads_s: list[float] = field(default_factory=list)
    violation_times_s: list[float] = field(default_factory=list)


class SimulatedFR3:
    """FR3 arm + hand; ``step(t)`` advances the physics to node time ``t``.

    Args:
        limits: arm limits the physics obeys and the command is checked against (FR3 by default).
        initial_position: joints at start (rad).
        bandwidth_hz: tracking bandwidth of the position loop.
        gripper_speed: finger speed (m/s, each finger).
        physics_dt: integration step (s).
        control_dt: the policy's control step, used for hand-over jump/jerk (s).
        image_hw: rendered camera size.
        open_loop_control: the controller's parameter of that name: a new trajectory starts from the last
            commanded state (True) or from the measured one (False, the controller's default; a tracking lag
            then becomes a velocity step in the command).

    """

    def __init__(self, limits: JointLimits | None = None, initial_position: tuple[float, ...] = FR3_HOME,
                 bandwidth_hz: float = 8.0, gripper_speed: float = 0.05, physics_dt: float = 0.001,
                 control_dt: float = 1.0 / 15.0, image_hw: tuple[int, int] = (96, 128),
                 open_loop_control: bool = True) -> None:
        self.limits = limits if limits is not None else JointLimits.fr3()
        self.q = np.asarray(initial_position, dtype=np.float64).copy()
        self.qd = np.zeros_like(self.q)
        self.follower = TrajectoryFollower(self.q)
        self.omega = 2.0 * np.pi * bandwidth_hz
        self.physics_dt = physics_dt
        self.control_dt = control_dt
        self.gripper_speed = gripper_speed
        self.finger = HAND_MAX_WIDTH / 2  # open
        self.finger_target = self.finger
        self.gripper_closed_cmd: bool | None = None
        self.time_s = 0.0
        self.image_hw = image_hw
        self.open_loop_control = open_loop_control
        self.metrics = SimMetrics()
        self._last_cmd_v: np.ndarray | None = None
        self._counted_until = -np.inf
        self._anchor_points = 0  # leading points of the running trajectory that repeat the previous command
        self._pending_first: tuple[ReceivedKey, float, float] | None = None

    # ----- commands ----------------------------------------------------------------------------------------

    def receive_trajectory(self, trajectory: TimedTrajectory | None, now: float) -> bool:
        """Hand a trajectory to the controller at ``now``; returns whether it was accepted."""
        self.step(now)
        old = self.follower.current
        before = [self.follower.sample(now + k * self.control_dt)[0] for k in (-1, 0)]
        future = None if trajectory is None or len(trajectory.times_s) == 0 else (
            trajectory.absolute_times if trajectory.stamp_s != 0.0 else now + trajectory.times_s)
        # Where the jump is measured: the first future point, or the second one when the first repeats the
        # running command (1 urad): an execution layer may start its trajectory with an anchor point a few ms
        # ahead that repeats the running command (jump 0 by construction); the chunk's first point follows it.
        first_index, old_at_first = None, None
        if future is not None:
            for index in np.flatnonzero(future >= now)[:2]:
                first_index, old_at_first = int(index), self.follower.sample(float(future[index]))[0]
                if np.max(np.abs(trajectory.positions[index] - old_at_first)) > 1e-6:
                    break
        self._count_executed(now)
        start_p, start_v = self.follower.sample(now) if self.open_loop_control else (self.q, self.qd)
        accepted = self.follower.receive(trajectory, now, start_p, start_v)
        self.metrics.trajectories += 1
        if accepted is None:
            self.metrics.rejected_past = self.follower.rejected_past
            return trajectory is None or len(trajectory.times_s) == 0
        self.metrics.stale_points += accepted.stale_points
        if old is not None:
            after = [self.follower.sample(now + k * self.control_dt)[0] for k in (1, 2)]
            # the change of target across the hand-over: the new trajectory's first point against where the old
            # one would have been commanded at that time (what the running motion itself explains)
            jump = 0.0 if first_index is None else float(np.max(np.abs(
                accepted.trajectory.positions[first_index] - old_at_first)))
            third = (after[1] - 3 * after[0] + 3 * before[1] - before[0]) / self.control_dt**3
            chunks = len(old.trajectory.times_s) > 1 and len(accepted.trajectory.times_s) > 1
            self.metrics.handovers.append(HandOver(now, jump, float(np.max(np.abs(third))), chunks))
        times = accepted.trajectory.absolute_times
        first = times[times >= now]
        if first.size:
            self.metrics.receipt_leads_s.append(float(first[0]) - now)
        # latency to the first executed point of the new motion (past an anchor that repeats the running command)
        self._pending_first = None if first_index is None else (
            id(accepted), float(times[first_index]), accepted.trajectory.stamp_s)
        # an anchor point (the first future one, skipped above) is no point of the chunk: not counted as executed
        self._anchor_points = int(np.count_nonzero(times < times[first_index])) if first_index is not None else 0
        return True

    def _count_executed(self, until: float) -> None:
        """Add the running trajectory's points whose time passed between the last count (or its receipt) and
        ``until``.
        """
        current = self.follower.current
        if current is not None:
            times = current.trajectory.absolute_times
            since = max(current.received_s, self._counted_until)
            times = times[self._anchor_points:]
            self.metrics.executed_points += int(np.count_nonzero((times >= since) & (times < until)))
        self._counted_until = until

    def finish(self, now: float) -> SimMetrics:
        """Step to ``now`` and count the running trajectory's executed points up to it."""
        self.step(now)
        self._count_executed(now)
        return self.metrics

    def command_gripper(self, closed: bool, now: float) -> None:
        """A gripper command (``GripperCommand`` goal): fingers move to closed (0) or open (0.04 m)."""
        self.step(now)
        if self.gripper_closed_cmd is not None and closed != self.gripper_closed_cmd:
            self.metrics.gripper_toggles += 1
        self.metrics.gripper_commands += 1
        self.gripper_closed_cmd = closed
        self.finger_target = 0.0 if closed else HAND_MAX_WIDTH / 2

    def command_finger(self, position: float, now: float) -> None:
        """A finger position goal (m, each finger), as ``GripperCommand`` carries it."""
        self.command_gripper(position < HAND_MAX_WIDTH / 4, now)
        self.finger_target = float(np.clip(position, 0.0, HAND_MAX_WIDTH / 2))

    # ----- physics -----------------------------------------------------------------------------------------

    def step(self, t: float) -> None:
        """Integrate to node time ``t`` (no-op if ``t`` is not ahead)."""
        limits = self.limits
        vmax = limits.velocity_max if limits.velocity_max is not None else np.inf
        amax = limits.acceleration_max if limits.acceleration_max is not None else np.inf
        while self.time_s + self.physics_dt <= t + 1e-12:
            self.time_s += self.physics_dt
            now = self.time_s
            cmd_p, cmd_v = self.follower.sample(now)
            self._check_command(cmd_p, cmd_v)
            acc = self.omega**2 * (cmd_p - self.q) + 2.0 * self.omega * (cmd_v - self.qd)
            acc = np.clip(acc, -amax, amax)
            self.qd = np.clip(self.qd + acc * self.physics_dt, -vmax, vmax)
            self.q = self.q + self.qd * self.physics_dt
            clipped = limits.clip_positions(self.q)
            self.qd[clipped != self.q] = 0.0
            self.q = clipped
            step = self.gripper_speed * self.physics_dt
            self.finger += float(np.clip(self.finger_target - self.finger, -step, step))
            pending = self._pending_first
            current = self.follower.current
            if pending is not None and current is not None and id(current) == pending[0] and now >= pending[1]:
                self.metrics.latencies_s.append(pending[1] - pending[2])
                self._pending_first = None

    def _check_command(self, cmd_p: np.ndarray, cmd_v: np.ndarray) -> None:
        """Count physics steps whose command is beyond a limit (1% tolerance on rates, 1 mrad on positions)."""
        limits = self.limits
        bad = False
        if limits.position_min is not None and limits.position_max is not None:
            bad |= bool(np.any(cmd_p < limits.position_min - 1e-3) or np.any(cmd_p > limits.position_max + 1e-3))
        if limits.velocity_max is not None:
            bad |= bool(np.any(np.abs(cmd_v) > limits.velocity_max * 1.01))
        if limits.acceleration_max is not None and self._last_cmd_v is not None:
            acc = (cmd_v - self._last_cmd_v) / self.physics_dt
            bad |= bool(np.any(np.abs(acc) > limits.acceleration_max * 1.01))
        self._last_cmd_v = cmd_v
        if bad:
            self.metrics.limit_violations += 1
            self.metrics.violation_times_s.append(self.time_s)

    # ----- observations ------------------------------------------------------------------------------------

    def gripper_closure(self) -> float:
        """0 open .. 1 closed (the model's convention)."""
        return float(1.0 - self.finger / (HAND_MAX_WIDTH / 2))

    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(names, positions, velocities)`` of the 7 arm joints and both fingers."""
        names = [f"fr3_joint{i}" for i in range(1, 8)] + list(FINGER_JOINTS)
        positions = np.concatenate([self.q, [self.finger, self.finger]])
        velocities = np.concatenate([self.qd, [0.0, 0.0]])
        return names, positions, velocities

    def render(self, camera: str) -> np.ndarray:
        """``uint8 [H, W, 3]`` view of the arm from ``camera`` (see ``render_view``)."""
        return render_view(camera, self.q, self.finger, self.image_hw)


ReceivedKey = int


def _disc(image: np.ndarray, centre: tuple[float, float], radius: float, colour: tuple[int, int, int]) -> None:
    h, w, _ = image.shape
    ys, xs = np.ogrid[:h, :w]
    mask = (ys - centre[0]) ** 2 + (xs - centre[1]) ** 2 <= radius**2
    image[mask] = colour


def render_view(camera: str, q: np.ndarray, finger: float, image_hw: tuple[int, int]) -> np.ndarray:
    """Simple shapes that move with the arm: exterior views draw a planar projection of the chain (a disc per
    joint, the two exterior cameras looking from opposite sides); the wrist view shows a table pattern that
    shifts and turns with the last joints and two finger bars whose gap is the gripper width.
    """
    h, w = image_hw
    image = np.full((h, w, 3), (60, 70, 80), dtype=np.uint8)
    if camera == "wrist":
        shift = int((q[5] - FR3_HOME[5]) * h / 2) % h
        turn = int((q[6] - FR3_HOME[6]) * w / 3) % w
        rows = (np.arange(h)[:, None] + shift) // 12 % 2
        cols = (np.arange(w)[None, :] + turn) // 12 % 2
        image[(rows ^ cols) == 1] = (150, 120, 90)
        gap = int(finger / (HAND_MAX_WIDTH / 2) * w * 0.3)
        bar = max(2, w // 16)
        left, right = w // 2 - gap - bar, w // 2 + gap
        image[h * 2 // 3:, max(left, 0):max(left + bar, 0)] = (220, 220, 220)
        image[h * 2 // 3:, min(right, w):min(right + bar, w)] = (220, 220, 220)
        return image
    sign = 1.0 if camera == "exterior_1" else -1.0
    links = (0.33, 0.32, 0.38, 0.1, 0.1)
    angles = np.cumsum([q[1], q[3] + np.pi / 2, q[5] - np.pi / 2, q[6], q[4]])
    x, y = 0.0, 0.0
    scale = min(h, w) / 2.2
    origin = (h * 0.9, w / 2 + sign * q[0] * w / 8)
    colours = ((230, 80, 60), (80, 200, 90), (70, 110, 230), (230, 210, 60), (200, 90, 200), (240, 240, 240))
    _disc(image, origin, max(3, h // 16), colours[0])
    for k, (length, angle) in enumerate(zip(links, angles, strict=True)):
        x += sign * length * np.sin(angle)
        y += length * np.cos(angle)
        _disc(image, (origin[0] - y * scale, origin[1] + x * scale), max(2, h // 20), colours[k + 1])
    return image
