"""``cosmos3-ros sim-loop``: the policy node driving the simulated FR3 in closed loop, then an e-stop and a
dead-man scenario; writes ``loop.json`` (metrics) and ``loop.png`` (commanded vs executed joints and gripper,
hand-overs marked).

Default: real rclpy and Fast DDS on loopback, wall clock; the simulated FR3 runs as its own process (the
``sim_fr3_node`` executable, as the controller runs apart from the policy on a robot), the policy node and the
operator (e-stop, heartbeat) in this one. ``--simulated-clock`` runs the same execution layer, simulator and
scripted policy on a simulated clock without ROS (deterministic, fast: the mode used for sweeps).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import InputError
from ..execution.handover import parse_handover
from ..execution.limits import FR3_ACCELERATION_MAX, FR3_POSITION_MAX, FR3_POSITION_MIN, FR3_VELOCITY_MAX
from ..sim.loop import LOOP_METRICS, LoopConfig, LoopRecord, percentile_ms, run_loop, write_loop_plot

Stage = Callable[[str], None]
SIM_CAMERAS = ("/sim_fr3/wrist/image_raw", "/sim_fr3/exterior_1/image_raw", "/sim_fr3/exterior_2/image_raw")
TRAJECTORY_TOPIC = "/policy_node/joint_trajectory"
FINGER_TOPIC = "/fr3_gripper/command"
ESTOP_TOPIC = "/operator/estop"
HEARTBEAT_TOPIC = "/operator/heartbeat"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``sim-loop``."""
    parser.add_argument("--policy", choices=("scripted", "checkpoint"), default="scripted")
    parser.add_argument("--checkpoint", help="checkpoint folder (--policy checkpoint)")
    parser.add_argument("--device", default="cpu", help="torch device of the checkpoint policy")
    parser.add_argument("--model-latency", type=float, default=0.66, help="scripted policy latency (s)")
    parser.add_argument("--disagreement", type=float, default=0.05, help="scripted chunk-to-chunk offset (rad)")
    parser.add_argument("--handover", default="prefix+blend", help="none | blend | rollforward | prefix | a+b")
    parser.add_argument("--horizon", type=int, default=8, help="execution_horizon (steps)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured part of the run (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heartbeat-timeout", type=float, default=0.5)
    parser.add_argument("--no-scenarios", action="store_true", help="skip the e-stop and dead-man scenarios")
    parser.add_argument("--simulated-clock", action="store_true", help="no ROS: simulated clock, scripted policy")
    parser.add_argument("--out", required=True, help="output folder for loop.json and loop.png")
    parser.set_defaults(handler=sim_loop_command)


def sim_loop_command(args: argparse.Namespace, stage: Stage) -> int:
    """Run the loop and write the outputs."""
    parse_handover(args.handover)
    if args.duration <= 0 or args.model_latency < 0 or args.disagreement < 0 or args.horizon < 1:
        raise InputError(f"sim-loop: --duration {args.duration}, --model-latency {args.model_latency}, "
                         f"--disagreement {args.disagreement}, --horizon {args.horizon}; "
                         "expected > 0, >= 0, >= 0, >= 1")
    if args.policy == "checkpoint" and (not args.checkpoint or not Path(args.checkpoint).is_dir()):
        raise InputError(f"sim-loop --policy checkpoint: --checkpoint {args.checkpoint!r} is not a folder")
    if args.policy == "checkpoint" and args.simulated_clock:
        raise InputError("sim-loop: --simulated-clock runs the scripted policy only")
    config = LoopConfig(handover=args.handover, execution_horizon=args.horizon, model_latency_s=args.model_latency,
                        disagreement=args.disagreement, seed=args.seed, duration_s=args.duration,
                        heartbeat_timeout_s=args.heartbeat_timeout, scenarios=not args.no_scenarios)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.simulated_clock:
        stage(f"simulated clock: {args.handover}, latency {args.model_latency} s, {args.duration} s")
        metrics, record = run_loop(config)
    else:
        stage(f"DDS loop ({args.policy} policy): {args.handover}, {args.duration} s + scenarios")
        metrics, record = run_dds_loop(config, policy=args.policy, checkpoint=args.checkpoint, device=args.device,
                                       stage=stage)
    (out / "loop.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    title = f"{metrics.get('clock')} clock, {args.policy}, handover {args.handover}, latency {args.model_latency} s"
    write_loop_plot(record, str(out / "loop.png"), title)
    stage("; ".join(f"{k}={metrics[k]:.4g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}"
                    for k in LOOP_METRICS))
    stage(f"wrote {out / 'loop.json'} and {out / 'loop.png'}")
    return 0


def policy_parameters(config: LoopConfig, *, checkpoint: str = "", device: str = "cpu") -> dict[str, Any]:
    """Node parameters of the closed loop: the simulated FR3's topics, FR3 limits, commands on."""
    return {
        "checkpoint": checkpoint, "device": device, "profile": "released_droid_policy",
        "camera_topics": list(SIM_CAMERAS), "joint_state_topic": "/joint_states", "gripper_source": "joint_state",
        "gripper_joint": "fr3_finger_joint1", "task": "follow the circle", "max_observation_age": 0.5,
        "sync_tolerance": 0.05, "frame_id": "fr3_link0", "dry_run": False, "execution_mode": "streaming",
        "execution_horizon": config.execution_horizon, "handover": config.handover,
        "blend_steps": config.blend_steps, "expected_model_latency": float(config.model_latency_s),
        "joint_position_min": list(FR3_POSITION_MIN), "joint_position_max": list(FR3_POSITION_MAX),
        "joint_velocity_max": list(FR3_VELOCITY_MAX), "joint_acceleration_max": list(FR3_ACCELERATION_MAX),
        "gripper_output": "topic", "gripper_command_topic": FINGER_TOPIC, "estop_topic": ESTOP_TOPIC,
        "heartbeat_topic": HEARTBEAT_TOPIC if config.scenarios else "",
        "heartbeat_timeout": float(config.heartbeat_timeout_s), "execution_rate": 50.0,
    }


def _ros_parameters(values: dict[str, Any]) -> list[Any]:
    from rclpy.parameter import Parameter

    return [Parameter(name, value=value) for name, value in values.items()]


def start_arm_process(folder: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """``sim_fr3_node`` as its own process on the loop's topics; returns (process, record file, log file)."""
    record = folder / "sim_fr3_record.json"
    params = folder / "sim_fr3.yaml"
    params.write_text(json.dumps({"sim_fr3": {"ros__parameters": {
        "trajectory_topic": TRAJECTORY_TOPIC, "camera_topics": list(SIM_CAMERAS),
        "gripper_command_topic": FINGER_TOPIC, "record_file": str(record)}}}))  # JSON is YAML
    log_path = folder / "sim_fr3.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "cosmos3_ros.ros.sim_fr3_node", "--ros-args",
                                    "--params-file", str(params)], stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return process, record, log_path


def stop_arm_process(process: subprocess.Popen[bytes], record: Path, log_path: Path) -> dict[str, Any]:
    """SIGINT the arm (its pid only), wait, and read back what it recorded."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5.0)
    if not record.is_file():
        raise InputError(f"sim-loop: the simulated FR3 wrote no record (exit {process.returncode}); its log "
                         f"{log_path}:\n{log_path.read_text(errors='replace')[-2000:]}")
    return json.loads(record.read_text())


def run_dds_loop(config: LoopConfig, *, policy: str = "scripted", checkpoint: str | None = None,
                 device: str = "cpu", stage: Stage = print, parameters: dict[str, Any] | None = None
                 ) -> tuple[dict[str, Any], LoopRecord]:
    """The closed loop over Fast DDS on loopback (module docstring). Returns (metrics, record)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    try:
        import rclpy
        from rclpy.context import Context
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import Bool
        from std_srvs.srv import Trigger

        from ..ros.policy_node import PolicyNode
        from ..ros.spinning import Spinner, make_executor
    except ImportError as exc:
        raise InputError(f"sim-loop over DDS needs ROS 2 (rclpy): {exc}; run bash scripts/setup_ros.sh, or use "
                         "--simulated-clock") from exc

    model = None
    if policy == "scripted":
        from ..sim.scripted_policy import ScriptedActionModel, ScriptedPolicy

        model = ScriptedActionModel(ScriptedPolicy(disagreement=config.disagreement, seed=config.seed,
                                                   latency_s=config.model_latency_s))
    values = policy_parameters(config, checkpoint=checkpoint or "", device=device)
    values.update(parameters or {})
    folder = Path(tempfile.mkdtemp(prefix="cosmos3_sim_loop_"))
    arm, record_file, arm_log = start_arm_process(folder)
    context = Context()
    rclpy.init(context=context)
    executor = make_executor(context)
    nodes: list[Any] = []
    spinner: Spinner | None = None
    try:
        stage("loading the policy" if model is None else "scripted policy")
        node = PolicyNode(model=model, context=context, parameter_overrides=_ros_parameters(values))
        nodes.append(node)
        operator = rclpy.create_node("sim_loop_operator", context=context)
        nodes.append(operator)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        estop_pub = operator.create_publisher(Bool, ESTOP_TOPIC, latched)
        beat_pub = operator.create_publisher(Bool, HEARTBEAT_TOPIC, QoSProfile(depth=1,
                                                                                reliability=ReliabilityPolicy.RELIABLE))
        beats = {"on": config.scenarios, "last": -math.inf}

        def now() -> float:
            return operator.get_clock().now().nanoseconds / 1e9

        def beat() -> None:
            if beats["on"]:
                beat_pub.publish(Bool(data=True))
                beats["last"] = now()

        operator.create_timer(config.heartbeat_period_s, beat)
        for n in nodes:
            executor.add_node(n)
        spinner = Spinner(executor, "sim-loop-spin")

        # Discovery first: every link of the loop matched (on a loaded machine this can take seconds).
        links = [lambda: node.core.latest_state() is not None,
                 lambda: all(node.core.buffer.sizes().get(name, 0) > 0 for name in node.core.cameras),
                 lambda: node._output_publishers["joint_trajectory"].get_subscription_count() > 0,
                 lambda: estop_pub.get_subscription_count() > 0]
        if config.scenarios:
            links.append(lambda: beat_pub.get_subscription_count() > 0)
        if not _wait(lambda: all(link() for link in links) or arm.poll() is not None, 60.0) or arm.poll() is not None:
            raise InputError("sim-loop: the policy node and the simulated FR3 did not discover each other in 60 s "
                             f"(ROS_DOMAIN_ID / ROS_AUTOMATIC_DISCOVERY_RANGE?); arm exit {arm.poll()}, log "
                             f"{arm_log}:\n{arm_log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)
        t_start = now()
        stage(f"running {config.duration_s} s")
        _sleep_until(now, t_start + config.duration_s)
        t_measure_end = now()
        scenario: dict[str, float] = {}
        if config.scenarios:
            scenario["estop"] = now()
            estop_pub.publish(Bool(data=True))
            _sleep_until(now, scenario["estop"] + 1.5)
            client = operator.create_client(Trigger, "/policy_node/release")
            client.wait_for_service(timeout_sec=5.0)
            future = client.call_async(Trigger.Request())
            _wait(future.done, 5.0)
            estop_pub.publish(Bool(data=False))
            scenario["release"] = now()
            _sleep_until(now, scenario["release"] + 1.5)
            beats["on"] = False
            time.sleep(0.05)
            scenario["deadman_due"] = beats["last"] + config.heartbeat_timeout_s
            _sleep_until(now, scenario["deadman_due"] + 1.0)
        t_end = now()
        counters = node.execution.executor.counters if node.execution else {}
        document = stop_arm_process(arm, record_file, arm_log)
        record = SimpleNamespace(**document["record"])
        receipts = [tuple(r) for r in record.receipts]
        sim_metrics = SimpleNamespace(**{**document["metrics"], "handovers": [
            SimpleNamespace(**h) for h in document["metrics"]["handovers"]]})
        result = _dds_metrics(config, record, sim_metrics, receipts, t_start, t_measure_end, scenario, counters)
        loop_record = LoopRecord(
            t=[t - t_start for t in record.t], commanded=list(record.commanded), executed=list(record.executed),
            gripper_commanded=list(record.gripper_commanded), gripper_executed=list(record.gripper_executed),
            handovers=[t - t_start for t, points, ok in receipts if ok and points > 1 and t <= t_measure_end],
            events=[(scenario[k] - t_start, k) for k in ("estop", "release") if k in scenario]
            + ([(scenario["deadman_due"] - t_start, "dead-man")] if "deadman_due" in scenario else []),
        )
        result["duration_total_s"] = t_end - t_start
        result["arm"] = "own process (sim_fr3_node)"
        return result, loop_record
    finally:
        if arm.poll() is None:  # an error above: stop the arm by its pid
            arm.send_signal(signal.SIGINT)
            try:
                arm.wait(10.0)
            except subprocess.TimeoutExpired:
                arm.kill()
        # the executor first: a timer cancelled under a spinning executor makes rclpy raise from spin
        if spinner is not None:
            spinner.stop()
        else:
            executor.shutdown(timeout_sec=0)
        for n in nodes:
            if isinstance(n, PolicyNode):
                n.shutdown(10.0)
        for n in nodes:
            n.destroy_node()
        context.try_shutdown()


def _sleep_until(now: Callable[[], float], when: float) -> None:
    while now() < when:
        time.sleep(min(0.05, max(0.001, when - now())))


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def _dds_metrics(config: LoopConfig, record: Any, metrics: Any, receipts: list[tuple[float, int, bool]],
                 t_start: float, t_measure_end: float, scenario: dict[str, float], counters: dict[str, int]
                 ) -> dict[str, Any]:
    """The ``LOOP_METRICS`` from what the simulated arm recorded."""
    # chunk-to-chunk hand-overs only: a hold (stale observations on a loaded machine) replaces the plan on purpose
    window = [h for h in metrics.handovers if t_start <= h.time_s <= t_measure_end and h.between_chunks]
    chunk_receipts = [r for r in receipts if r[2] and r[1] > 1 and t_start <= r[0] <= t_measure_end]
    record_dt = 1.0 / 50.0
    starved = sum(record_dt for t in record.starved_at if t_start <= t <= t_measure_end)
    result: dict[str, Any] = {
        "control_rate_hz": _executed_rate(receipts, t_start, t_measure_end, metrics),
        "chunks_executed": len(chunk_receipts),
        "handover_jump_rad_max": max((h.jump_rad for h in window), default=0.0),
        "handover_jump_rad_mean": float(np.mean([h.jump_rad for h in window])) if window else 0.0,
        "handover_jerk_max": max((h.jerk for h in window), default=0.0),
        "starved_s": round(starved, 3),
        "stale_points_commanded": metrics.stale_points,
        "latency_ms_p50": percentile_ms(metrics.latencies_s, 50),
        "latency_ms_p99": percentile_ms(metrics.latencies_s, 99),
        "limit_violations": metrics.limit_violations,
        "limit_violation_times_s": [round(t - t_start, 3) for t in metrics.violation_times_s],
        "receipt_lead_ms_min": min(metrics.receipt_leads_s, default=math.nan) * 1e3,
        "gripper_toggles": metrics.gripper_toggles,
        "estop_hold_ms": math.nan, "commands_after_estop": 0, "deadman_hold_ms": math.nan,
        "clock": "wall (DDS)", "config": asdict(config), "counters": dict(counters),
    }
    if "estop" in scenario:
        # the hold is the first single-point trajectory after the e-stop; a chunk arriving before it was already
        # on its way when the node learnt of the e-stop (counted apart, as commands in flight)
        after = [r for r in receipts if scenario["estop"] <= r[0] < scenario["release"]]
        holds = [i for i, r in enumerate(after) if r[1] == 1]
        if holds:
            first = holds[0]
            result["estop_hold_ms"] = (after[first][0] - scenario["estop"]) * 1e3
            result["estop_hold_points"] = after[first][1]
            result["commands_in_flight_at_estop"] = first
            # motion commands (chunks) between the hold and the release; a repeated hold moves nothing
            result["commands_after_estop"] = sum(1 for r in after[first + 1:] if r[1] > 1)
            result["holds_during_estop"] = sum(1 for r in after[first + 1:] if r[1] == 1)
        else:
            result["commands_after_estop"] = sum(1 for r in after if r[1] > 1)
    if "release" in scenario:
        result["chunks_after_release"] = sum(1 for r in receipts if r[2] and r[1] > 1 and scenario["release"] <= r[0]
                                             < scenario.get("deadman_due", math.inf))
    if "deadman_due" in scenario:
        holds = [r for r in receipts if r[0] >= scenario["deadman_due"] and r[1] == 1]
        if holds:
            result["deadman_hold_ms"] = (holds[0][0] - scenario["deadman_due"]) * 1e3
            result["deadman_hold_points"] = holds[0][1]
    return result


def _executed_rate(receipts: list[tuple[float, int, bool]], t_start: float, t_end: float, metrics: Any) -> float:
    """Trajectory points reached per second over the whole run (the simulator counts them)."""
    total = (receipts[-1][0] - receipts[0][0]) if len(receipts) > 1 else 0.0
    return metrics.executed_points / total if total > 0 else 0.0
