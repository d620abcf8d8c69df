"""``ChunkExecutor``: streams action chunks to a position-controlled arm.

Per chunk it decides when to capture the next observation (so the next chunk arrives before the running one
has executed ``execution_horizon`` steps, from the measured latency), what state / prefix rows to hand the
model (hand-over options), and turns the chunk into a trajectory: rows already past dropped, the first point
at least ``min_lead_s`` in the future, a hand-over from the running trajectory, limits, positions and
velocities from a cubic through the commanded state now, zero velocity at the end. Every row of the chunk is
kept (not only ``execution_horizon`` of them) so the controller always has a valid target if the next chunk is
late. Holds (e-stop, dead-man, stale observations, model errors, shutdown) replace the running trajectory
with one point at the measured position.

Not thread-safe on its own: the node calls it under one lock. Times are node-clock seconds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .gripper import GripperCommand, GripperCommander
from .handover import blend_into, parse_handover, running_rows, steps_covering
from .limits import JointLimits, LimitReport, apply_limits
from .safety import HOLD_REASONS, SafetySupervisor
from .trajectory import (
    TimedTrajectory,
    max_abs_acceleration,
    monotone_near_limits,
    position_and_velocity_extremes,
    spline_velocities,
)


@dataclass(frozen=True)
class ExecutionSettings:
    """Streaming parameters.

    Attributes:
        dt_s: seconds between chunk rows (1 / fps).
        arm_columns: chunk columns that are joint positions, in joint order.
        gripper_column: chunk column of the gripper (0 open .. 1 closed), or None.
        execution_horizon: steps of each chunk executed before the next one takes over.
        handover: ``none`` or ``+``-joined ``blend`` / ``rollforward`` / ``prefix``.
        blend_steps: K, rows cross-faded by ``blend``.
        expected_latency_s: model latency assumed until measured (observation stamp -> chunk available).
        latency_margin_s: added to the latency estimate when scheduling the next capture.
        min_lead_s: the first published point lies at least this far in the future.
        hold_time_s: time_from_start of the single hold point.
        max_prefix_steps: cap on prefix rows (the model needs free rows after them).
        use_velocities: publish velocities (cubic in the controller); False = positions only (linear).

    """

    dt_s: float
    arm_columns: tuple[int, ...]
    gripper_column: int | None = None
    execution_horizon: int = 8
    handover: str = "prefix+blend"
    blend_steps: int = 4
    expected_latency_s: float = 0.7
    latency_margin_s: float = 0.05
    min_lead_s: float = 0.1
    hold_time_s: float = 0.25
    max_prefix_steps: int = 24
    use_velocities: bool = True

    def validate(self) -> frozenset[str]:
        """The parsed hand-over options.

        Raises:
            InputError: naming the bad setting.

        """
        if not self.dt_s > 0:
            raise InputError(f"execution: dt {self.dt_s}; expected > 0")
        if self.execution_horizon < 1:
            raise InputError(f"parameter 'execution_horizon': {self.execution_horizon}; expected >= 1 step")
        if self.blend_steps < 1:
            raise InputError(f"parameter 'blend_steps': {self.blend_steps}; expected >= 1")
        for name in ("expected_latency_s", "latency_margin_s", "min_lead_s"):
            if getattr(self, name) < 0:
                raise InputError(f"execution setting {name}: {getattr(self, name)}; expected >= 0")
        if self.hold_time_s <= 0:
            raise InputError(f"parameter 'hold_time': {self.hold_time_s}; expected > 0 s")
        return parse_handover(self.handover)


@dataclass(frozen=True)
class RequestPlan:
    """What to ask the model for one observation, and how to time its answer.

    Attributes:
        obs_time_s: stamp of the observation (its camera frames).
        base_time_s: time of the state row; chunk row k applies at ``base_time_s + (k + 1) dt``.
        state: ``[D]`` state row to hand the model (arm joints measured or rolled forward, gripper measured).
        prefix: ``[P, D]`` clean action rows after the state row (``prefix``), or None.
        epoch: hold counter when planned; a chunk planned before a hold is discarded.
        latency_estimate_s: the estimate used.

    """

    obs_time_s: float
    base_time_s: float
    state: np.ndarray
    prefix: np.ndarray | None
    epoch: int
    latency_estimate_s: float


@dataclass
class ExecutionResult:
    """What ``on_chunk`` / ``hold`` decided: the trajectory to publish (or None, with the reason)."""

    trajectory: TimedTrajectory | None
    reason: str = ""
    dropped_rows: int = 0
    limits: LimitReport = field(default_factory=LimitReport)
    hold: str = ""


class ChunkExecutor:
    """Chunk streaming, hand-over, limits, gripper and holds (see module docstring).

    Args:
        settings: streaming parameters.
        limits: joint limits for commands.
        safety: e-stop / dead-man state (shared with the node's inputs).
        gripper: hysteresis + rate limit for the gripper column, or None (no gripper commands).

    """

    def __init__(self, settings: ExecutionSettings, limits: JointLimits, safety: SafetySupervisor | None = None,
                 gripper: GripperCommander | None = None) -> None:
        self.settings = settings
        self.options = settings.validate()
        self.limits = limits
        self.safety = safety if safety is not None else SafetySupervisor()
        self.gripper = gripper
        # the running trajectory as the controller runs it: the published points preceded by the commanded
        # state at publication (the controller interpolates from its state at receipt to the first point)
        self.active: TimedTrajectory | None = None
        self._previous: TimedTrajectory | None = None
        self.active_gripper: tuple[np.ndarray, np.ndarray] | None = None  # (times [N], values [N])
        self.take_over_s = -math.inf
        self.in_flight: RequestPlan | None = None
        self.holding = ""
        self.epoch = 0
        self._latencies: deque[float] = deque(maxlen=8)
        self.counters: dict[str, int] = {
            "requests": 0, "chunks_received": 0, "chunks_executed": 0, "chunks_discarded": 0, "chunks_rejected": 0,
            "rows_dropped_past": 0, "values_clamped": 0, **{f"holds_{r}": 0 for r in HOLD_REASONS},
        }

    # ----- scheduling --------------------------------------------------------------------------------------

    def latency_estimate(self) -> float:
        """Latency to plan with: the largest of the last measured ones (or the expected one), plus the margin."""
        recent = max(self._latencies) if self._latencies else self.settings.expected_latency_s
        return recent + self.settings.latency_margin_s

    def next_request_time(self) -> float:
        """Node time at which the next observation should be captured (inf while one is in flight)."""
        if self.in_flight is not None:
            return math.inf
        if self.active is None or self.holding:
            return -math.inf
        return self.take_over_s + self.settings.execution_horizon * self.settings.dt_s - self.latency_estimate()

    def should_request(self, now: float) -> bool:
        """Whether to capture an observation now: commands allowed, nothing in flight, and it is time."""
        state = self.safety.state(now)
        return state.allows_commands and now >= self.next_request_time()

    def plan_request(self, now: float, obs_time_s: float, measured_state: Sequence[float]) -> RequestPlan:
        """Plan the request for an observation stamped ``obs_time_s`` with measured state ``[D]`` (arm + gripper
        columns in chunk order); marks it in flight.
        """
        s = self.settings
        state = np.asarray(measured_state, dtype=np.float64).copy()
        latency = self.latency_estimate()
        base = obs_time_s
        prefix = None
        running = self.active if not self.holding else None
        arm = list(s.arm_columns)
        # rows earlier than arrival + min_lead are dropped: the first row kept is about obs + latency + lead
        ahead = steps_covering(latency + s.min_lead_s, s.dt_s)
        if running is not None and "rollforward" in self.options:
            base = obs_time_s + (ahead - 1) * s.dt_s  # row 0 of the new chunk is the first one kept
            state[arm] = self.commanded(base)[0]
        elif running is not None and "prefix" in self.options:
            count = min(ahead, s.max_prefix_steps)  # every row up to the first one kept
            prefix = np.repeat(state[None, :], count, axis=0)
            prefix[:, arm] = running_rows(self.commanded, obs_time_s, s.dt_s, count)
            if s.gripper_column is not None and self.active_gripper is not None:
                # the running chunk's own gripper column at those times: the new chunk then repeats, for those
                # rows, exactly what the running one would have commanded (no stale open/close re-sent)
                times, values = self.active_gripper
                at = obs_time_s + (np.arange(count) + 1) * s.dt_s
                prefix[:, s.gripper_column] = values[np.clip(np.searchsorted(times, at, side="right") - 1, 0,
                                                             len(values) - 1)]
        plan = RequestPlan(obs_time_s, base, state, prefix, self.epoch, latency)
        self.in_flight = plan
        self.counters["requests"] += 1
        return plan

    # ----- chunks ------------------------------------------------------------------------------------------

    def on_chunk(self, now: float, plan: RequestPlan, actions: np.ndarray,
                 measured_arm: Sequence[float] | None) -> ExecutionResult:
        """Turn the model's chunk ``[N, D]`` for ``plan`` into the trajectory to publish at node time ``now``.

        Raises:
            InputError: a chunk of the wrong width, non-finite values, or measured joints outside the limits.

        """
        s = self.settings
        if self.in_flight is plan:
            self.in_flight = None
        self._latencies.append(now - plan.obs_time_s)
        self.counters["chunks_received"] += 1
        actions = np.asarray(actions, dtype=np.float64)
        width = max([*s.arm_columns, s.gripper_column or 0]) + 1
        if actions.ndim != 2 or actions.shape[1] < width:
            raise InputError(f"chunk shape {list(actions.shape)}; expected [rows, >= {width}]")
        if plan.epoch != self.epoch:
            self.counters["chunks_discarded"] += 1
            return ExecutionResult(None, "planned before a hold")
        state = self.safety.state(now)
        if not state.allows_commands:
            self.counters["chunks_discarded"] += 1
            return ExecutionResult(None, f"commands refused: {state.reason}")
        times = plan.base_time_s + (np.arange(actions.shape[0]) + 1) * s.dt_s
        keep = times >= now + s.min_lead_s
        dropped = int(np.count_nonzero(~keep))
        self.counters["rows_dropped_past"] += dropped
        if not keep.any():
            self.counters["chunks_discarded"] += 1
            return ExecutionResult(None, f"all {actions.shape[0]} rows are in the past (latency "
                                         f"{now - plan.obs_time_s:.3f} s)", dropped)
        times = times[keep]
        targets = actions[keep][:, list(s.arm_columns)]
        # The trajectory starts with an anchor point half the lead ahead: the commanded state of the running
        # trajectory then (position and velocity). The controller receives it a transport delay after now and
        # interpolates from its state at receipt to the anchor, two states of the motion it is already running;
        # from the anchor on it runs exactly the spline checked below. Without the anchor, the controller's
        # first segment started from its state at receipt and differed from the checked one: with chunks near
        # a limit that overshot it (velocity and position cycles beyond the FR3's limits over DDS).
        anchor_t = now + 0.5 * s.min_lead_s
        anchor_p, anchor_v = self._commanded_state(anchor_t, measured_arm)
        if "blend" in self.options and self.active is not None and not self.holding:
            targets = blend_into(self.active, times, targets, s.blend_steps)
        measured = None if measured_arm is None else np.asarray(measured_arm, dtype=np.float64)
        limited, times, velocities, report = self._limited(anchor_t, times, targets, anchor_p, anchor_v, measured)
        if report.rejected:
            self.counters["chunks_rejected"] += 1
            return ExecutionResult(None, f"chunk rejected: {report.rejected}", dropped, report)
        self.counters["values_clamped"] += report.total
        trajectory = _with_anchor(TimedTrajectory(plan.obs_time_s, times - plan.obs_time_s, limited, velocities),
                                  anchor_t, anchor_p, anchor_v)
        self._previous = self.active
        self.active = trajectory
        self.take_over_s = now
        self.holding = ""
        if s.gripper_column is not None:
            self.active_gripper = (times[:-1], actions[keep][:, s.gripper_column].copy())  # no stopping point
        self.counters["chunks_executed"] += 1
        return ExecutionResult(trajectory, "", dropped, report)

    def _limited(self, now: float, times: np.ndarray, targets: np.ndarray, anchor_p: np.ndarray,
                 anchor_v: np.ndarray, measured: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, LimitReport]:
        """Targets within the limits, followed by a stopping point, and the cubic's knot velocities.

        The chunk's last row usually still moves; stopping dead there would need a large deceleration in one
        step. So one point is appended where the arm, decelerating uniformly from the last rows' velocity at
        half the acceleration limit, comes to rest (zero velocity): it only runs if no newer chunk replaces
        this trajectory in time. The limits walk the finite differences; the cubic through the result can still
        exceed a limit between the points (it is C2 and may swing: beyond a position limit, above the velocity
        limit, or over the acceleration limit), so its exact extremes are checked and the walk is repeated with
        tighter acceleration and velocity margins (up to three times). If that does not suffice, or with
        ``reject``, the chunk is refused and the running trajectory continues.

        Returns:
            ``(positions [N + 1, J], times [N + 1], velocities [N + 1, J] or None, report)``.

        """
        limits = self.limits
        amax = limits.acceleration_max
        margin, velocity_margin = 0.5, 1.0
        excess = np.zeros(0, dtype=bool)
        for _ in range(4):
            limited, report = apply_limits(targets, times, anchor_p, anchor_v, now, measured, limits, margin,
                                           velocity_margin=velocity_margin)
            if report.rejected:
                return limited, times, None, report
            positions, knot_times = self._with_stop(now, times, limited, anchor_p)
            if not self.settings.use_velocities:
                return positions, knot_times, None, report
            knots = np.concatenate([[now], knot_times])
            path = np.vstack([anchor_p, positions])
            velocities = spline_velocities(knots, path, anchor_v)
            # a point on a position limit is passed at rest, so the cubic does not swing beyond the limit
            at_limit = np.zeros(path.shape, dtype=bool)
            if limits.position_max is not None:
                at_limit |= path >= limits.position_max - 1e-9
            if limits.position_min is not None:
                at_limit |= path <= limits.position_min + 1e-9
            at_limit[0] = False
            velocities[at_limit] = 0.0
            velocities = monotone_near_limits(knots, path, velocities, limits.position_min, limits.position_max)
            # between the points: positions within the limits (0.1 mrad), velocities within theirs
            lowest, highest, fastest = position_and_velocity_extremes(knots, path, velocities)
            excess = np.zeros(path.shape[1], dtype=bool)
            if limits.position_max is not None:
                excess |= highest > limits.position_max + 1e-4
            if limits.position_min is not None:
                excess |= lowest < limits.position_min - 1e-4
            too_fast = np.zeros_like(excess) if limits.velocity_max is None else fastest > limits.velocity_max
            if amax is not None:
                # 10 % headroom: the controller starts its first segment a transport delay later than planned
                excess |= max_abs_acceleration(knots, path, velocities) > 0.9 * amax
            if not (excess | too_fast).any():
                break
            if limits.on_violation == "reject":
                report.rejected = f"the cubic through the targets leaves the joint limits on joints " \
                                  f"{np.flatnonzero(excess | too_fast).tolist()}"
                return positions, knot_times, None, report
            # tighten what failed: the velocity walk for a swing above the velocity limit, the acceleration walk
            # (which also brakes earlier before a position limit) for the rest
            if too_fast.any():
                velocity_margin -= 0.1
            if excess.any() or not too_fast.any():
                margin *= 0.5
            excess |= too_fast
        else:
            # clamping cannot make this chunk feasible from the running state: refuse it, the running
            # trajectory (feasible) continues
            report.acceleration += int(np.count_nonzero(excess))
            report.rejected = f"no trajectory within the joint limits found for joints " \
                              f"{np.flatnonzero(excess).tolist()}"
            return positions, knot_times, None, report
        return positions, knot_times, velocities[1:], report

    def _with_stop(self, now: float, times: np.ndarray, positions: np.ndarray, anchor_p: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Append the stopping point (see ``_limited``) to ``positions [N, J]`` at ``times [N]``."""
        dt = self.settings.dt_s
        previous_t = times[-2] if len(times) > 1 else now
        previous_p = positions[-2] if len(times) > 1 else anchor_p
        velocity = (positions[-1] - previous_p) / max(times[-1] - previous_t, 1e-9)
        amax = self.limits.acceleration_max
        decel = 0.5 * amax if amax is not None else np.full_like(velocity, np.inf)
        stop_time = float(max(dt, np.max(np.abs(velocity) / decel)))
        stop = self.limits.clip_positions(positions[-1] + 0.5 * velocity * stop_time)
        return np.vstack([positions, stop]), np.concatenate([times, [times[-1] + stop_time]])

    def commanded(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Commanded position and velocity at ``t`` (the previous trajectory until the running one's anchor)."""
        assert self.active is not None
        if self._previous is not None and t < self.active.absolute_times[0]:
            return self._previous.sample(t)
        return self.active.sample(t)

    def _commanded_state(self, now: float, measured_arm: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity the controller is at now: the running trajectory's, else the measured joints."""
        if self.active is not None:
            return self.commanded(now)
        if measured_arm is None:
            raise InputError("no running trajectory and no measured joints: cannot anchor the trajectory")
        measured = np.asarray(measured_arm, dtype=np.float64)
        return measured.copy(), np.zeros_like(measured)

    def on_request_failed(self, plan: RequestPlan) -> None:
        """The model call for ``plan`` failed or was dropped: nothing is in flight any more."""
        if self.in_flight is plan:
            self.in_flight = None

    # ----- gripper -----------------------------------------------------------------------------------------

    def gripper_command(self, now: float) -> GripperCommand | None:
        """The gripper command due at ``now`` from the running chunk's gripper column (None: no change)."""
        if self.gripper is None or self.active_gripper is None or self.holding:
            return None
        state = self.safety.state(now)
        if not state.allows_commands:
            return None
        times, values = self.active_gripper
        k = int(np.searchsorted(times, now, side="right")) - 1
        return self.gripper.update(float(values[max(k, 0)]), now)

    # ----- holds -------------------------------------------------------------------------------------------

    def hold(self, now: float, measured_arm: Sequence[float], reason: str) -> ExecutionResult:
        """Replace the running trajectory by one point at the measured joints, zero velocity; chunks planned
        before now are discarded.
        """
        if reason not in HOLD_REASONS:
            raise InputError(f"hold reason {reason!r}; expected one of {list(HOLD_REASONS)}")
        measured = np.asarray(measured_arm, dtype=np.float64)
        if measured.ndim != 1 or not np.all(np.isfinite(measured)):
            raise InputError(f"hold: measured joints {measured.tolist()}; expected finite [J]")
        position = self.limits.clip_positions(measured)
        anchor_p, anchor_v = self.commanded(now) if self.active is not None else (position, 0.0 * position)
        trajectory = TimedTrajectory(now, np.array([self._hold_duration(anchor_p, anchor_v, position)]),
                                     position[None, :],
                                     np.zeros((1, measured.shape[0])) if self.settings.use_velocities else None)
        self._previous = None
        self.active = _with_anchor(trajectory, now, anchor_p, anchor_v)
        self.active_gripper = None
        self.take_over_s = now
        self.holding = reason
        self.epoch += 1
        self.in_flight = None
        self.counters[f"holds_{reason}"] += 1
        return ExecutionResult(trajectory, reason, hold=reason)

    def _hold_duration(self, p0: np.ndarray, v0: np.ndarray, p1: np.ndarray) -> float:
        """``hold_time_s``, or longer if the cubic from the commanded state to the hold point would exceed the
        acceleration limit (its largest acceleration is at most ``4 |v0| / T + 6 |p1 - p0| / T²``).
        """
        duration = self.settings.hold_time_s
        amax = self.limits.acceleration_max
        if amax is not None:
            speed = float(np.max(np.abs(v0) / amax))
            distance = float(np.max(np.abs(p1 - p0) / amax))
            duration = max(duration, 8.0 * speed, math.sqrt(12.0 * distance))
        return duration

    def starved(self, now: float) -> bool:
        """No valid target: nothing published yet, or past the end of the running trajectory while not holding."""
        return self.active is None or (not self.holding and now > self.active.end_s)


def _with_anchor(trajectory: TimedTrajectory, now: float, position: np.ndarray, velocity: np.ndarray
                 ) -> TimedTrajectory:
    """``trajectory`` with a first point at ``now`` holding the state the controller starts from."""
    times = np.concatenate([[now - trajectory.stamp_s], trajectory.times_s])
    positions = np.vstack([position, trajectory.positions])
    velocities = None if trajectory.velocities is None else np.vstack([velocity, trajectory.velocities])
    return TimedTrajectory(trajectory.stamp_s, times, positions, velocities)
