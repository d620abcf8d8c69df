"""The node's parameters: one source of truth for names, types, defaults, ranges and runtime changeability.

The rclpy node declares every entry of ``PARAMETER_SPEC`` with a ``ParameterDescriptor`` built from it, the
config YAML files are checked against it by a test, and the README's table is generated from it
(``python -m cosmos3_ros.runtime.parameters``). Only entries with ``runtime=True`` may change while the node
runs; all others are read-only after start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..processing import limits
from ..processing.actions import STAT_KEYS
from ..processing.profiles import MODES, NORMALIZATIONS, PROFILES

PARAMETER_TYPES = ("bool", "integer", "double", "string", "string_array", "double_array")
_MAX_INT = 2**31 - 1


@dataclass(frozen=True)
class ParameterSpec:
    """One ROS parameter of the policy node.

    Attributes:
        name: parameter name.
        type: one of ``PARAMETER_TYPES`` (the ROS parameter type; YAML values must match it exactly).
        default: value when neither YAML nor command line sets it.
        description: one line for ``ros2 param describe`` and the docs table.
        group: section of the docs table.
        runtime: may be changed while running (validated by the set-parameters callback); else read-only.
        range: inclusive (low, high) for numbers, or for every element of a ``double_array``.
        choices: allowed values of a string (or of every element of a ``string_array``).
        non_empty: strings / arrays that may not be empty.

    """

    name: str
    type: str
    default: Any
    description: str
    group: str
    runtime: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    non_empty: bool = False

    @property
    def read_only(self) -> bool:
        """Load-time parameters are declared read-only."""
        return not self.runtime

    def validate(self, value: Any) -> Any:
        """Return ``value`` (tuples for arrays) if it has this parameter's exact type and is in range.

        Raises:
            InputError: naming the parameter, the value and what was expected.

        """
        checked = _check_type(self, value)
        if self.range is not None:
            low, high = self.range
            values = checked if isinstance(checked, tuple) else (checked,)
            for v in values:
                if not (low <= v <= high) or (isinstance(v, float) and math.isnan(v)):
                    raise InputError(f"parameter {self.name!r}: {v!r} is out of range; expected [{low}, {high}]")
        if self.choices is not None:
            values = checked if isinstance(checked, tuple) else (checked,)
            for v in values:
                if v not in self.choices:
                    raise InputError(
                        f"parameter {self.name!r}: {v!r} is not allowed; expected one of {list(self.choices)}"
                    )
        if self.non_empty and len(checked) == 0:
            raise InputError(f"parameter {self.name!r}: is empty; expected a non-empty {self.type.replace('_', ' ')}")
        return checked


def _check_type(spec: ParameterSpec, value: Any) -> Any:
    expected = spec.type
    if expected == "bool":
        ok = isinstance(value, bool)
    elif expected == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected == "double":
        ok = isinstance(value, float)
    elif expected == "string":
        ok = isinstance(value, str)
    else:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"parameter {spec.name!r}: {value!r} is a {type(value).__name__}; expected a {expected}")
        item_type = float if expected == "double_array" else str
        bad = [v for v in value if not isinstance(v, item_type) or isinstance(v, bool)]
        if bad:
            hint = " (write 1.0, not 1)" if item_type is float and all(isinstance(v, int) for v in bad) else ""
            raise InputError(f"parameter {spec.name!r}: elements {bad!r} are not {item_type.__name__}s{hint}")
        return tuple(value)
    if not ok:
        hint = " (write 1.0, not 1)" if expected == "double" and isinstance(value, int) else ""
        raise InputError(
            f"parameter {spec.name!r}: {value!r} is a {type(value).__name__}; expected a {expected}{hint}"
        )
    return value


_DROID_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
_DROID_CAMERAS = ("/camera/wrist/image_raw", "/camera/exterior_1/image_raw", "/camera/exterior_2/image_raw")

PARAMETER_SPEC: tuple[ParameterSpec, ...] = (
    # --- model (load time) ---
    ParameterSpec("checkpoint", "string", "", "Cosmos3 checkpoint folder (Hugging Face layout). Required.", "model"),
    ParameterSpec("profile", "string", "released_droid_policy",
                  "Action contract: released_droid_policy (3 cameras + joint state -> [32, 8] joint targets) or base "
                  "(one camera -> [chunk, raw_action_dim] domain actions).", "model", choices=tuple(PROFILES)),
    ParameterSpec("mode", "string", "", "policy | forward_dynamics | inverse_dynamics; empty = the profile's mode.",
                  "model", choices=("", *MODES)),
    ParameterSpec("domain_name", "string", "", "Embodiment domain (e.g. droid_lerobot); empty = the profile's.",
                  "model"),
    ParameterSpec("domain_id", "integer", -1, "Action-head row of the domain; -1 = from the domain table.",
                  "model", range=(-1, 31)),
    ParameterSpec("raw_action_dim", "integer", 0, "Action columns the robot uses; 0 = the profile's / domain's.",
                  "model", range=(0, 64)),
    ParameterSpec("steps", "integer", 0, "Denoising steps; 0 = the profile's (released: 4).", "model",
                  range=(0, limits.MAX_STEPS)),
    ParameterSpec("seed", "integer", -1, "Noise seed; -1 = the profile's (0).", "model", range=(-1, _MAX_INT)),
    ParameterSpec("binarize_gripper", "bool", False, "Threshold gripper columns at 0.5 in the output.", "model"),
    ParameterSpec("device", "string", "cuda", "Torch device for the model (cuda, cuda:1, cpu).", "model",
                  non_empty=True),
    ParameterSpec("devices", "string", "", "Two GPUs, one per CFG branch (e.g. cuda:0,cuda:1); empty = 'device'.",
                  "model"),
    ParameterSpec("weights", "string", "bf16", "Transformer weight storage: bf16, or fp8 (fits a 24 GB GPU).",
                  "model", choices=("bf16", "fp8")),
    ParameterSpec("guidance", "double", -1.0, "Classifier-free guidance scale; -1 = the profile's (released: 3).",
                  "model", runtime=True, range=(-1.0, limits.MAX_GUIDANCE)),
    # --- action statistics (base-model domains) ---
    ParameterSpec("action_normalization", "string", "",
                  "De-normalisation of model actions: none, meanstd, minmax, quantile, quantile_rot; empty = the "
                  "profile's (none for both built-in profiles).", "statistics", runtime=True,
                  choices=("", "none", *NORMALIZATIONS)),
    ParameterSpec("action_stats_file", "string", "",
                  "Stats JSON (keys mean/std/min/max/q01/q99, under global_raw or global or top level). Inline "
                  "action_stats_* arrays win over the file.", "statistics", runtime=True),
    *(
        ParameterSpec(f"action_stats_{key}", "double_array", (), f"Inline per-column {key} of the training actions "
                      "(raw_action_dim values); empty = unset.", "statistics", runtime=True)
        for key in STAT_KEYS
    ),
    # --- inputs (load time) ---
    ParameterSpec("camera_topics", "string_array", _DROID_CAMERAS,
                  "One topic per profile camera, in the profile's order (released: wrist, exterior_1, exterior_2; "
                  "base: image). A topic ending in /compressed is a sensor_msgs/CompressedImage, else an Image.",
                  "inputs", non_empty=True),
    ParameterSpec("joint_state_topic", "string", "/joint_states", "sensor_msgs/JointState with the arm joints.",
                  "inputs", non_empty=True),
    ParameterSpec("joint_names", "string_array", _DROID_JOINTS,
                  "Arm joints in action-column order (state input and JointTrajectory output).", "inputs",
                  non_empty=True),
    ParameterSpec("gripper_source", "string", "joint_state",
                  "joint_state: read gripper_joint from a JointState; none: assume open (0).", "inputs",
                  choices=("joint_state", "none")),
    ParameterSpec("gripper_joint_state_topic", "string", "",
                  "JointState topic carrying gripper_joint; empty = joint_state_topic.", "inputs"),
    ParameterSpec("gripper_joint", "string", "fr3_finger_joint1", "Joint whose position measures the gripper.",
                  "inputs"),
    ParameterSpec("gripper_open_position", "double", 0.04,
                  "gripper_joint position when fully open (maps to 0).", "inputs", range=(-1e3, 1e3)),
    ParameterSpec("gripper_closed_position", "double", 0.0,
                  "gripper_joint position when fully closed (maps to 1).", "inputs", range=(-1e3, 1e3)),
    ParameterSpec("task_topic", "string", "task",
                  "std_msgs/String task sentence (reliable, transient local).", "inputs", non_empty=True),
    ParameterSpec("task", "string", "", "Task sentence until one arrives on task_topic; settable at runtime.",
                  "inputs", runtime=True),
    ParameterSpec("actions_topic", "string", "",
                  "forward_dynamics: known actions (ActionChunk or JointTrajectory); empty = none.", "inputs"),
    ParameterSpec("actions_topic_type", "string", "ActionChunk", "Message type on actions_topic.", "inputs",
                  choices=("ActionChunk", "JointTrajectory")),
    ParameterSpec("actions_file", "string", "",
                  "forward_dynamics: known actions JSON ({shape, data} or {action_chunks}); used until a message "
                  "arrives on actions_topic.", "inputs"),
    # --- timing ---
    ParameterSpec("inference_rate", "double", 2.0, "Snapshots per second handed to the model (node clock).",
                  "timing", runtime=True, range=(0.01, 100.0)),
    ParameterSpec("snapshot_trigger", "string", "event",
                  "event: a snapshot is taken as soon as the model is free (at most inference_rate per second), so "
                  "the model starts on the newest camera set; timer: only at inference_rate ticks (a snapshot taken "
                  "while the model runs waits for it). Streaming execution schedules its own snapshots.", "timing",
                  runtime=True, choices=("event", "timer")),
    ParameterSpec("max_observation_age", "double", 0.5,
                  "Skip a snapshot whose oldest input stamp is older than this (seconds, node clock).", "timing",
                  range=(0.001, 3600.0)),
    ParameterSpec("sync_tolerance", "double", 0.05,
                  "Largest stamp difference between the inputs of one snapshot (seconds).", "timing",
                  range=(0.0, 60.0)),
    ParameterSpec("max_future_stamp", "double", 1.0,
                  "Drop (and count) an input stamped more than this ahead of the node clock (seconds).", "timing",
                  range=(0.0, 3600.0)),
    ParameterSpec("max_buffered_messages", "integer", 100,
                  "Ring-buffer cap per input (memory bound); inverse_dynamics needs chunk/fps seconds of frames.",
                  "timing", range=(2, 10000)),
    ParameterSpec("diagnostics_period", "double", 1.0, "Seconds between /diagnostics messages.", "timing",
                  range=(0.05, 60.0)),
    # --- outputs and safety ---
    ParameterSpec("frame_id", "string", "base_link", "header.frame_id of ActionChunk and JointTrajectory.",
                  "outputs"),
    ParameterSpec("dry_run", "bool", True,
                  "Publish ActionChunk only; true = never publish JointTrajectory (robot commands).", "outputs",
                  runtime=True),
    ParameterSpec("execution_horizon", "integer", 8,
                  "streaming: chunk steps executed before the next chunk takes over (every row is still sent, as a "
                  "fallback); per_chunk: rows put into the JointTrajectory (0 = all).", "outputs", range=(0, 10000)),
    ParameterSpec("joint_position_min", "double_array", (),
                  "Lower joint limits (rad), one per joint_names entry; empty = no clamp.", "outputs",
                  range=(-100.0, 100.0)),
    ParameterSpec("joint_position_max", "double_array", (),
                  "Upper joint limits (rad), one per joint_names entry; empty = no clamp.", "outputs",
                  range=(-100.0, 100.0)),
    ParameterSpec("max_joint_step", "double", 0.0,
                  "Largest joint change per step (rad per dt) in the JointTrajectory, starting from the measured "
                  "joints; 0 = off.", "outputs", range=(0.0, 100.0)),
    # --- closed-loop execution (policy mode, joint-position profiles; docs/execution.md) ---
    ParameterSpec("execution_mode", "string", "streaming",
                  "streaming: the execution layer schedules observations from the measured latency and hands chunks "
                  "over smoothly; per_chunk: one JointTrajectory per chunk at inference_rate (open loop).",
                  "execution", choices=("streaming", "per_chunk")),
    ParameterSpec("handover", "string", "prefix+blend",
                  "How a new chunk takes over: none, blend, rollforward, prefix, or a '+' combination "
                  "(e.g. prefix+blend; rollforward and prefix exclude each other).", "execution"),
    ParameterSpec("blend_steps", "integer", 4, "Rows cross-faded by the blend hand-over.", "execution",
                  range=(1, 64)),
    ParameterSpec("expected_model_latency", "double", 0.7,
                  "Observation -> chunk latency (s) assumed until measured.", "execution", range=(0.0, 60.0)),
    ParameterSpec("latency_margin", "double", 0.05, "Added to the latency estimate when scheduling (s).",
                  "execution", range=(0.0, 10.0)),
    ParameterSpec("min_lead_time", "double", 0.1,
                  "The chunk's first trajectory point lies at least this far in the future (s), after an anchor "
                  "point at half this lead that repeats the running command: covers transport and scheduling "
                  "delays before the controller receives it.", "execution",
                  range=(0.0, 5.0)),
    ParameterSpec("hold_time", "double", 0.25,
                  "time_from_start of a hold point (s); longer when the acceleration limit needs it.", "execution",
                  range=(0.001, 10.0)),
    ParameterSpec("trajectory_velocities", "bool", True,
                  "Send velocities with the positions (cubic interpolation in the controller); false = positions "
                  "only (linear).", "execution"),
    ParameterSpec("execution_rate", "double", 50.0,
                  "Execution timer (Hz): scheduling, gripper commands, dead-man check.", "execution",
                  range=(1.0, 1000.0)),
    ParameterSpec("joint_velocity_max", "double_array", (),
                  "Per-joint velocity limit (rad/s) of commands; empty = none.", "execution", range=(0.0, 100.0)),
    ParameterSpec("joint_acceleration_max", "double_array", (),
                  "Per-joint acceleration limit (rad/s^2) of commands; empty = none.", "execution",
                  range=(0.0, 1000.0)),
    ParameterSpec("limit_violation", "string", "clamp",
                  "A target beyond a limit: clamp it (counted) or reject the whole chunk.", "execution",
                  choices=("clamp", "reject")),
    ParameterSpec("gripper_output", "string", "auto",
                  "auto: control_msgs/action/GripperCommand when importable, else the topic; action; topic; none.",
                  "execution", choices=("auto", "action", "topic", "none")),
    ParameterSpec("gripper_action", "string", "/fr3_gripper/gripper_action",
                  "GripperCommand action server (franka_gripper's).", "execution"),
    ParameterSpec("gripper_action_type", "string", "control_msgs/action/GripperCommand",
                  "Action type of gripper_action (tests use a stand-in package with the same definition).",
                  "execution"),
    ParameterSpec("gripper_command_topic", "string", "~/gripper_command",
                  "std_msgs/Float64 finger position (m) when no action is used.", "execution"),
    ParameterSpec("gripper_close_threshold", "double", 0.6,
                  "Close when the gripper column rises above this (0 open .. 1 closed).", "execution",
                  range=(0.0, 1.0)),
    ParameterSpec("gripper_open_threshold", "double", 0.4,
                  "Open when the gripper column falls below this.", "execution", range=(0.0, 1.0)),
    ParameterSpec("gripper_min_interval", "double", 0.5, "Least time between gripper commands (s).", "execution",
                  range=(0.0, 60.0)),
    ParameterSpec("gripper_max_effort", "double", 20.0, "Grasp force (N) sent with each command.", "execution",
                  range=(0.0, 1000.0)),
    ParameterSpec("gripper_command_open", "double", 0.04, "Finger position (m) commanded to open.", "execution",
                  range=(-1.0, 1.0)),
    ParameterSpec("gripper_command_closed", "double", 0.0, "Finger position (m) commanded to close.", "execution",
                  range=(-1.0, 1.0)),
    ParameterSpec("estop_topic", "string", "estop",
                  "std_msgs/Bool (reliable, transient local): true engages the latched e-stop; only ~/release "
                  "releases it.", "execution", non_empty=True),
    ParameterSpec("heartbeat_topic", "string", "",
                  "std_msgs/Bool dead-man heartbeat (true = alive, false = hold now); empty = no dead-man.",
                  "execution"),
    ParameterSpec("heartbeat_timeout", "double", 0.5, "No heartbeat for this long -> hold (s).", "execution",
                  range=(0.01, 60.0)),
    ParameterSpec("publish_rollout", "bool", False,
                  "Decode the imagined rollout; publish it as rgb8 Images and write the last one as an mp4.",
                  "outputs"),
    ParameterSpec("rollout_dir", "string", "",
                  "Folder for last_rollout.mp4; empty = <system temp>/cosmos3_ros.", "outputs"),
)

PARAMETERS: dict[str, ParameterSpec] = {spec.name: spec for spec in PARAMETER_SPEC}
# Declared by every ROS 2 node itself; allowed in parameter files.
ROS_BUILTIN_PARAMETERS = ("use_sim_time",)


def resolve_parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``values``; every value validated. Unknown names are an error.

    Raises:
        InputError: an unknown name or an invalid value.

    """
    unknown = sorted(set(values) - set(PARAMETERS) - set(ROS_BUILTIN_PARAMETERS))
    if unknown:
        raise InputError(f"unknown parameter(s) {unknown}; expected names from PARAMETER_SPEC")
    resolved = {spec.name: spec.validate(spec.default) for spec in PARAMETER_SPEC}
    for name, value in values.items():
        if name in PARAMETERS:
            resolved[name] = PARAMETERS[name].validate(value)
    return resolved


def markdown_table() -> str:
    """The docs table: one row per parameter, grouped."""
    lines = ["| parameter | type | default | runtime | description |", "|---|---|---|---|---|"]
    for spec in PARAMETER_SPEC:
        default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        shown = f"`{default!r}`" if default != "" else "`''`"
        extra = ""
        if spec.range is not None:
            extra = f" Range [{spec.range[0]}, {spec.range[1]}]."
        lines.append(
            f"| `{spec.name}` | {spec.type} | {shown} | {'yes' if spec.runtime else 'no'} | "
            f"{spec.description.replace('|', '/')}{extra} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
