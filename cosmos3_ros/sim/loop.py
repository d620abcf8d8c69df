"""The closed loop on a simulated clock, without ROS: simulated FR3 + ``ChunkExecutor`` + scripted policy.

Deterministic for a seed and fast (a 20 s run takes about a second), so the hand-over options can be compared
over many runs; ``cosmos3-ros sim-loop`` runs the same loop over DDS with real nodes (wall clock, real
transport). Both report the metrics of ``LOOP_METRICS``.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..execution.gripper import GripperCommander
from ..execution.limits import JointLimits
from ..execution.safety import SafetySupervisor
from ..execution.streaming import ChunkExecutor, ExecutionSettings
from .fr3 import SimulatedFR3
from .scripted_policy import ScriptedPolicy

LOOP_METRICS = (
    "control_rate_hz", "chunks_executed", "handover_jump_rad_max", "handover_jerk_max", "starved_s",
    "stale_points_commanded", "latency_ms_p50", "latency_ms_p99", "limit_violations", "gripper_toggles",
    "estop_hold_ms", "commands_after_estop", "deadman_hold_ms",
)


@dataclass
class LoopConfig:
    """One closed-loop run.

    Attributes:
        handover / execution_horizon / blend_steps: execution settings under test.
        model_latency_s / disagreement / seed: the scripted policy.
        duration_s: the measured part of the run (s); the e-stop and dead-man scenarios follow it.
        camera_rate_hz: camera frame rate (the observation stamp is the newest frame).
        tick_hz: the node's execution timer (request scheduling, gripper, dead-man check).
        transport_s: publish -> controller delay.
        heartbeat_timeout_s: dead-man timeout; heartbeat_period_s: how often the operator's heartbeat comes.
        scenarios: run the e-stop and dead-man scenarios after ``duration_s``.

    """

    handover: str = "prefix+blend"
    execution_horizon: int = 8
    blend_steps: int = 4
    model_latency_s: float = 0.66
    disagreement: float = 0.05
    seed: int = 0
    duration_s: float = 20.0
    camera_rate_hz: float = 30.0
    tick_hz: float = 100.0
    transport_s: float = 0.002
    heartbeat_timeout_s: float = 0.5
    heartbeat_period_s: float = 0.1
    scenarios: bool = True


@dataclass
class LoopRecord:
    """Time series for the plot: commanded / executed joints and gripper, hand-over times."""

    t: list[float] = field(default_factory=list)
    commanded: list[list[float]] = field(default_factory=list)
    executed: list[list[float]] = field(default_factory=list)
    gripper_commanded: list[float] = field(default_factory=list)
    gripper_executed: list[float] = field(default_factory=list)
    handovers: list[float] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)


def percentile_ms(values: list[float], q: float) -> float:
    """``q``-th percentile of ``values`` (s) in ms; NaN when empty."""
    return float(np.percentile(np.asarray(values) * 1e3, q)) if values else math.nan


def run_loop(config: LoopConfig) -> tuple[dict[str, Any], LoopRecord]:
    """Run one closed loop; returns (metrics, record)."""
    dt = 1.0 / 15.0
    # The clock starts at T0, not 0: a header stamp of 0 means "now" to the controller.
    t0 = 1000.0
    sim = SimulatedFR3(control_dt=dt)
    sim.time_s = t0
    policy = ScriptedPolicy(disagreement=config.disagreement, seed=config.seed, dt=dt,
                            latency_s=config.model_latency_s)
    safety = SafetySupervisor(config.heartbeat_timeout_s if config.scenarios else 0.0)
    settings = ExecutionSettings(dt_s=dt, arm_columns=tuple(range(7)), gripper_column=7,
                                 execution_horizon=config.execution_horizon, handover=config.handover,
                                 blend_steps=config.blend_steps, expected_latency_s=config.model_latency_s)
    executor = ChunkExecutor(settings, JointLimits.fr3(), safety, GripperCommander())
    record = LoopRecord()
    events: list[tuple[float, int, str, Any]] = []
    order = itertools.count()

    def push(t: float, kind: str, payload: Any = None) -> None:
        heapq.heappush(events, (t0 + t, next(order), kind, payload))

    measure_end = config.duration_s
    scenario: dict[str, Any] = {"estop_at": measure_end + 0.2, "release_at": measure_end + 1.7,
                                "heartbeats_stop": measure_end + 3.2}
    end = measure_end + (5.0 if config.scenarios else 0.0)
    starved = 0.0
    latched_hold_at: float | None = None
    commands_after_estop = 0
    deadman_hold_ms = math.nan
    estop_hold_ms = math.nan
    measured_handover_count = 0
    executed_in_window = 0
    tick = 1.0 / config.tick_hz
    if config.scenarios:
        push(scenario["estop_at"], "estop")
        push(scenario["release_at"], "release")
        beats = np.arange(0.0, scenario["heartbeats_stop"], config.heartbeat_period_s)
        for t_beat in beats:
            push(float(t_beat), "heartbeat")
        scenario["last_beat"] = float(beats[-1])
    for k in range(int(end * config.tick_hz) + 1):  # after the heartbeats: a beat at t counts at the tick at t
        push(k * tick, "tick")
    push(measure_end, "measure_end")

    def deliver(t: float, trajectory: Any, label: str) -> None:
        push(t - t0 + config.transport_s, "trajectory", (trajectory, label))

    def publish_hold(t: float, reason: str) -> None:
        result = executor.hold(t, sim.q.copy(), reason)
        deliver(t, result.trajectory, f"hold:{reason}")

    while events:
        t, _, kind, payload = heapq.heappop(events)
        sim.step(t)
        rel = t - t0
        if kind == "measure_end":
            executed_in_window = sim.finish(t).executed_points
        elif kind == "heartbeat":
            safety.heartbeat(t)
        elif kind == "estop":
            if safety.engage("estop topic"):
                publish_hold(t, "estop")
                record.events.append((rel, "e-stop"))
        elif kind == "release":
            safety.release()
            record.events.append((rel, "release"))
        elif kind == "trajectory":
            trajectory, label = payload
            sim.receive_trajectory(trajectory, t)
            if label == "hold:estop":
                latched_hold_at = rel
                estop_hold_ms = (rel - scenario["estop_at"]) * 1e3
            elif label == "hold:deadman":
                deadman_hold_ms = (rel - (scenario["last_beat"] + config.heartbeat_timeout_s)) * 1e3
            elif latched_hold_at is not None and rel < scenario["release_at"]:
                commands_after_estop += 1
            if label == "chunk" and rel <= measure_end:
                record.handovers.append(rel)
                measured_handover_count = len(sim.metrics.handovers)
        elif kind == "gripper":
            sim.command_gripper(payload, t)
        elif kind == "arrival":
            plan, chunk = payload
            result = executor.on_chunk(t, plan, chunk, sim.q.copy())
            if result.trajectory is not None:
                deliver(t, result.trajectory, "chunk")
        elif kind == "tick":
            _, tripped = safety.check(t)
            if tripped:
                publish_hold(t, "deadman")
                record.events.append((rel, "dead-man"))
            if executor.should_request(t):
                obs_time = t0 + math.floor(rel * config.camera_rate_hz) / config.camera_rate_hz
                state = np.concatenate([sim.q, [sim.gripper_closure()]])
                plan = executor.plan_request(t, obs_time, state)
                chunk = policy.predict(plan.state, plan.prefix)
                push(rel + policy.latency(), "arrival", (plan, chunk))
            command = executor.gripper_command(t)
            if command is not None:
                push(rel + config.transport_s, "gripper", command.closed)
            if rel <= measure_end:
                holding = executor.holding != ""
                started = sim.metrics.trajectories > 0  # before the first one the arm rests where it started
                if started and not holding and (sim.follower.current is None or t > sim.follower.end_time()):
                    starved += tick
            cmd, _ = sim.follower.sample(t)
            record.t.append(rel)
            record.commanded.append(cmd.tolist())
            record.executed.append(sim.q.tolist())
            record.gripper_commanded.append(float(executor.gripper.closed) if executor.gripper and
                                            executor.gripper.closed is not None else 0.0)
            record.gripper_executed.append(sim.gripper_closure())
    metrics = sim.finish(t0 + end)
    handovers = [h for h in metrics.handovers[:measured_handover_count] if h.between_chunks]
    jumps = [h.jump_rad for h in handovers]
    result = {
        "control_rate_hz": executed_in_window / measure_end,
        "chunks_executed": executor.counters["chunks_executed"],
        "handover_jump_rad_max": max(jumps) if jumps else 0.0,
        "handover_jump_rad_mean": float(np.mean(jumps)) if jumps else 0.0,
        "handover_jerk_max": max((h.jerk for h in handovers), default=0.0),
        "starved_s": round(starved, 6),
        "stale_points_commanded": metrics.stale_points,
        "latency_ms_p50": percentile_ms(metrics.latencies_s, 50),
        "latency_ms_p99": percentile_ms(metrics.latencies_s, 99),
        "limit_violations": metrics.limit_violations,
        "gripper_toggles": metrics.gripper_toggles,
        "estop_hold_ms": estop_hold_ms,
        "commands_after_estop": commands_after_estop,
        "deadman_hold_ms": deadman_hold_ms,
        "clock": "simulated",
        "config": asdict(config),
        "counters": dict(executor.counters),
    }
    return result, record


def write_loop_plot(record: LoopRecord, path: str, title: str = "", joints: tuple[int, ...] = (0, 1, 3)) -> None:
    """``loop.png``: commanded vs executed joints and gripper over time, hand-overs as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    t = np.asarray(record.t)
    commanded, executed = np.asarray(record.commanded), np.asarray(record.executed)
    fig, axes = plt.subplots(len(joints) + 1, 1, figsize=(11, 2.2 * (len(joints) + 1)), sharex=True)
    for ax, j in zip(axes, joints, strict=False):
        ax.plot(t, commanded[:, j], lw=1.0, label="commanded")
        ax.plot(t, executed[:, j], lw=1.0, ls="--", label="executed")
        ax.set_ylabel(f"joint {j + 1} (rad)")
    axes[-1].plot(t, record.gripper_commanded, lw=1.0, label="commanded (1 = closed)")
    axes[-1].plot(t, record.gripper_executed, lw=1.0, ls="--", label="executed closure")
    axes[-1].set_ylabel("gripper")
    axes[-1].set_xlabel("node time (s)")
    for ax in axes:
        for h in record.handovers:
            ax.axvline(h, color="grey", lw=0.4, alpha=0.5)
        for when, what in record.events:
            ax.axvline(when, color="red", lw=1.0)
            ax.text(when, ax.get_ylim()[1], what, fontsize=7, color="red", va="top")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].legend(loc="upper right", fontsize=8)
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def sweep(latencies: tuple[float, ...], handovers: tuple[str, ...], make: Callable[[float, str], LoopConfig]
          ) -> list[dict[str, Any]]:
    """Run ``make(latency, handover)`` for every pair; one metrics dict per run."""
    return [run_loop(make(latency, handover))[0] for latency in latencies for handover in handovers]
