"""Bag labelling (``cosmos3-ros bag-infer``): the action chunks that explain a recorded bag (inverse dynamics).

Reads the bag with ``rosbags`` (no ROS install), resamples the cameras at the model fps by zero-order hold,
runs every window through the same ``ActionPredictor`` as the node, and writes ``OUT/actions/`` (a rosbag2 of
``cosmos3_ros_msgs/ActionChunk``), ``OUT/actions.json``, ``OUT/actions.csv`` and, where the bag recorded joint
states or commands, ``OUT/eval.json`` and ``OUT/eval_<mode>.png``. See ``docs/bag_infer.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import Cosmos3Error, InputError
from .bag_source import BagIndex, RecordedBag, StateRule, task_for
from .outputs import (
    ChunkRecord,
    Journal,
    WindowFailure,
    actions_csv,
    replace_folder,
    sorted_records,
    windows_json,
    write_action_bag,
    write_bytes_atomic,
    write_text_atomic,
)
from .windows import NS_PER_S, Window, WindowPlan, grid_times, held_values, plan_windows

Stage = Callable[[str], None]
Frame = np.ndarray | InputError  # a decoded uint8 [H, W, 3] frame, or why it could not be decoded

ACTION_TOPIC = "/cosmos3/action_chunk"
POLICY_TOPIC = "/cosmos3/policy/action_chunk"
MODES = ("inverse_dynamics", "policy")
OUTPUT_FORMAT = "cosmos3_ros.bag_infer/1"


# ----- settings -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSettings:
    """What the run labels, resolved from the flags and the (not yet loaded) profile."""

    profile: Any  # processing.profiles.Profile
    overrides: dict[str, Any]
    modes: tuple[str, ...]
    camera_topics: tuple[str, ...]
    camera_names: tuple[str, ...]
    state_topic: str | None
    command_topic: str | None
    rule: StateRule
    stride: int
    max_hold_ns: int
    seed: int

    @property
    def dt_ns(self) -> float:
        """Nanoseconds between model frames (not rounded)."""
        return NS_PER_S / float(self.profile.fps)

    @property
    def joint_space(self) -> bool:
        """True when the actions are joint positions (recorded joints can be compared with them)."""
        return self.profile.action_space == "joint_position"


def resolve_settings(args: argparse.Namespace, overrides: dict[str, Any], stage: Stage) -> LabelSettings:
    """Check the flags against the profile before any bag or model is opened.

    Raises:
        InputError: inconsistent flags (camera count, missing joint topic, bad ranges).

    """
    from ..processing.predictor import resolve_profile

    profile = resolve_profile(args.profile, None, overrides)
    cameras = tuple(args.camera_topic)
    if len(cameras) != len(profile.cameras):
        order = ", ".join(profile.cameras)
        raise InputError(f"profile {profile.name!r} takes {len(profile.cameras)} --camera-topic ({order}); "
                         f"got {len(cameras)}: {list(cameras)}")
    if len(set(cameras)) != len(cameras):
        raise InputError(f"--camera-topic given twice for the same topic: {list(cameras)}")
    if profile.use_state and not args.joint_topic:
        raise InputError(f"profile {profile.name!r} needs the robot state [q1..q7, gripper] at each window start: "
                         f"give --joint-topic (sensor_msgs/JointState)")
    for flag, value, low in (("--stride", args.stride, 1), ("--batch", args.batch, 1)):
        if value is not None and value < low:
            raise InputError(f"{flag} {value}; expected an integer >= {low}")
    if not args.max_hold > 0:
        raise InputError(f"--max-hold {args.max_hold}; expected a positive number of frame periods")
    if args.start < 0 or (args.end is not None and args.end <= args.start):
        raise InputError(f"--start {args.start} / --end {args.end}; expected 0 <= start < end (seconds after the "
                         f"first camera frame)")
    if args.gripper_open_position == args.gripper_closed_position:
        raise InputError("--gripper-open-position equals --gripper-closed-position; expected different positions")
    joint_space = profile.action_space == "joint_position"
    state_topic = args.joint_topic if (profile.use_state or joint_space) else None
    command_topic = args.command_topic if joint_space else None
    ignored = [f for f, v, used in (("--joint-topic", args.joint_topic, state_topic),
                                    ("--command-topic", args.command_topic, command_topic)) if v and not used]
    if ignored:
        stage(f"{' and '.join(ignored)} ignored: profile {profile.name!r} predicts {profile.action_space!r} actions, "
              f"not joint positions, and takes no state")
    arm = profile.raw_action_dim - len(profile.gripper_dims)
    if args.joint_names is not None and len(args.joint_names) != arm:
        raise InputError(f"--joint-names has {len(args.joint_names)} names; profile {profile.name!r} has {arm} arm "
                         f"joints")
    rule = StateRule(arm_joints=arm, joint_names=args.joint_names, gripper_joint=args.gripper_joint,
                     gripper_open=args.gripper_open_position, gripper_closed=args.gripper_closed_position)
    return LabelSettings(
        profile=profile, overrides=overrides,
        modes=("inverse_dynamics",) if args.mode == "inverse_dynamics" else ("inverse_dynamics", "policy"),
        camera_topics=cameras, camera_names=tuple(profile.cameras), state_topic=state_topic,
        command_topic=command_topic, rule=rule, stride=args.stride or profile.chunk,
        max_hold_ns=round(args.max_hold * NS_PER_S / profile.fps), seed=int(profile.seed),
    )


def journal_settings(args: argparse.Namespace, cfg: LabelSettings, index: BagIndex) -> dict[str, Any]:
    """Everything that changes the journal's content; ``--resume`` requires all of it to be equal."""
    return {
        "bag": str(Path(args.bag).resolve()),
        "bag_topics": index.summary(),
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "profile": cfg.profile.name,
        "overrides": {k: v for k, v in sorted(cfg.overrides.items()) if v is not None},
        "evaluator": args.evaluator,
        "modes": list(cfg.modes),
        "camera_topics": list(cfg.camera_topics),
        "joint_topic": cfg.state_topic,
        "joint_names": None if args.joint_names is None else list(args.joint_names),
        "gripper": [args.gripper_joint, args.gripper_open_position, args.gripper_closed_position],
        "command_topic": cfg.command_topic,
        "task": args.task,
        "task_topic": args.task_topic,
        "chunk": cfg.profile.chunk,
        "fps": cfg.profile.fps,
        "stride": cfg.stride,
        "start": args.start,
        "end": args.end,
        "max_hold": args.max_hold,
        "seed": cfg.seed,
    }


# ----- the command --------------------------------------------------------------------------------------------


def label_bag(args: argparse.Namespace, overrides: dict[str, Any], stage: Stage, predictor: Any = None) -> int:
    """Plan windows, run the pending ones (journaled), then write the outputs; also on Ctrl-C (exit 130).

    ``args`` holds the ``bag-infer`` flags (see ``tools/bag_infer.py``) with ``args.bag`` one bag; ``overrides``
    the profile fields the user set on the command line; ``predictor`` a loaded model to reuse (many bags on one
    worker), else the checkpoint is loaded when the first window runs.
    """
    cfg = resolve_settings(args, overrides, stage)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {args.out!r} exists and is not a folder")
    with RecordedBag(args.bag) as bag:
        index = bag.index(cfg.camera_topics, state_topic=cfg.state_topic, command_topic=cfg.command_topic,
                          task_topic=args.task_topic, rule=cfg.rule)
        for series in (index.state, index.commands):
            if series is not None and series.dropped:
                stage(f"{series.topic}: {series.dropped} of {series.dropped + len(series)} messages dropped "
                      f"({series.first_drop_reason})")
        plan = plan_for(args, cfg, index)
        stage(describe(bag, index, plan, cfg))
        out.mkdir(parents=True, exist_ok=True)
        journal = Journal.open(out, journal_settings(args, cfg, index), resume=args.resume)
        try:
            done, failed = journal.done(), journal.failed()
            pending = [w for w in plan.windows
                       if w.index not in failed and any((w.index, m) not in done for m in cfg.modes)]
            if args.resume:
                stage(f"resuming: {len(plan.windows) - len(pending)} of {len(plan.windows)} windows already in "
                      f"{journal.path.name}")
            if pending:
                run_windows(args, cfg, bag, index, pending, journal, stage, predictor)
        except KeyboardInterrupt:
            journal.close()
            stage(f"interrupted: writing outputs from the {len({r.window for r in journal.records})} finished windows")
            write_outputs(args, cfg, bag, index, plan, journal, stage)
            raise
        finally:
            journal.close()  # other errors keep the journal for --resume and leave the final files as they were
        write_outputs(args, cfg, bag, index, plan, journal, stage)
    return 0


def plan_for(args: argparse.Namespace, cfg: LabelSettings, index: BagIndex) -> WindowPlan:
    """The window plan of this run; raises InputError when no window in the range has usable inputs."""
    first = min(int(s.stamps_ns[0]) for s in index.cameras.values())
    start_ns = first + round(args.start * NS_PER_S)
    end_ns = None if args.end is None else first + round(args.end * NS_PER_S)
    state = index.state.stamps_ns if (index.state is not None and cfg.profile.use_state) else None
    plan = plan_windows({t: s.stamps_ns for t, s in index.cameras.items()}, state, fps=cfg.profile.fps,
                        chunk=cfg.profile.chunk, stride=cfg.stride, start_ns=start_ns, end_ns=end_ns,
                        max_hold_ns=cfg.max_hold_ns, state_name=str(cfg.state_topic))
    if plan.windows:
        return plan
    topics = list(cfg.camera_topics) + ([cfg.state_topic] if state is not None else [])
    span = f"{(plan.range_start_ns - first) / 1e9:.3f}..{(plan.range_end_ns - first) / 1e9:.3f} s"
    frames = cfg.profile.chunk + 1
    if plan.range_start_ns > plan.range_end_ns:
        raise InputError(f"bag {args.bag!r}: no frames in range on {topics}: windows would start at "
                         f"{(plan.range_start_ns - first) / 1e9:.3f} s but the data ends at "
                         f"{(plan.range_end_ns - first) / 1e9:.3f} s (seconds after the first camera frame)")
    if plan.skipped:
        raise InputError(f"bag {args.bag!r}: none of the {len(plan.skipped)} windows in {span} has fresh frames on "
                         f"{topics}; first: {plan.skipped[0].reason}")
    raise InputError(f"bag {args.bag!r}: no frames in range on {topics}: a window of {frames} frames at "
                     f"{cfg.profile.fps:g} fps does not fit in {span} after the first camera frame")


def describe(bag: RecordedBag, index: BagIndex, plan: WindowPlan, cfg: LabelSettings) -> str:
    """One line: what was found and what will run."""
    cams = ", ".join(f"{t} ({len(s)} msgs, {index.frame_shapes[t][0]}x{index.frame_shapes[t][1]})"
                     for t, s in index.cameras.items())
    text = (f"bag {bag.path} ({bag.storage}): {cams}; {len(plan.windows)} windows of {cfg.profile.chunk + 1} frames "
            f"at {cfg.profile.fps:g} fps, stride {cfg.stride}")
    if plan.skipped:
        text += f"; {len(plan.skipped)} skipped (first: window {plan.skipped[0].index}: {plan.skipped[0].reason})"
    return text


# ----- running windows ----------------------------------------------------------------------------------------


class Progress:
    """Windows done, windows/s and ETA on stderr: one updating line on a terminal, else one line per window."""

    def __init__(self, total: int, stream: Any = None, command: str = "bag-infer") -> None:
        self.total = total
        self.command = command
        self.done = 0
        self.start = time.perf_counter()
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self) -> str:
        """The current progress text."""
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        eta_text = f"{eta:.0f} s" if math.isfinite(eta) else "?"
        return f"[cosmos3-ros] {self.command}: {self.done}/{self.total} windows, {rate:.2f} windows/s, ETA {eta_text}"

    def advance(self, count: int = 1) -> None:
        """Count finished windows and print."""
        self.done += count
        end = "" if self.tty and self.done < self.total else "\n"
        print(("\r" if self.tty else "") + self.line(), end=end, file=self.stream, flush=True)


def run_windows(args: argparse.Namespace, cfg: LabelSettings, bag: RecordedBag, index: BagIndex,
                pending: Sequence[Window], journal: Journal, stage: Stage, predictor: Any = None) -> None:
    """Load the model (unless given), then run ``pending`` windows in batches, appending each chunk to the journal."""
    from ..processing.predictor import ActionPredictor

    if predictor is None:
        stage(f"loading checkpoint {args.checkpoint} on {args.device}")
        predictor = ActionPredictor.load(args.checkpoint, args.profile, device=args.device, overrides=cfg.overrides,
                                         decode_rollout=False, evaluator=args.evaluator)
    loaded = predictor.profile
    if (loaded.chunk, loaded.fps, loaded.use_state) != (cfg.profile.chunk, cfg.profile.fps, cfg.profile.use_state):
        raise InputError(f"profile {loaded.name!r} resolved against the checkpoint to chunk {loaded.chunk} at "
                         f"{loaded.fps} fps (use_state={loaded.use_state}); the plan assumed chunk "
                         f"{cfg.profile.chunk} at {cfg.profile.fps} fps")
    done = journal.done()
    progress = Progress(len(pending))
    stage(f"running {len(pending)} windows ({', '.join(cfg.modes)}), batch {args.batch}")
    batches = [list(pending[first:first + args.batch]) for first in range(0, len(pending), args.batch)]
    cache: dict[tuple[str, int], Frame] = {}

    def prepare(batch: list[Window]) -> tuple[list[tuple[Window, str, Any]], list[tuple[Window, InputError]]]:
        """Decode the batch's frames and build its requests (on the prefetch thread)."""
        nonlocal cache
        cache = decode_frames(bag, index, batch, cfg, cache)
        jobs: list[tuple[Window, str, Any]] = []
        failures: list[tuple[Window, InputError]] = []
        for window in batch:
            try:
                for mode in cfg.modes:
                    if (window.index, mode) not in done:
                        task = window_task(window, cfg, index, args.task)
                        jobs.append((window, mode, build_request(window, mode, cfg, index, cache, task)))
            except InputError as exc:
                jobs = [j for j in jobs if j[0] is not window]
                failures.append((window, exc))
        return jobs, failures

    # Batch k + 1 is decoded (JPEG decode, camera composition inputs) on one background thread while the model
    # runs batch k; the journal and the progress bar are only touched here, so an interrupt leaves them valid.
    with ThreadPoolExecutor(max_workers=1) as ahead:
        upcoming = ahead.submit(prepare, batches[0]) if batches else None
        for position in range(len(batches)):
            assert upcoming is not None
            jobs, failures = upcoming.result()
            upcoming = ahead.submit(prepare, batches[position + 1]) if position + 1 < len(batches) else None
            for window, exc in failures:
                journal.append(WindowFailure(window.index, window.t0_ns, str(exc)))
                stage(f"window {window.index} skipped: {exc}")
                progress.advance()
            run_jobs(predictor, jobs, cfg, index, journal, progress, batched=args.batch > 1)


def decode_frames(bag: RecordedBag, index: BagIndex, batch: Sequence[Window], cfg: LabelSettings,
                  cache: dict[tuple[str, int], Frame]) -> dict[tuple[str, int], Frame]:
    """Decoded ``uint8 [H, W, 3]`` frames the batch needs, by (topic, position), reusing ``cache``.

    A frame that cannot be decoded is kept as its InputError, raised by the windows that use it.
    """
    from ..runtime.image_decoding import ros_image_to_rgb

    needed = {(topic, p) for w in batch for topic, positions in w.frames.items() for p in positions}
    kept = {key: value for key, value in cache.items() if key in needed}
    wanted: dict[str, set[int]] = {}
    for topic, position in needed - set(kept):
        wanted.setdefault(topic, set()).add(position)
    for (topic, position), msg in bag.camera_frames(index, wanted).items():
        stamp = int(index.cameras[topic].stamps_ns[position])
        try:
            kept[(topic, position)] = ros_image_to_rgb(msg, f"camera topic {topic!r} at {stamp / 1e9:.3f} s")
        except InputError as exc:
            kept[(topic, position)] = exc
    return kept


def build_request(window: Window, mode: str, cfg: LabelSettings, index: BagIndex,
                  frames: dict[tuple[str, int], Frame], task: str) -> Any:
    """The model request of one window and mode (frames decoded already)."""
    from ..processing.request import ActionRequest, Mode

    def frame(i: int) -> Any:
        views = {}
        for name, topic in zip(cfg.camera_names, cfg.camera_topics, strict=True):
            image = frames[(topic, window.frames[topic][i])]
            if isinstance(image, InputError):
                raise image
            views[name] = image
        return views if len(views) > 1 else next(iter(views.values()))

    count = cfg.profile.chunk + 1 if mode == "inverse_dynamics" else 1
    observation = [frame(i) for i in range(count)]
    state = None
    if cfg.profile.use_state:
        assert index.state is not None and index.state.values is not None and window.state is not None
        state = index.state.values[window.state].astype(np.float32)
    request = ActionRequest(task=task, mode=cast("Mode", mode), state=state, seed=cfg.seed + window.index,
                            decode_rollout=False)
    if mode == "inverse_dynamics":
        request.video = observation
    elif isinstance(observation[0], dict):
        request.cameras = observation[0]
    else:
        request.image = observation[0]
    return request


def window_task(window: Window, cfg: LabelSettings, index: BagIndex, fixed: str | None) -> str:
    """``--task``, or the task-topic sentence in force at the window's first frame (by log time)."""
    if fixed is not None:
        return fixed
    first = cfg.camera_topics[0]
    return task_for(index.tasks, int(index.cameras[first].log_ns[window.frames[first][0]]))


def chunk_record(window: Window, mode: str, prediction: Any, model_s: float, cfg: LabelSettings,
                 index: BagIndex, task: str) -> ChunkRecord:
    """The journal entry of one prediction, with the source stamps of the messages it used."""
    count = cfg.profile.chunk + 1 if mode == "inverse_dynamics" else 1
    frame_stamps = {t: [int(index.cameras[t].stamps_ns[p]) for p in window.frames[t][:count]]
                    for t in cfg.camera_topics}
    logs = [int(index.cameras[t].log_ns[p]) for t in cfg.camera_topics for p in window.frames[t][:count]]
    stamps = [s for values in frame_stamps.values() for s in values]
    state = None
    if window.state is not None and index.state is not None and index.state.values is not None:
        stamps.append(int(index.state.stamps_ns[window.state]))
        logs.append(int(index.state.log_ns[window.state]))
        state = index.state.values[window.state].tolist()
    return ChunkRecord(
        window=window.index, mode=mode, t0_ns=window.t0_ns, start_ns=window.times_ns[1],
        stamp_ns=max(stamps), log_ns=max(logs), seed=int(prediction.seed), task=task,
        actions=np.asarray(prediction.actions, dtype=np.float32), model_s=model_s, frame_stamps_ns=frame_stamps,
        state=state,
    )


def run_jobs(predictor: Any, jobs: Sequence[tuple[Window, str, Any]], cfg: LabelSettings, index: BagIndex,
             journal: Journal, progress: Progress, *, batched: bool) -> None:
    """Predict, journal each chunk, advance the progress.

    With ``batched`` and a predictor that has ``predict_batch(requests) -> predictions`` the jobs go in one call;
    otherwise one ``predict`` per job (each journaled as soon as it is done). A window the model stage refuses
    (bad input such as a resolution change mid-bag, or non-finite actions) is journaled as a failure whose reason
    names the window, the topic and the stamp; the run goes on. When a batch fails, its jobs are retried one by
    one so only the bad window is skipped.
    """
    predict_batch = getattr(predictor, "predict_batch", None)
    results: Any = None
    if batched and predict_batch is not None and jobs:
        start = time.perf_counter()
        try:
            predictions = predict_batch([request for _, _, request in jobs])
        except MODEL_STAGE_ERRORS:
            results = None  # one window spoiled the batch: find it by running them one at a time
        else:
            model_s = (time.perf_counter() - start) / len(jobs)
            results = zip(jobs, predictions, [model_s] * len(jobs), strict=True)
    if results is None:
        results = _sequential(predictor, jobs)
    failed: set[int] = set()
    for (window, mode, request), prediction, model_s in results:
        if window.index in failed:
            continue
        problem = prediction if isinstance(prediction, Exception) else None
        if problem is None and not np.all(np.isfinite(np.asarray(prediction.actions))):
            problem = InputError(f"the model produced non-finite actions ({mode})")
        if problem is not None:
            failed.add(window.index)
            reason = model_stage_reason(window, request, problem, cfg, index)
            journal.append(WindowFailure(window.index, window.t0_ns, reason))
            print(f"[cosmos3-ros] window {window.index} skipped: {reason}", file=progress.stream, flush=True)
            progress.advance()
            continue
        journal.append(chunk_record(window, mode, prediction, model_s, cfg, index, str(request.task)))
        if mode == cfg.modes[-1] or (window.index, cfg.modes[-1]) in journal.done():
            progress.advance()


# What a model call raises for a bad window (checked input, shapes); anything else (out of memory, a bug) stops
# the run with the journal intact for --resume.
MODEL_STAGE_ERRORS: tuple[type[Exception], ...] = (Cosmos3Error, ValueError)


def _sequential(predictor: Any, jobs: Sequence[tuple[Window, str, Any]]) -> Any:
    for job in jobs:
        start = time.perf_counter()
        try:
            prediction = predictor.predict(job[2])
        except MODEL_STAGE_ERRORS as exc:
            prediction = exc
        yield job, prediction, time.perf_counter() - start


def model_stage_reason(window: Window, request: Any, exc: Exception, cfg: LabelSettings, index: BagIndex) -> str:
    """Why the model refused ``window``: the topic and stamp of the first frame whose size differs, else all."""
    frames = request.video if request.video is not None else [request.cameras if request.cameras else request.image]
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    first: dict[str, tuple[int, ...]] = {}
    for i, frame in enumerate(frames):
        views = frame if isinstance(frame, dict) else {cfg.camera_names[0]: frame}
        for name, topic in zip(cfg.camera_names, cfg.camera_topics, strict=True):
            shape = tuple(np.shape(views[name]))
            if first.setdefault(topic, shape) != shape:
                stamp = int(index.cameras[topic].stamps_ns[window.frames[topic][i]])
                return (f"window {window.index}: model stage failed on {topic} frame {i} stamped {stamp / 1e9:.3f} s "
                        f"({shape[1]}x{shape[0]} after {first[topic][1]}x{first[topic][0]}): {detail}")
    spans = ", ".join(f"{t} stamped {int(index.cameras[t].stamps_ns[window.frames[t][0]]) / 1e9:.3f}.."
                      f"{int(index.cameras[t].stamps_ns[window.frames[t][len(frames) - 1]]) / 1e9:.3f} s"
                      for t in cfg.camera_topics)
    return f"window {window.index}: model stage failed on {spans}: {detail}"


# ----- outputs ------------------------------------------------------------------------------------------------


def write_outputs(args: argparse.Namespace, cfg: LabelSettings, bag: RecordedBag, index: BagIndex,
                  plan: WindowPlan, journal: Journal, stage: Stage) -> None:
    """(Re)build every final file from the journal; each is replaced atomically."""
    from ..runtime.action_chunk import ActionChunkData, RosbagsMessageFactory, build_action_chunk

    out = Path(args.out)
    profile = cfg.profile
    planned = {w.index for w in plan.windows}
    records = sorted_records(r for r in journal.records if r.window in planned and r.mode in cfg.modes)
    factory = RosbagsMessageFactory()
    names = tuple(profile.dimension_names)

    def message(record: ChunkRecord) -> Any:
        return build_action_chunk(ActionChunkData(
            actions=record.actions, stamp_ns=record.stamp_ns, start_ns=record.start_ns, dt_s=1.0 / profile.fps,
            frame_id=args.frame_id, mode=record.mode, profile=profile.name, action_space=profile.action_space,
            domain_name=profile.domain_name, domain_id=profile.domain_id, dimension_names=names,
            sequence_number=record.window + 1, model_latency_s=record.model_s), factory)

    topics = {"inverse_dynamics": args.output_topic, "policy": args.policy_topic}
    copied: tuple[Any, Any] = ((), ())
    if args.copy_input_topics:
        inputs = [*cfg.camera_topics, *(t for t in (cfg.state_topic, cfg.command_topic, args.task_topic) if t)]
        specs, stream, notes = bag.copy_stream(inputs)
        for note in notes:
            stage(note)
        copied = (specs, stream)
    replace_folder(lambda path: write_action_bag(
        path, records, storage=args.storage, topics={m: topics[m] for m in cfg.modes}, make_message=message,
        copied_topics=copied[0], copied_messages=copied[1]), out / "actions")

    complete = {w for w in planned if all((w, m) in {(r.window, r.mode) for r in records} for m in cfg.modes)}
    failures = [f for f in journal.failures if f.window in planned]
    evaluation, eval_note = evaluation_outputs(args, cfg, index, plan, records, out)
    doc = {
        "format": OUTPUT_FORMAT,
        "bag": str(Path(args.bag)),
        "storage": bag.storage,
        "profile": profile.name, "mode": list(cfg.modes), "action_space": profile.action_space,
        "domain_name": profile.domain_name, "domain_id": profile.domain_id, "dimension_names": list(names),
        "chunk": profile.chunk, "fps": profile.fps, "dt": 1.0 / profile.fps, "stride": cfg.stride,
        "seed": cfg.seed, "seed_rule": "window k uses seed + k",
        "topics": {m: topics[m] for m in cfg.modes},
        "origin_ns": plan.origin_ns,
        "windows_planned": len(plan.windows) + len(plan.skipped),
        "windows_done": len(complete),
        "complete": len(complete) + len(failures) == len(plan.windows),
        "skipped": [{"window": s.index, "t0_ns": s.t0_ns, "reason": s.reason} for s in plan.skipped]
        + [{"window": f.window, "t0_ns": f.t0_ns, "reason": f.reason} for f in failures],
        "evaluation": evaluation or eval_note,
        "windows": windows_json(records),
    }
    write_text_atomic(out / "actions.json", json.dumps(doc, indent=1))
    def row_time(record: ChunkRecord, step: int) -> int:
        return int(grid_times(plan.origin_ns, profile.fps, [record.window * cfg.stride + step + 1])[0])

    write_text_atomic(out / "actions.csv", actions_csv(records, names, row_time))
    state = "complete" if doc["complete"] else "partial"
    stage(f"wrote {out}/actions/ ({len(records)} chunks, {args.storage}), actions.json, actions.csv"
          + (f", {evaluation}" if evaluation else "") + f" [{state}: {len(complete)}/{len(plan.windows)} windows]")


def evaluation_outputs(args: argparse.Namespace, cfg: LabelSettings, index: BagIndex, plan: WindowPlan,
                       records: Sequence[ChunkRecord], out: Path) -> tuple[str | None, str]:
    """Write ``eval.json`` (+ PNGs) when recorded joints or commands exist; returns (file names, note)."""
    from .evaluation import SHARED_DEFINITIONS, evaluate, evaluation_written, plot_chunks, plots_unavailable

    profile = cfg.profile
    if not cfg.joint_space:
        return None, (f"not done: profile {profile.name!r} predicts {profile.action_space!r} actions; recorded "
                      f"joints are only compared with joint-position actions")
    sources = {name: s for name, s in (("joint_states", index.state), ("commands", index.commands)) if s is not None}
    if not sources:
        return None, "not done: no --joint-topic or --command-topic"
    if not records:
        return None, "not done: no finished windows"
    windows = sorted({r.window for r in records})
    chunk = profile.chunk
    starts = [w * cfg.stride for w in windows]
    row_times = np.stack([grid_times(plan.origin_ns, profile.fps, range(s + 1, s + chunk + 1)) for s in starts])
    t0 = grid_times(plan.origin_ns, profile.fps, starts)
    dims = profile.raw_action_dim
    references = {}
    for name, series in sources.items():
        held = held_values(series.stamps_ns, series.values, row_times.reshape(-1), cfg.max_hold_ns,
                           strict=name == "commands")
        references[name] = held.reshape(len(windows), chunk, dims)
    if index.state is not None:
        hold = held_values(index.state.stamps_ns, index.state.values, t0, cfg.max_hold_ns)
    else:
        hold = np.full((len(windows), dims), np.nan)
    names = list(profile.dimension_names)
    arm = [i for i in range(dims) if i not in profile.gripper_dims]
    results = evaluate(records, references, hold, names, arm)
    plots: list[str] = []
    plot_note = plots_unavailable(args.no_plots)
    if not plot_note:
        lo, hi = int(t0[0]) - NS_PER_S // 2, int(row_times[-1, -1]) + NS_PER_S // 2
        recorded = {}
        for name, series in sources.items():
            keep = (series.stamps_ns >= lo) & (series.stamps_ns <= hi)
            recorded[name] = (series.stamps_ns[keep], series.values[keep])
        for mode in cfg.modes:
            if any(r.mode == mode for r in records):
                png = plot_chunks(mode, records, recorded, names, cfg.dt_ns, plan.origin_ns,
                                  f"{Path(args.bag).name}: {mode.replace('_', ' ')} vs recorded ({profile.name})")
                path = out / f"eval_{mode}.png"
                write_bytes_atomic(path, png)
                plots.append(path.name)
    doc = {
        "format": OUTPUT_FORMAT,
        "units": "rad for joints; 0 (open) .. 1 (closed) for the gripper",
        "definitions": {
            "row_time": "row k of a window's chunk is compared at t0 + (k + 1) / fps (the time of frame k + 1)",
            "joint_states": "recorded joint state held (zero-order hold on header stamps) at t0 + (k + 1) / fps",
            "commands": "newest recorded command stamped before t0 + (k + 1) / fps",
            "hold_baseline": "the joint state at t0 repeated for every row (the robot holds its pose)",
            **SHARED_DEFINITIONS,
        },
        "dimension_names": names,
        "windows": len(windows),
        "max_hold_s": cfg.max_hold_ns / NS_PER_S,
        "references": results,
        "plots": plots or plot_note,
    }
    write_text_atomic(out / "eval.json", json.dumps(doc, indent=1))
    return evaluation_written(plots, plot_note), ""
