"""``PolicyNodeCore``: everything the policy node does, without rclpy.

The rclpy node (``cosmos3_ros.ros.policy_node``) only wires topics, timers, parameters and services to the
methods here; tests drive the same methods with ``rosbags`` messages decoded from real CDR bytes.

Threads: subscription callbacks (``on_image``, ``on_joint_state``, ...) only validate cheaply and buffer;
``on_timer`` takes a synchronised snapshot and hands it to the one inference thread (latest wins); that
thread decodes, runs the model and publishes. ``shutdown`` stops and joins it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import Cosmos3Error, InputError, ProfileError
from ..processing.actions import STAT_KEYS, ActionStats, as_action_array, load_action_file
from ..processing.profiles import Profile
from ..processing.request import ActionPrediction, ActionRequest
from .action_chunk import (
    ACTION_CHUNK_TYPE,
    ActionChunkData,
    MessageFactory,
    action_chunk_to_array,
    build_action_chunk,
    build_joint_trajectory,
    build_rollout_images,
    joint_trajectory_to_array,
)
from .diagnostics import NodeDiagnostics, build_diagnostic_array
from .image_decoding import is_compressed, ros_image_to_rgb
from .inference_worker import InferenceWorker
from .observation_buffer import ObservationBuffer, Stamped
from .parameters import PARAMETERS, resolve_parameters
from .robot_state import read_gripper, read_joint_positions
from .safety import JointSafetyLimits, make_safe_joint_targets, require_finite, trajectory_allowed
from .stamps import seconds_to_ns, stamp_to_ns

log = logging.getLogger("cosmos3_ros.node")

# QoS roles the rclpy layer maps to profiles (see ros/policy_node.py).
QOS_SENSOR = "sensor_data"  # best effort, keep last 1: cameras (a late frame is worthless)
# best effort, keep last 10: cameras in inverse dynamics, where every frame of the window is used; with depth 1 a
# frame the executor has not taken yet is overwritten by the next one and the window holds the one before.
QOS_VIDEO = "video"
QOS_STATE = "state"  # best effort, keep last 10: joint states at up to 1 kHz
QOS_LATCHED = "latched"  # reliable, transient local, keep last 1: the task sentence
QOS_RELIABLE = "reliable"  # reliable, volatile, keep last 1 (inputs) / 10 (outputs)

JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
JOINT_TRAJECTORY_TYPE = "trajectory_msgs/msg/JointTrajectory"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
STRING_TYPE = "std_msgs/msg/String"
DIAGNOSTIC_ARRAY_TYPE = "diagnostic_msgs/msg/DiagnosticArray"

GRIPPER_DIMENSION = "gripper"
_LOG_THROTTLE_S = 5.0


class ExecutionHooks(Protocol):
    """What the node core asks of a closed-loop execution layer (``cosmos3_ros.execution.node_execution``).

    The core stays unaware of how chunks are executed: it asks whether to take a snapshot now, lets the layer
    plan the request (state / prefix rows) and hands it every prediction of a planned snapshot.
    """

    def wants_snapshot(self, now: float) -> bool:
        """Whether an observation should be captured now."""
        ...

    def plan(self, now: float, snapshot: Snapshot) -> Any:
        """Plan the request for ``snapshot`` (stored in ``Snapshot.plan``)."""
        ...

    def adjust_request(self, request: ActionRequest, plan: Any) -> None:
        """Change the request as planned (state row, action prefix)."""
        ...

    def on_prediction(self, plan: Any, actions: np.ndarray) -> None:
        """A chunk ``[chunk, raw_action_dim]`` for a planned snapshot (worker thread)."""
        ...

    def on_failure(self, plan: Any) -> None:
        """The request of a planned snapshot failed (worker thread)."""
        ...

    def on_skip(self, now: float, reason: str) -> None:
        """A wanted snapshot could not be taken (``stale``, ``incomplete``, ...)."""
        ...

    def on_shutdown(self) -> None:
        """The node is stopping."""
        ...

    def report(self) -> dict[str, Any]:
        """Values for /diagnostics (e-stop, holds, chunks refused, values clamped, ...)."""
        ...


class ActionModel(Protocol):
    """What the node needs from ``processing.predictor.ActionPredictor``."""

    profile: Profile

    def predict(self, request: ActionRequest) -> ActionPrediction:
        """Run one request."""
        ...


@dataclass(frozen=True)
class SubscriptionSpec:
    """One input topic: the rclpy layer creates exactly these subscriptions."""

    topic: str
    type_name: str
    qos: str
    callback: Callable[[Any], None]


@dataclass(frozen=True)
class PublicationSpec:
    """One output topic, published through ``publish(key, msg)``."""

    key: str
    topic: str
    type_name: str
    qos: str


@dataclass(frozen=True)
class Snapshot:
    """One synchronised observation handed to the worker.

    Attributes:
        stamp_ns: stamp of the newest input used (the ActionChunk header stamp).
        frame0_ns: time of pixel frame 0 (the camera set for policy / forward dynamics, the first grid time
            for inverse dynamics); row k of the chunk applies at ``frame0_ns + (k + 1) * dt``.
        cameras: camera name -> buffered image message (policy, forward dynamics).
        video: ``chunk + 1`` camera sets on the model's time grid (inverse dynamics).
        state: ``[q..., gripper]`` at frame 0 when the profile takes a state (or joints are needed for safety).
        known_actions: ``[T, raw_action_dim]`` (forward dynamics).
        age_s: node-clock age of the oldest input at snapshot time.
        build_s: seconds spent building the snapshot (part of the ROS overhead).
        held_frames: inverse dynamics: (camera, step) samples that repeat the previous step's frame because no
            newer frame was buffered (a camera slower than the model's fps, or a lost frame).

    """

    tick: int
    stamp_ns: int
    frame0_ns: int
    cameras: dict[str, Stamped] | None
    video: list[dict[str, Stamped]] | None
    state: np.ndarray | None
    task: str
    known_actions: np.ndarray | None
    age_s: float
    build_s: float
    plan: Any = None
    held_frames: int = 0


def camera_message_type(topic: str) -> str:
    """image_transport naming: a topic ending in ``/compressed`` carries ``CompressedImage``."""
    return COMPRESSED_IMAGE_TYPE if topic.rstrip("/").endswith("/compressed") else IMAGE_TYPE


def stats_from_parameters(values: Mapping[str, Any], normalization: str | None) -> ActionStats | None:
    """Action statistics from ``action_stats_file`` overlaid with the inline ``action_stats_*`` arrays."""
    merged: dict[str, Any] = {}
    sources = []
    if values["action_stats_file"]:
        from_file = ActionStats.from_file(values["action_stats_file"], normalization)
        merged.update({k: getattr(from_file, k) for k in STAT_KEYS if getattr(from_file, k) is not None})
        sources.append(from_file.source)
    inline = {k: list(values[f"action_stats_{k}"]) for k in STAT_KEYS if len(values[f"action_stats_{k}"]) > 0}
    if inline:
        merged.update(inline)
        sources.append("parameters action_stats_" + "/".join(inline))
    if not merged:
        return None
    return ActionStats.from_mapping(merged, source=" + ".join(sources))


def check_stats_width(stats: ActionStats | None, width: int) -> None:
    """Every statistic given must have one value per action column, whether or not it is used now.

    Raises:
        ProfileError: naming the statistic, its length and the expected width.

    """
    if stats is None:
        return
    for key in STAT_KEYS:
        values = getattr(stats, key)
        if values is not None and values.shape != (width,):
            raise ProfileError(
                f"action stats {stats.source}: {key!r} has {values.size} values; expected {width} (raw_action_dim)"
            )


def profile_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """``ActionPredictor.load(overrides=...)`` from node parameters (sentinels -1 / 0 / '' mean "profile's")."""
    overrides: dict[str, Any] = {}
    if values["mode"]:
        overrides["mode"] = values["mode"]
    if values["domain_name"]:
        overrides["domain_name"] = values["domain_name"]
    if values["domain_id"] >= 0:
        overrides["domain_id"] = values["domain_id"]
    if values["raw_action_dim"] > 0:
        overrides["raw_action_dim"] = values["raw_action_dim"]
    if values["steps"] > 0:
        overrides["steps"] = values["steps"]
    if values["seed"] >= 0:
        overrides["seed"] = values["seed"]
    if values["guidance"] >= 0:
        overrides["guidance"] = values["guidance"]
    if values["binarize_gripper"]:
        overrides["binarize_gripper"] = True
    normalization = values["action_normalization"]
    if normalization not in ("", "none"):
        overrides["normalization"] = normalization
    stats = stats_from_parameters(values, normalization if normalization not in ("", "none") else None)
    if stats is not None:
        overrides["stats"] = stats
    return overrides


def load_action_model(values: Mapping[str, Any]) -> ActionModel:
    """Load ``ActionPredictor`` as the parameters say (the slow part of node start-up).

    Raises:
        ProfileError: no checkpoint given, or the profile contradicts the checkpoint.

    """
    if not values["checkpoint"]:
        raise ProfileError("parameter 'checkpoint' is empty; expected the checkpoint folder")
    from ..processing.predictor import ActionPredictor

    predictor = ActionPredictor.load(
        values["checkpoint"], values["profile"], device=values["device"], overrides=profile_overrides(values),
        decode_rollout=values["publish_rollout"], devices=values["devices"] or None, weights=values["weights"],
    )
    if str(values["devices"] or values["device"]).startswith("cuda"):
        # compile the layers and capture the CUDA graphs before the first real observation arrives
        log.info("warming up the engine (layer compilation and CUDA-graph capture take about 20 s)")
        elapsed = predictor.warm_up()
        if elapsed is not None:
            log.info("engine warm: %.1f s", elapsed / 1e3)
    return predictor


class PolicyNodeCore:
    """All node behaviour: buffering, snapshots, the inference thread, outputs, parameters, diagnostics.

    Args:
        model: a loaded ``ActionPredictor`` (or anything with ``profile`` and ``predict``).
        parameters: parameter values by name (missing names take their defaults); validated here.
        clock: node clock in seconds (sim time under ``use_sim_time``).
        publish: ``publish(key, msg)`` for the keys of ``publications``; called from the worker thread and
            the diagnostics timer.
        factory: builds messages (rclpy in the node, rosbags in tests).
        set_timer_period: called with the period when ``inference_rate`` changes at runtime, and after each
            event snapshot: the node sets it and restarts the timer from now.
        diagnostic_name / hardware_id: the DiagnosticStatus ``name`` / ``hardware_id``.
        start_worker: start the inference thread now (tests may start it later).
        execution: the closed-loop execution layer; it schedules snapshots and publishes commands when
            ``execution_mode`` is ``streaming`` and commands are allowed (``dry_run`` off, policy mode, joint
            positions). None = one JointTrajectory per chunk.

    """

    def __init__(
        self,
        model: ActionModel,
        parameters: Mapping[str, Any],
        *,
        clock: Callable[[], float],
        publish: Callable[[str, Any], None],
        factory: MessageFactory,
        set_timer_period: Callable[[float], None] | None = None,
        diagnostic_name: str = "cosmos3_ros: policy_node",
        hardware_id: str = "",
        start_worker: bool = True,
        execution: ExecutionHooks | None = None,
        request_snapshot: Callable[[], None] | None = None,
    ) -> None:
        self.params = resolve_parameters(parameters)
        self._model = model
        self._base_guidance = model.profile.guidance
        self._clock = clock
        self._publish = publish
        self._factory = factory
        self._set_timer_period = set_timer_period
        # Asks the caller to run on_event() soon, in the context where on_timer runs (the rclpy layer triggers
        # a guard condition of the snapshot callback group): called from input callbacks and the worker.
        self._request_snapshot = request_snapshot
        self._diagnostic_name = diagnostic_name
        self._hardware_id = hardware_id or self.params["device"]
        self._lock = threading.Lock()
        self._log_times: dict[str, float] = {}
        self.execution = execution

        profile = model.profile
        p = self.params
        check_stats_width(profile.stats, profile.raw_action_dim)
        self.mode = p["mode"] or profile.mode
        self.cameras = profile.cameras
        if len(p["camera_topics"]) != len(self.cameras):
            raise ProfileError(
                f"parameter 'camera_topics' has {len(p['camera_topics'])} topics; profile {profile.name!r} needs "
                f"{len(self.cameras)}, one per camera {list(self.cameras)}"
            )
        self.camera_topics = dict(zip(self.cameras, p["camera_topics"], strict=True))
        self.joint_names = tuple(p["joint_names"])
        self.joint_space = profile.action_space == "joint_position"
        if self.joint_space:
            arm_dims = profile.raw_action_dim - len(profile.gripper_dims)
            if len(self.joint_names) != arm_dims:
                raise ProfileError(
                    f"parameter 'joint_names' has {len(self.joint_names)} names; profile {profile.name!r} has "
                    f"{arm_dims} joint columns"
                )
        self.uses_state = profile.use_state or self.joint_space
        self.gripper_from_joint_state = p["gripper_source"] == "joint_state"
        if self.gripper_from_joint_state and p["gripper_open_position"] == p["gripper_closed_position"]:
            raise ProfileError("parameters 'gripper_open_position' and 'gripper_closed_position' are equal; "
                               "expected the finger positions of an open and a closed gripper")
        gripper_topic = p["gripper_joint_state_topic"] or p["joint_state_topic"]
        self.separate_gripper_topic = (
            self.uses_state and self.gripper_from_joint_state and gripper_topic != p["joint_state_topic"]
        )
        self.safety = JointSafetyLimits.from_parameters(
            self.joint_names, p["joint_position_min"], p["joint_position_max"], p["max_joint_step"]
        )
        self.dt_s = 1.0 / profile.fps
        state_sources = ["joint_state"] if self.uses_state else []
        if self.separate_gripper_topic:
            state_sources.append("gripper")
        self.sync_sources = (*self.cameras, *state_sources)
        history_s = profile.chunk * self.dt_s if self.mode == "inverse_dynamics" else 0.0
        min_interval = {name: min(p["sync_tolerance"] / 2.0, 0.5 * self.dt_s) for name in state_sources}
        if self.mode == "inverse_dynamics":
            min_interval.update({name: 0.5 * self.dt_s for name in self.cameras})
        self.buffer = ObservationBuffer(
            self.sync_sources,
            max_messages=p["max_buffered_messages"],
            retention_s=history_s + p["max_observation_age"] + p["sync_tolerance"] + 0.5,
            min_interval_s=min_interval,
        )
        uses_actions_topic = self.mode == "forward_dynamics" and bool(p["actions_topic"])
        self.diagnostics = NodeDiagnostics([*self.sync_sources, "task", *(["actions"] if uses_actions_topic else [])])
        self.task = p["task"].rstrip()  # trailing whitespace only, as NVIDIA's server and the CLI do
        self.dry_run = p["dry_run"]
        self.paused = False
        self._tick = 0
        self._sequence = 0
        self._last_submitted_ns: int | None = None
        self._last_submit_clock_s: float | None = None
        # An event found the newest camera set without its joint state yet: the next state message wakes too
        # (joint states arrive at up to 1 kHz, so they only wake while a set waits for them).
        self._event_waits_for_state = False
        self._last_tick_clock_s: float | None = None
        self._known_actions_file: np.ndarray | None = None
        self._known_actions_topic: tuple[int, np.ndarray] | None = None
        if self.mode == "forward_dynamics" and p["actions_file"]:
            self._known_actions_file = as_action_array(
                load_action_file(p["actions_file"]), profile.raw_action_dim, f"actions_file {p['actions_file']!r}"
            )
        self.rollout_path = Path(p["rollout_dir"] or Path(tempfile.gettempdir()) / "cosmos3_ros") / "last_rollout.mp4"
        self.last_rollout_video = ""
        # PIL and numpy release the GIL while decoding, so cameras decode in parallel on the worker's behalf.
        self._decode_pool = None
        if len(self.cameras) > 1:
            self._decode_pool = ThreadPoolExecutor(len(self.cameras), thread_name_prefix="cosmos3-decode")
        self.worker: InferenceWorker[Snapshot] = InferenceWorker(self._process, self._on_job_error,
                                                                 on_idle=self._wake_for_snapshot)
        # Encoding the rollout mp4 takes longer than the model on a CPU: a thread of its own keeps it off the
        # inference thread (the next snapshot does not wait for it) and out of the ROS overhead figure.
        # Latest wins, as for snapshots: a video not started when a newer rollout arrives is skipped.
        self._rollout_writer: InferenceWorker[tuple[int, np.ndarray, float]] | None = None
        if p["publish_rollout"]:
            self._rollout_writer = InferenceWorker(self._write_rollout, self._on_rollout_error,
                                                   name="cosmos3-rollout-mp4")
        self.subscriptions = self._subscription_specs()
        self.publications = self._publication_specs()
        if start_worker:
            self.worker.start()
            if self._rollout_writer is not None:
                self._rollout_writer.start()

    # ----- wiring ------------------------------------------------------------------------------------------

    @property
    def model(self) -> ActionModel:
        """The model serving now (replaced when runtime parameters change the profile)."""
        return self._model

    @property
    def profile(self) -> Profile:
        """The profile serving now."""
        return self._model.profile

    @property
    def streaming(self) -> bool:
        """Whether the execution layer schedules snapshots and commands the arm now."""
        allowed, _ = trajectory_allowed(dry_run=self.dry_run, mode=self.mode, joint_space=self.joint_space)
        return allowed and self.execution is not None and self.params["execution_mode"] == "streaming"

    @property
    def event_snapshots(self) -> bool:
        """Whether snapshots are taken when the model frees up (``snapshot_trigger: event``, not streaming)."""
        return self.params["snapshot_trigger"] == "event" and not self.streaming

    @property
    def timer_period_s(self) -> float:
        """Snapshot timer period: 1 / execution_rate while streaming (the layer decides when), else
        1 / inference_rate.
        """
        rate = self.params["execution_rate"] if self.streaming else self.params["inference_rate"]
        return 1.0 / rate

    def latest_state(self) -> np.ndarray | None:
        """Newest buffered ``[q..., gripper]`` (None before the first joint state)."""
        if not self.uses_state:
            return None
        joints = self.buffer.latest("joint_state")
        if joints is None:
            return None
        items: dict[str, Stamped] = {"joint_state": joints}
        if self.separate_gripper_topic:
            gripper = self.buffer.latest("gripper")
            if gripper is None:
                return None
            items["gripper"] = gripper
        return self._state_vector(items)

    def _subscription_specs(self) -> list[SubscriptionSpec]:
        p = self.params
        camera_qos = QOS_VIDEO if self.mode == "inverse_dynamics" else QOS_SENSOR
        specs = [
            SubscriptionSpec(topic, camera_message_type(topic), camera_qos, self._camera_callback(name))
            for name, topic in self.camera_topics.items()
        ]
        if self.uses_state:
            specs.append(SubscriptionSpec(p["joint_state_topic"], JOINT_STATE_TYPE, QOS_STATE, self.on_joint_state))
        if self.separate_gripper_topic:
            specs.append(
                SubscriptionSpec(p["gripper_joint_state_topic"], JOINT_STATE_TYPE, QOS_STATE, self.on_gripper_state)
            )
        specs.append(SubscriptionSpec(p["task_topic"], STRING_TYPE, QOS_LATCHED, self.on_task))
        if self.mode == "forward_dynamics" and p["actions_topic"]:
            type_name = ACTION_CHUNK_TYPE if p["actions_topic_type"] == "ActionChunk" else JOINT_TRAJECTORY_TYPE
            specs.append(SubscriptionSpec(p["actions_topic"], type_name, QOS_RELIABLE, self.on_known_actions))
        return specs

    def _publication_specs(self) -> list[PublicationSpec]:
        specs = [
            PublicationSpec("action_chunk", "~/action_chunk", ACTION_CHUNK_TYPE, QOS_RELIABLE),
            PublicationSpec("diagnostics", "/diagnostics", DIAGNOSTIC_ARRAY_TYPE, QOS_RELIABLE),
        ]
        if self.joint_space and self.mode == "policy":
            specs.append(PublicationSpec("joint_trajectory", "~/joint_trajectory", JOINT_TRAJECTORY_TYPE, QOS_RELIABLE))
        if self.params["publish_rollout"]:
            specs.append(PublicationSpec("rollout_image", "~/rollout/image", IMAGE_TYPE, QOS_RELIABLE))
        return specs

    def _camera_callback(self, camera: str) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            self.on_image(camera, msg)

        return callback

    def _warn(self, key: str, message: str) -> None:
        """Log at most once per ``_LOG_THROTTLE_S`` per key (bad inputs can arrive at camera rate)."""
        now = time.monotonic()
        if now - self._log_times.get(key, -math.inf) >= _LOG_THROTTLE_S:
            self._log_times[key] = now
            log.warning(message)

    def _input_error(self, key: str, exc: Exception) -> None:
        self.diagnostics.input_error(str(exc))
        self._warn(key, str(exc))

    # ----- subscription callbacks (cheap: validate and buffer) ---------------------------------------------

    def on_image(self, camera: str, msg: Any) -> None:
        """Buffer one camera frame (``Image`` or ``CompressedImage``); decoding happens on the worker."""
        now = self._clock()
        self.diagnostics.on_input(camera, now)
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if self._ahead_of_clock(camera, stamp_ns, now, self.camera_topics[camera]):
            return
        self.buffer.add(camera, stamp_ns, msg, now)
        self._wake_for_snapshot()

    def on_joint_state(self, msg: Any) -> None:
        """Buffer the arm joints (and the gripper, when it is on the same topic); count and drop bad ones."""
        now = self._clock()
        self.diagnostics.on_input("joint_state", now)
        topic = self.params["joint_state_topic"]
        try:
            q = read_joint_positions(msg, self.joint_names, what=f"joint state on {topic!r}")
            gripper: float | None = 0.0
            if self.gripper_from_joint_state and not self.separate_gripper_topic:
                gripper = self._read_gripper(msg, topic)
        except InputError as exc:
            self._input_error("joint_state", exc)
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if self._ahead_of_clock("joint_state", stamp_ns, now, topic):
            return
        self.buffer.add("joint_state", stamp_ns, (q, gripper), now)
        self._wake_for_snapshot(state=True)

    def on_gripper_state(self, msg: Any) -> None:
        """Buffer the gripper closure from its own JointState topic."""
        now = self._clock()
        self.diagnostics.on_input("gripper", now)
        try:
            gripper = self._read_gripper(msg, self.params["gripper_joint_state_topic"])
        except InputError as exc:
            self._input_error("gripper", exc)
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if self._ahead_of_clock("gripper", stamp_ns, now, self.params["gripper_joint_state_topic"]):
            return
        self.buffer.add("gripper", stamp_ns, gripper, now)
        self._wake_for_snapshot(state=True)

    def _ahead_of_clock(self, source: str, stamp_ns: int, now_s: float, topic: str) -> bool:
        """Drop (and count) an input stamped more than ``max_future_stamp`` ahead of the node clock.

        Kept, it would stay the newest stamp of its buffer until the clock caught up (an hour, for a camera
        whose clock is an hour off), so no later snapshot could synchronise with it.
        """
        ahead_s = stamp_ns / 1e9 - now_s
        limit = self.params["max_future_stamp"]
        # A clock at 0 is sim time before the first /clock message (a player may send data first): no reference.
        if ahead_s <= limit or now_s <= 0.0:
            return False
        self.diagnostics.count("future_stamps_dropped")
        self._input_error(f"future-{source}", InputError(
            f"{source} on {topic!r}: header stamp {stamp_ns / 1e9:.3f} s is {ahead_s:.3f} s ahead of the node "
            f"clock ({now_s:.3f} s); expected at most max_future_stamp={limit} s ahead; dropped"))
        return True

    def _read_gripper(self, msg: Any, topic: str) -> float:
        p = self.params
        what = f"joint state on {topic!r}"
        gripper = read_gripper(msg, p["gripper_joint"], p["gripper_open_position"], p["gripper_closed_position"], what)
        if gripper is None:
            raise InputError(f"{what}: lacks the gripper joint {p['gripper_joint']!r}; has {list(msg.name)}")
        return gripper

    def on_task(self, msg: Any) -> None:
        """Replace the task sentence; an empty one is rejected and counted."""
        self.diagnostics.on_input("task", self._clock())
        try:
            self.set_task(str(msg.data), f"task on {self.params['task_topic']!r}")
        except InputError as exc:
            self._input_error("task", exc)

    def set_task(self, text: str, what: str = "task") -> None:
        """Set the task sentence (trailing whitespace removed, as NVIDIA's server and the CLI do).

        Raises:
            InputError: an empty sentence.

        """
        task = text.rstrip()
        if not task.strip():
            raise InputError(f"{what}: empty string; expected a task sentence (the previous task stays)")
        with self._lock:
            self.task = task

    def on_known_actions(self, msg: Any) -> None:
        """Forward dynamics: keep the latest known actions (ActionChunk or JointTrajectory)."""
        self.diagnostics.on_input("actions", self._clock())
        topic = self.params["actions_topic"]
        try:
            actions = self._actions_from_message(msg, f"known actions on {topic!r}")
        except InputError as exc:
            self._input_error("actions", exc)
            return
        with self._lock:
            self._known_actions_topic = (stamp_to_ns(msg.header.stamp), actions)

    def _actions_from_message(self, msg: Any, what: str) -> np.ndarray:
        profile = self.profile
        if hasattr(msg, "chunk_length"):
            actions = action_chunk_to_array(msg, what)
        else:
            if not self.joint_space:
                raise InputError(f"{what}: a JointTrajectory, but profile {profile.name!r} has "
                                 f"{profile.action_space!r} actions; send an ActionChunk")
            columns = [*self.joint_names, *([GRIPPER_DIMENSION] if profile.gripper_dims else [])]
            actions = joint_trajectory_to_array(msg, columns, what)
        return as_action_array(actions, profile.raw_action_dim, what)

    # ----- timer: synchronised snapshot -> worker ----------------------------------------------------------

    def _wake_for_snapshot(self, state: bool = False) -> None:
        """A camera frame arrived, the model finished, or (``state``) a joint / gripper state arrived while a
        camera set waits for it: with event snapshots, ask for on_event().
        """
        if state and not self._event_waits_for_state:
            return
        if self._request_snapshot is not None and self.event_snapshots:
            self._request_snapshot()

    def on_event(self) -> str | None:
        """Event snapshot: when the model is idle, ``1 / inference_rate`` has passed since the last snapshot and a
        synchronised set newer than the last one is buffered, take it now (``on_timer``); else do nothing.

        Returns on_timer's result, or None when no snapshot was due (nothing is counted then: events arrive at
        camera rate, and the timer still reports why snapshots are skipped).
        """
        if not self.event_snapshots or self.paused or self.worker.busy or self.worker.has_pending:
            return None
        now = self._clock()
        if self._last_submit_clock_s is not None and now - self._last_submit_clock_s < self.timer_period_s:
            return None
        synced = self.buffer.synchronised(self.sync_sources, self.params["sync_tolerance"])
        if synced.items is None or synced.newest_ns == self._last_submitted_ns:
            # No new set yet. If a camera frame newer than the last snapshot is buffered, the set it starts may
            # be completed by a joint / gripper state: let those wake this. (Keying this on "no set at all"
            # missed the usual case, where the previous set is still the newest complete one: the new set then
            # waited for the next timer tick, 50 ms on average at inference_rate 10.)
            last = self._last_submitted_ns
            self._event_waits_for_state = last is None or any(
                (item := self.buffer.latest(name)) is not None and item.stamp_ns > last for name in self.cameras)
            return None
        self._event_waits_for_state = False
        result = self.on_timer()
        if result == "submitted" and self._set_timer_period is not None:
            # Restart the timer: its next tick falls when the rate cap above expires, so a set that arrives
            # within the cap is taken then, not at a tick up to a whole period after the cap expired.
            self._set_timer_period(self.timer_period_s)
        return result

    def on_timer(self) -> str:
        """Take a snapshot and hand it to the worker; returns ``submitted`` or the skip reason.

        With event snapshots a tick while the model runs returns ``model_running`` without a snapshot (not
        counted as a skip): the snapshot is taken when the model frees up, so it is as fresh as it can be.
        """
        if self.event_snapshots and (self.worker.busy or self.worker.has_pending):
            return "model_running"
        start = time.perf_counter()
        now = self._clock()
        streaming = self.streaming
        if streaming and self.execution is not None and not self.execution.wants_snapshot(now):
            return "not_scheduled"
        self._tick += 1
        if self._clock_went_back(now):
            return "clock_jumped_back"
        reason, detail, snapshot = self._snapshot(now, start)
        if snapshot is None:
            self.diagnostics.skip(reason, detail)
            if streaming and self.execution is not None:
                self.execution.on_skip(now, reason)
            return reason
        if streaming and self.execution is not None:
            snapshot = dataclasses.replace(snapshot, plan=self.execution.plan(now, snapshot))
        self._last_submitted_ns = snapshot.stamp_ns
        self._last_submit_clock_s = now
        self.diagnostics.count("snapshots_submitted")
        self.diagnostics.count("video_frames_held", snapshot.held_frames)
        if self.worker.submit(snapshot):
            self.diagnostics.count("snapshots_replaced")
            self.diagnostics.skip("model_busy", "a newer snapshot replaced one the model had not started")
        return "submitted"

    def _clock_went_back(self, now_s: float) -> bool:
        """On a backward jump of the node clock (a bag looping, /clock restarting), flush and report it.

        The buffers then hold messages stamped after the new time: they would stay the newest of their sources
        and block every snapshot until the clock caught up. Timer ticks run one at a time, so consecutive
        readings here only go back when the clock itself does.
        """
        last, self._last_tick_clock_s = self._last_tick_clock_s, now_s
        if last is None or now_s >= last:
            return False
        flushed = sum(self.buffer.sizes().values())
        self.buffer.clear()
        self.worker.discard_pending()
        with self._lock:
            self._known_actions_topic = None
        self._last_submitted_ns = None
        self._last_submit_clock_s = None
        self.diagnostics.clock_jumped_back(last - now_s)
        self.diagnostics.skip("clock_jumped_back", f"node clock went from {last:.3f} s to {now_s:.3f} s")
        log.warning("node clock jumped back %.3f s (%.3f s -> %.3f s; a bag looping or /clock restarting): "
                    "flushed %d buffered messages", last - now_s, last, now_s, flushed)
        return True

    def _snapshot(self, now: float, start: float) -> tuple[str, str, Snapshot | None]:
        p = self.params
        if self.paused:
            return "paused", "", None
        with self._lock:
            task = self.task
            known = self._known_actions_topic[1] if self._known_actions_topic is not None else self._known_actions_file
        if not task:
            return "no_task", f"no task yet; publish one on {p['task_topic']!r} or set parameter 'task'", None
        synced = self.buffer.synchronised(self.sync_sources, p["sync_tolerance"])
        if synced.items is None:
            reason = "incomplete" if synced.reason.startswith("no message") else "unsynchronised"
            return reason, synced.reason, None
        age = now - synced.oldest_ns / 1e9
        if age > p["max_observation_age"]:
            hint = " (header stamp 0: does the driver stamp its messages?)" if synced.oldest_ns == 0 else ""
            limit = p["max_observation_age"]
            return "stale", f"oldest input is {age:.3f} s old > max_observation_age {limit}{hint}", None
        if synced.newest_ns == self._last_submitted_ns:
            return "no_new_observation", "no input newer than the last snapshot", None
        if self.mode == "forward_dynamics" and known is None:
            return "no_known_actions", f"no known actions yet (topic {p['actions_topic']!r}, file " \
                                       f"{p['actions_file']!r})", None
        cameras: dict[str, Stamped] | None = {name: synced.items[name] for name in self.cameras}
        video = None
        frame0_ns = max(item.stamp_ns for item in cameras.values())
        state_items = synced.items
        if self.mode == "inverse_dynamics":
            chunk = self.profile.chunk
            step_ns = seconds_to_ns(self.dt_s)
            times = [frame0_ns - (chunk - k) * step_ns for k in range(chunk + 1)]
            columns = {}
            for name in self.sync_sources:
                samples = self.buffer.sample_zero_order_hold(name, times, p["sync_tolerance"])
                if samples is None:
                    return "insufficient_history", (
                        f"{name!r} has no message at or before {times[0] / 1e9:.3f} s "
                        f"({chunk} steps of {self.dt_s:.4f} s before the newest frame)"
                    ), None
                columns[name] = samples
            video = [{name: columns[name][k] for name in self.cameras} for k in range(chunk + 1)]
            held = sum(columns[name][k] is columns[name][k - 1] for name in self.cameras for k in range(1, chunk + 1))
            state_items = {name: columns[name][0] for name in self.sync_sources}
            cameras = None
            frame0_ns = times[0]
        state = self._state_vector(state_items) if self.uses_state else None
        return "submitted", "", Snapshot(
            tick=self._tick, stamp_ns=synced.newest_ns, frame0_ns=frame0_ns, cameras=cameras, video=video,
            state=state, task=task, known_actions=known, age_s=age, build_s=time.perf_counter() - start,
            held_frames=held if video is not None else 0,
        )

    def _state_vector(self, items: Mapping[str, Stamped]) -> np.ndarray:
        q, gripper = items["joint_state"].value
        if self.separate_gripper_topic:
            gripper = items["gripper"].value
        return np.concatenate([q, [gripper if gripper is not None else 0.0]])

    # ----- worker thread ------------------------------------------------------------------------------------

    def _decode_all(self, frame_sets: list[Mapping[str, Stamped]]) -> dict[int, np.ndarray]:
        """Decode every distinct image message once (inverse dynamics repeats held frames), cameras in parallel."""
        unique: dict[int, tuple[str, Stamped]] = {}
        for frames in frame_sets:
            for name in self.cameras:
                unique.setdefault(id(frames[name].value), (name, frames[name]))

        def decode(pair: tuple[str, Stamped]) -> np.ndarray:
            name, item = pair
            return ros_image_to_rgb(item.value, f"camera {name!r} on {self.camera_topics[name]!r}")

        # Raw images only need a copy (well under 1 ms for three 640x360 frames): handing them to the pool costs
        # more in thread wake-ups than it saves (1.4 ms per snapshot measured). Compressed ones decode in
        # parallel (PIL releases the GIL).
        compressed = any(is_compressed(item.value) for _, item in unique.values())
        if self._decode_pool is not None and len(unique) > 1 and compressed:
            decoded = list(self._decode_pool.map(decode, unique.values()))
        else:
            decoded = [decode(pair) for pair in unique.values()]
        return dict(zip(unique, decoded, strict=True))

    def _observation(self, frames: Mapping[str, Stamped], decoded: Mapping[int, np.ndarray]) -> Any:
        images = {name: decoded[id(frames[name].value)] for name in self.cameras}
        return images if len(self.cameras) > 1 else images[self.cameras[0]]

    def build_request(self, snapshot: Snapshot) -> ActionRequest:
        """Decode the snapshot's images and make the model request.

        Raises:
            InputError: an image that cannot be decoded.

        """
        profile = self.profile
        state = None
        if profile.use_state and snapshot.state is not None:
            state = snapshot.state.astype(np.float32)
        request = ActionRequest(
            task=snapshot.task, mode=self.mode, state=state, decode_rollout=self.params["publish_rollout"]
        )
        frame_sets = snapshot.video if snapshot.video is not None else [snapshot.cameras or {}]
        decoded = self._decode_all(frame_sets)
        if snapshot.video is not None:
            request.video = [self._observation(frames, decoded) for frames in snapshot.video]
        else:
            observation = self._observation(frame_sets[0], decoded)
            if isinstance(observation, dict):
                request.cameras = observation
            else:
                request.image = observation
        if self.mode == "forward_dynamics":
            request.actions = snapshot.known_actions
        if snapshot.plan is not None and self.execution is not None:
            self.execution.adjust_request(request, snapshot.plan)
        return request

    def _process(self, snapshot: Snapshot) -> None:
        start = time.perf_counter()
        model = self._model
        request = self.build_request(snapshot)
        model_start = time.perf_counter()
        prediction = model.predict(request)
        model_s = time.perf_counter() - model_start
        self._publish_prediction(snapshot, prediction, model_s)
        overhead_s = snapshot.build_s + (time.perf_counter() - start) - model_s
        self.diagnostics.job_succeeded(model_s, overhead_s, snapshot.age_s)

    def _on_job_error(self, snapshot: Snapshot, exc: BaseException) -> None:
        if snapshot.plan is not None and self.execution is not None:
            self.execution.on_failure(snapshot.plan)
        kind = "bad input" if isinstance(exc, InputError) else type(exc).__name__
        message = f"snapshot {snapshot.tick} (stamp {snapshot.stamp_ns / 1e9:.3f} s): {kind}: {exc}"
        if isinstance(exc, InputError):
            self.diagnostics.input_error(message)
            self._warn(f"job-input-{type(exc).__name__}", message)
        else:
            self.diagnostics.job_failed(message)
            log.error("inference failed: %s", message, exc_info=not isinstance(exc, Cosmos3Error))

    def _publish_prediction(self, snapshot: Snapshot, prediction: ActionPrediction, model_s: float) -> None:
        actions = np.asarray(prediction.actions, dtype=np.float32)
        require_finite(actions, "model output")
        profile = self.profile
        step_ns = seconds_to_ns(1.0 / prediction.fps)
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        frame_id = self.params["frame_id"]
        chunk = ActionChunkData(
            actions=actions, stamp_ns=snapshot.stamp_ns, start_ns=snapshot.frame0_ns + step_ns,
            dt_s=1.0 / prediction.fps, frame_id=frame_id, mode=prediction.mode, profile=prediction.profile,
            action_space=profile.action_space, domain_name=prediction.domain_name, domain_id=prediction.domain_id,
            dimension_names=tuple(prediction.dimension_names), sequence_number=sequence, model_latency_s=model_s,
        )
        self._publish("action_chunk", build_action_chunk(chunk, self._factory))
        self.diagnostics.count("chunks_published")
        allowed, _ = trajectory_allowed(dry_run=self.dry_run, mode=self.mode, joint_space=self.joint_space)
        if snapshot.plan is not None and self.execution is not None:
            if allowed:
                self.execution.on_prediction(snapshot.plan, actions)
            else:
                self.execution.on_failure(snapshot.plan)
        elif allowed:
            self._publish_trajectory(snapshot, actions, chunk.dt_s)
        if prediction.rollout is not None and self.params["publish_rollout"]:
            self._publish_rollout(snapshot, prediction)

    def _publish_trajectory(self, snapshot: Snapshot, actions: np.ndarray, dt_s: float) -> None:
        profile = self.profile
        arm_columns = [i for i in range(profile.raw_action_dim) if i not in profile.gripper_dims]
        horizon = self.params["execution_horizon"] or actions.shape[0]
        current = snapshot.state[: len(arm_columns)] if snapshot.state is not None else None
        safe = make_safe_joint_targets(actions[:horizon, arm_columns], current, self.safety)
        if safe.clamped_to_limits:
            self.diagnostics.count("trajectory_values_clamped", safe.clamped_to_limits)
        if safe.rate_limited:
            self.diagnostics.count("trajectory_values_rate_limited", safe.rate_limited)
        msg = build_joint_trajectory(
            self._factory, stamp_ns=snapshot.stamp_ns, frame_id=self.params["frame_id"],
            joint_names=self.joint_names, positions=safe.positions, dt_s=dt_s,
        )
        self._publish("joint_trajectory", msg)
        self.diagnostics.count("trajectories_published")

    def _publish_rollout(self, snapshot: Snapshot, prediction: ActionPrediction) -> None:
        assert prediction.rollout is not None
        for msg in build_rollout_images(
            self._factory, prediction.rollout, first_stamp_ns=snapshot.frame0_ns, dt_s=1.0 / prediction.fps,
            frame_id=self.params["frame_id"],
        ):
            self._publish("rollout_image", msg)
            self.diagnostics.count("rollout_frames_published")
        if self._rollout_writer is not None and self._rollout_writer.submit(
                (snapshot.tick, prediction.rollout, prediction.fps)):
            self.diagnostics.count("rollout_videos_skipped")

    def _write_rollout(self, job: tuple[int, np.ndarray, float]) -> None:
        """Rollout-writer thread: encode the newest rollout to ``rollout_path``."""
        from ..processing.video_io import write_mp4

        tick, rollout, fps = job
        path = write_mp4(rollout, self.rollout_path, fps)
        self.last_rollout_video = str(path)
        self.diagnostics.count("rollout_videos_written")
        log.info("rollout of snapshot %d written to %s", tick, path)

    def _on_rollout_error(self, job: tuple[int, np.ndarray, float], exc: BaseException) -> None:
        message = f"rollout video of snapshot {job[0]} to {self.rollout_path}: {type(exc).__name__}: {exc}"
        self.diagnostics.job_failed(message)
        log.error("writing the rollout failed: %s", message)

    # ----- parameters, services, diagnostics, shutdown ------------------------------------------------------

    def on_parameters(self, changes: Mapping[str, Any]) -> tuple[bool, str]:
        """Validate and apply runtime parameter changes, all or nothing; returns (accepted, reason).

        A rejection is counted on diagnostics as an input error.
        """
        try:
            new_values = dict(self.params)
            for name, value in changes.items():
                spec = PARAMETERS.get(name)
                if spec is None:
                    if name == "use_sim_time":
                        continue
                    raise InputError(f"unknown parameter {name!r}")
                if not spec.runtime:
                    raise InputError(f"parameter {name!r} is read-only (set at start-up); restart the node to change")
                new_values[name] = spec.validate(value)
            if "task" in changes and not new_values["task"].strip():
                raise InputError("parameter 'task': empty string; expected a task sentence")
            model = self._model_for(new_values, changes)
        except (InputError, ProfileError) as exc:
            self._input_error("parameters", exc)
            return False, str(exc)
        period = self.timer_period_s
        self.params = new_values
        self._model = model
        self.dry_run = new_values["dry_run"]
        rate_changed = self.timer_period_s != period
        if "task" in changes:
            self.set_task(new_values["task"])
        if rate_changed and self._set_timer_period is not None:
            self._set_timer_period(self.timer_period_s)
        return True, ""

    def _model_for(self, values: Mapping[str, Any], changes: Mapping[str, Any]) -> ActionModel:
        """The model to serve after a change of guidance / normalisation / statistics (same weights)."""
        touched = {"guidance", "action_normalization", "action_stats_file"} | {f"action_stats_{k}" for k in STAT_KEYS}
        if not touched.intersection(changes):
            return self._model
        profile = self._model.profile
        normalization = values["action_normalization"]
        fields: dict[str, Any] = {"guidance": values["guidance"] if values["guidance"] >= 0 else self._base_guidance}
        if normalization == "none":
            fields["normalization"] = None
        elif normalization:
            fields["normalization"] = normalization
        fields["stats"] = stats_from_parameters(values, fields.get("normalization", profile.normalization))
        if fields["stats"] is None:
            fields["stats"] = profile.stats
        new_profile = dataclasses.replace(profile, **fields)
        check_stats_width(new_profile.stats, new_profile.raw_action_dim)
        new_profile.validate()
        with_profile = getattr(self._model, "with_profile", None)
        if with_profile is None:
            raise ProfileError("this model cannot change its profile at runtime")
        return with_profile(new_profile)

    def pause(self) -> tuple[bool, str]:
        """Stop taking snapshots (inputs keep buffering); the running job finishes."""
        self.paused = True
        self.worker.discard_pending()
        return True, "paused: no new snapshots until resume"

    def resume(self) -> tuple[bool, str]:
        """Take snapshots again."""
        self.paused = False
        return True, "resumed"

    def clear_buffers(self) -> tuple[bool, str]:
        """Drop buffered observations, known actions from the topic and the pending job."""
        sizes = self.buffer.sizes()
        self.buffer.clear()
        dropped = self.worker.discard_pending()
        with self._lock:
            self._known_actions_topic = None
        self._last_submitted_ns = None
        self._last_submit_clock_s = None
        return True, f"cleared {sum(sizes.values())} buffered messages" + (" and a pending snapshot" if dropped else "")

    def diagnostics_message(self) -> Any:
        """The current ``DiagnosticArray``."""
        now = self._clock()
        info = {
            "mode": self.mode, "profile": self.profile.name, "device": self.params["device"],
            "dry_run": self.dry_run, "paused": self.paused, "task": self.task or "(none)",
            "model busy": self.worker.busy,
            "writing rollout video": self._rollout_writer is not None and self._rollout_writer.busy,
            "buffered messages": sum(self.buffer.sizes().values()),
            "last rollout video": self.last_rollout_video or "none",
        }
        if self.execution is not None:
            info.update({f"execution {k}": v for k, v in self.execution.report().items()})
        report = self.diagnostics.report(now, info)
        return build_diagnostic_array(
            self._factory, report, stamp_ns=seconds_to_ns(now), name=self._diagnostic_name,
            hardware_id=self._hardware_id,
        )

    def publish_diagnostics(self) -> None:
        """Publish the current ``DiagnosticArray`` on ``/diagnostics``."""
        self._publish("diagnostics", self.diagnostics_message())

    def wait_idle(self, timeout: float) -> bool:
        """Block until no snapshot and no rollout video is pending or being processed; True if idle in time."""
        deadline = time.monotonic() + timeout
        idle = self.worker.wait_idle(timeout)
        if self._rollout_writer is not None:
            idle = self._rollout_writer.wait_idle(max(0.0, deadline - time.monotonic())) and idle
        return idle

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop the worker and the rollout writer (running jobs finish, pending ones are dropped), join both.

        Returns True if both threads ended within ``timeout`` seconds in all.
        """
        deadline = time.monotonic() + timeout
        self.paused = True
        if self.execution is not None and self.streaming:
            self.execution.on_shutdown()
        joined = self.worker.stop(timeout)
        if self._rollout_writer is not None:
            joined = self._rollout_writer.stop(max(0.0, deadline - time.monotonic())) and joined
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=joined)
        return joined
