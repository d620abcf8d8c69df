"""Dataset labelling (``cosmos3-ros dataset-infer``): action chunks for every episode of a LeRobot dataset.

Per episode, the parquet ``timestamp`` column is laid on the model's grid by zero-order hold (``windows``),
windows never cross episodes, frames are decoded from the episode's videos, and each window runs through the
same ``ActionPredictor`` as the node. Workers (``workers``: this process, one process per device, or Ray actors)
label whole episodes; this process alone writes the journal (``OUT/windows.jsonl``), so every chunk lands
exactly once even when a worker dies and its episode reruns. Outputs, rebuilt from the journal and replaced
atomically: ``OUT/actions.parquet``, ``OUT/actions.json`` and, where the dataset records ``observation.state`` /
``action`` in the profile's joint space, ``OUT/eval.json`` and PNG plots. See ``docs/labelling.md``.

Seeds: window k of episode e uses ``seed + 10000 * e + k`` (independent of sharding, batching and resuming).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import InputError
from .bag_labelling import MODEL_STAGE_ERRORS, Progress
from .lerobot_source import EpisodeData, EpisodeInfo, LeRobotDataset, parse_episodes, require
from .outputs import (
    ChunkRecord,
    EpisodeDone,
    Journal,
    WindowFailure,
    item_from_json,
    sorted_records,
    write_bytes_atomic,
    write_text_atomic,
)
from .windows import NS_PER_S, Window, WindowPlan, held_values, hold_indices, plan_windows

Stage = Callable[[str], None]

JOURNAL_FORMAT = "cosmos3_ros.dataset_infer.journal/1"
OUTPUT_FORMAT = "cosmos3_ros.dataset_infer/1"
SEED_EPISODE_STRIDE = 10_000
DROID_KEYS = {"wrist": "observation.images.wrist_left", "exterior_1": "observation.images.exterior_1_left",
              "exterior_2": "observation.images.exterior_2_left"}
PLOTTED_EPISODES = 3
WAIT_NOTICE_S = 120.0
DECODE_GROUP = 4  # windows whose frames are decoded together (one seek per camera), one group ahead


@dataclass(frozen=True)
class EpisodeTask:
    """One unit of work: an episode and what the journal already holds of it."""

    episode: int
    done: frozenset[tuple[int, str]] = frozenset()
    failed: frozenset[int] = frozenset()


@dataclass(frozen=True)
class ModelCall:
    """One model call of a window: the request, the views it shows (for failure reasons) and the row frames."""

    window: Window
    mode: str
    request: Any  # processing.request.ActionRequest
    views: Sequence[Mapping[str, np.ndarray]]
    frame_stamps: dict[str, list[int]]
    row_frames: list[int]


@dataclass(frozen=True)
class DatasetJob:
    """Everything a worker needs (picklable): the dataset, the model and how to cut windows.

    ``load(device)`` builds the worker's predictor; ``label(predictor, task)`` yields journal items as JSON dicts.
    A subclass may override ``load`` (the labelling benchmark builds a random full-size model instead).
    """

    root: str
    checkpoint: str
    profile: Any  # processing.profiles.Profile resolved without the checkpoint
    profile_name: str
    overrides: Mapping[str, Any]
    evaluator: str
    cameras: tuple[tuple[str, str], ...]  # (profile camera name, dataset video key)
    task: str | None
    modes: tuple[str, ...]
    stride: int
    max_hold_ns: int
    seed: int
    state_keys: tuple[str, ...]
    batch: int = 1

    # ----- the model --------------------------------------------------------------------------------------

    def check(self) -> None:
        """Read the checkpoint's configuration (cheap) here, before workers spend minutes loading it."""
        from ..engine.checkpoint import CheckpointInfo

        CheckpointInfo.read(self.checkpoint)

    def load(self, device: str) -> Any:
        """The predictor of one worker, checked against the plan's chunk / fps / state use."""
        from ..processing.predictor import ActionPredictor

        predictor = ActionPredictor.load(self.checkpoint, self.profile_name, device=device,
                                         overrides=dict(self.overrides), decode_rollout=False,
                                         evaluator=self.evaluator)
        loaded, planned = predictor.profile, self.profile
        if (loaded.chunk, loaded.fps, loaded.use_state) != (planned.chunk, planned.fps, planned.use_state):
            raise InputError(f"profile {loaded.name!r} resolved against the checkpoint to chunk {loaded.chunk} at "
                             f"{loaded.fps} fps; the plan assumed chunk {planned.chunk} at {planned.fps} fps")
        return predictor

    # ----- one episode ------------------------------------------------------------------------------------

    def dataset(self) -> LeRobotDataset:
        """The dataset's metadata (read once per process)."""
        cached = _DATASETS.get(self.root)
        if cached is None:
            cached = _DATASETS[self.root] = LeRobotDataset.open(self.root)
        return cached

    def plan(self, episode: EpisodeInfo) -> tuple[EpisodeData, np.ndarray, WindowPlan]:
        """The episode's columns, its frame stamps as the planner sees them, and its windows."""
        dataset = self.dataset()
        data = dataset.read_episode(episode, {"state": self.state_keys} if self.profile.use_state else {})
        stamps = planner_stamps(data.timestamps_s, dataset.fps)
        state = stamps if self.profile.use_state else None
        plan = plan_windows({key: stamps for _, key in self.cameras}, state, fps=self.profile.fps,
                            chunk=self.profile.chunk, stride=self.stride, max_hold_ns=self.max_hold_ns,
                            state_name=",".join(self.state_keys))
        return data, stamps, plan

    def label(self, predictor: Any, task: EpisodeTask) -> Iterator[dict[str, Any]]:
        """Journal items of ``task`` as JSON dicts: chunks, window failures, and finally the episode-done mark."""
        e = task.episode
        dataset = self.dataset()
        episode = dataset.episodes[e]
        try:
            data, stamps, plan = self.plan(episode)
        except InputError as exc:
            yield WindowFailure(-1, 0, _episode_reason(e, exc), e).to_json()
            yield EpisodeDone(e, 0).to_json()
            return
        if not plan.windows and not plan.skipped:
            yield WindowFailure(-1, 0, f"episode {e}: {episode.length} frames are too few for one window of "
                                       f"{self.profile.chunk + 1} frames at {self.profile.fps:g} fps", e).to_json()
            yield EpisodeDone(e, 0).to_json()
            return
        for skipped in plan.skipped:
            if skipped.index not in task.failed:
                yield WindowFailure(skipped.index, skipped.t0_ns, f"episode {e} window {skipped.index}: "
                                    f"{skipped.reason}", e).to_json()
        todo = [w for w in plan.windows
                if w.index not in task.failed and any((w.index, m) not in task.done for m in self.modes)]
        size = max(DECODE_GROUP, self.batch)
        groups = [todo[i:i + size] for i in range(0, len(todo), size)]
        # The frames of the next group of windows are decoded on a thread (PyAV releases the GIL) while the
        # model runs this group, so the GPU does not wait for the video decoder between groups.
        with ThreadPoolExecutor(max_workers=1) as ahead:
            upcoming = ahead.submit(self.decode, episode, data, groups[0]) if groups else None
            for g, group in enumerate(groups):
                assert upcoming is not None
                try:
                    frames = upcoming.result()
                except InputError as exc:
                    if g == 0:  # nothing decodes (a missing file, no decoder): the episode is skipped
                        yield WindowFailure(-1, 0, _episode_reason(e, exc), e).to_json()
                        yield EpisodeDone(e, 0).to_json()
                        return
                    frames = exc
                upcoming = ahead.submit(self.decode, episode, data, groups[g + 1]) if g + 1 < len(groups) else None
                calls: list[ModelCall] = []
                for window in group:
                    if isinstance(frames, InputError):  # a damaged stretch later in the video: its windows only
                        yield WindowFailure(window.index, window.t0_ns, f"episode {e} window {window.index}: "
                                            f"{frames}", e).to_json()
                        continue
                    built = self.window_calls(episode, data, stamps, window, frames, task.done)
                    if isinstance(built, dict):
                        yield built
                    else:
                        calls.extend(built)
                yield from self.run_calls(predictor, e, data, calls)
        yield EpisodeDone(e, len(plan.windows) + len(plan.skipped)).to_json()

    def decode(self, episode: EpisodeInfo, data: EpisodeData, windows: Sequence[Window]
               ) -> dict[tuple[str, int], np.ndarray]:
        """Decoded frames ``(video key, row) -> uint8 [H, W, 3]`` for every row the windows use."""
        dataset = self.dataset()
        frames: dict[tuple[str, int], np.ndarray] = {}
        for _, key in self.cameras:
            rows = sorted({r for w in windows for r in w.frames[key]})
            times = [float(data.timestamps_s[r]) for r in rows]
            decoded = dataset.decode(episode, key, times)
            for row, t in zip(rows, times, strict=True):
                frames[(key, row)] = decoded[t]
        return frames

    def window_calls(self, episode: EpisodeInfo, data: EpisodeData, stamps: np.ndarray, window: Window,
                     frames: Mapping[tuple[str, int], np.ndarray], done: frozenset[tuple[int, str]]
                     ) -> list[ModelCall] | dict[str, Any]:
        """The model calls of one window (one per mode not yet journaled), or the failure item of the window."""
        from ..processing.request import ActionRequest, Mode

        e, profile = episode.index, self.profile
        first_row = window.frames[self.cameras[0][1]][0]
        try:
            task = self.task if self.task is not None else self.dataset().task_of(episode, data, first_row)
        except InputError as exc:
            return WindowFailure(window.index, window.t0_ns, f"episode {e} window {window.index}: {exc}", e).to_json()
        state = None
        if profile.use_state:
            assert window.state is not None
            state = np.asarray(data.vectors["state"][window.state], dtype=np.float32)
        seed = self.seed + SEED_EPISODE_STRIDE * e + window.index
        row_frames = data.frame_index[np.maximum(hold_indices(stamps, np.asarray(window.times_ns[1:])), 0)]
        calls = []
        for mode in self.modes:
            if (window.index, mode) in done:
                continue
            count = profile.chunk + 1 if mode == "inverse_dynamics" else 1
            views = [{name: frames[(key, window.frames[key][i])] for name, key in self.cameras} for i in range(count)]
            observation = [v if len(v) > 1 else next(iter(v.values())) for v in views]
            request = ActionRequest(task=task, mode=cast("Mode", mode), state=state, seed=seed, decode_rollout=False)
            if mode == "inverse_dynamics":
                request.video = observation
            elif isinstance(observation[0], dict):
                request.cameras = observation[0]
            else:
                request.image = observation[0]
            frame_stamps = {key: [round(float(data.timestamps_s[r]) * NS_PER_S) for r in window.frames[key][:count]]
                            for _, key in self.cameras}
            calls.append(ModelCall(window, mode, request, views, frame_stamps, [int(v) for v in row_frames]))
        return calls

    def run_calls(self, predictor: Any, e: int, data: EpisodeData, calls: Sequence[ModelCall]
                  ) -> Iterator[dict[str, Any]]:
        """Predict (``batch`` calls at a time where the predictor has ``predict_batch``); chunk or failure items.

        A batch the model refuses is rerun one call at a time, so only the bad window is skipped.
        """
        failed: set[int] = set()
        predict_batch = getattr(predictor, "predict_batch", None)
        size = self.batch if predict_batch is not None else 1
        for first in range(0, len(calls), size):
            group = list(calls[first:first + size])
            results: list[Any] | None = None
            if len(group) > 1:
                start = time.perf_counter()
                try:
                    results = list(predict_batch([c.request for c in group]))  # type: ignore[misc]
                except MODEL_STAGE_ERRORS:
                    results = None
                seconds = (time.perf_counter() - start) / len(group)
            for i, call in enumerate(group):
                if call.window.index in failed:
                    continue
                if results is None:
                    start = time.perf_counter()
                    try:
                        prediction: Any = predictor.predict(call.request)
                    except MODEL_STAGE_ERRORS as exc:
                        prediction = exc
                    seconds = time.perf_counter() - start
                else:
                    prediction = results[i]
                item = self.finish(e, data, call, prediction, seconds)
                if item["kind"] == "failure":
                    failed.add(call.window.index)
                yield item

    def finish(self, e: int, data: EpisodeData, call: ModelCall, prediction: Any, seconds: float) -> dict[str, Any]:
        """The journal item of one model call: its chunk, or why the window is skipped."""
        window = call.window
        problem = prediction if isinstance(prediction, Exception) else None
        if problem is None:
            actions = np.asarray(prediction.actions, dtype=np.float32)
            if not np.all(np.isfinite(actions)):
                problem = InputError(f"the model produced non-finite actions ({call.mode})")
        if problem is not None:
            return WindowFailure(window.index, window.t0_ns, self.model_reason(e, data, window, call.views, problem),
                                 e).to_json()
        request = call.request
        newest = max(s for values in call.frame_stamps.values() for s in values)
        return ChunkRecord(
            window=window.index, mode=call.mode, t0_ns=window.t0_ns, start_ns=window.times_ns[1], stamp_ns=newest,
            log_ns=newest, seed=int(request.seed), task=str(request.task), actions=actions, model_s=seconds,
            frame_stamps_ns={k: [v[0], v[-1]] for k, v in call.frame_stamps.items()},
            state=None if request.state is None else
            np.asarray(request.state, dtype=np.float32).tolist(), episode=e, row_frames=call.row_frames).to_json()

    def model_reason(self, e: int, data: EpisodeData, window: Window, views: Sequence[Mapping[str, np.ndarray]],
                     exc: Exception) -> str:
        """Why the model refused a window: the camera and time of the first frame whose size changed, else all."""
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        for name, key in self.cameras:
            first = np.shape(views[0][name])
            for i, view in enumerate(views):
                if np.shape(view[name]) != first:
                    row = window.frames[key][i]
                    return (f"episode {e} window {window.index}: model stage failed on {key} frame_index "
                            f"{int(data.frame_index[row])} (t={float(data.timestamps_s[row]):.3f} s): {detail}")
        key = self.cameras[0][1]
        row = window.frames[key][0]
        return (f"episode {e} window {window.index}: model stage failed (frames from frame_index "
                f"{int(data.frame_index[row])}, t={float(data.timestamps_s[row]):.3f} s): {detail}")


_DATASETS: dict[str, LeRobotDataset] = {}


def planner_stamps(timestamps_s: np.ndarray, fps: float) -> np.ndarray:
    """Frame stamps (int64 ns) for the planner.

    LeRobot stores ``timestamp`` as float32 (0.06666667 s for frame 1 at 15 fps), a few ns away from the grid
    tick the frame belongs to; a zero-order hold on those would take the previous frame at every tick. A
    timestamp within 5 % of a frame period of ``k / fps`` is snapped to ``round(k * 1e9 / fps)`` (what the model
    grid computes for the same instant); others are kept as they are.
    """
    ts = np.asarray(timestamps_s, dtype=np.float64)
    k = np.rint(ts * fps)
    snapped = np.abs(ts * fps - k) < 0.05
    return np.where(snapped, np.rint(k * (NS_PER_S / fps)), np.rint(ts * NS_PER_S)).astype(np.int64)


def _episode_reason(e: int, exc: Exception) -> str:
    text = str(exc)
    return text if text.startswith(f"episode {e}") else f"episode {e}: {text}"


def estimated_windows(length: int, dataset_fps: float, fps: float, chunk: int, stride: int) -> int:
    """Windows an episode of ``length`` frames yields (the planner decides; this sizes progress and ETA)."""
    ticks = math.floor((length - 1) / dataset_fps * fps + 1e-6)
    return max(0, (ticks - chunk) // stride + 1)


# ----- settings ---------------------------------------------------------------------------------------------


def camera_mapping(pairs: Sequence[str] | None, profile: Any, dataset: LeRobotDataset) -> tuple[tuple[str, str], ...]:
    """``--camera NAME=FEATURE_KEY`` -> (profile camera, video key) in the profile's camera order.

    Defaults: DROID's keys for the released profile's three cameras when the dataset has them; the only video
    key for a one-camera profile.
    """
    names = tuple(profile.cameras)
    keys = dataset.video_keys()
    given: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, key = pair.partition("=")
        if not sep or not name or not key:
            raise InputError(f"--camera {pair!r}; expected NAME=FEATURE_KEY, e.g. wrist=observation.images.wrist_left")
        if name not in names:
            raise InputError(f"--camera {pair!r}: profile {profile.name!r} has cameras {list(names)}")
        if key not in keys:
            raise InputError(f"--camera {pair!r}: the dataset has no video feature {key!r}; video features: {keys}")
        given[name] = key
    if not given:
        if len(names) == 1 and len(keys) == 1:
            given = {names[0]: keys[0]}
        elif set(names) == set(DROID_KEYS) and all(DROID_KEYS[n] in keys for n in names):
            given = {n: DROID_KEYS[n] for n in names}
    missing = [n for n in names if n not in given]
    if missing:
        raise InputError(f"profile {profile.name!r} needs --camera for {missing} (NAME=FEATURE_KEY); the dataset's "
                         f"video features: {keys}")
    return tuple((n, given[n]) for n in names)


def _keys(text: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in text.split(",") if k.strip())


def resolve_job(args: argparse.Namespace, overrides: dict[str, Any], dataset: LeRobotDataset, stage: Stage
                ) -> DatasetJob:
    """Check the flags against the profile and the dataset before any model loads."""
    from ..processing.predictor import resolve_profile

    profile = resolve_profile(args.profile, None, overrides)
    cameras = camera_mapping(args.camera, profile, dataset)
    for flag, value in (("--stride", args.stride), ("--batch", args.batch)):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value}; expected an integer >= 1")
    if not args.max_hold > 0:
        raise InputError(f"--max-hold {args.max_hold}; expected a positive number of frame periods")
    state_keys = _keys(args.state_key)
    if profile.use_state:
        widths = [dataset.vector_width(k) for k in state_keys]
        if any(w is None for w in widths):
            bad = state_keys[widths.index(None)]
            raise InputError(f"--state-key {bad!r}: the dataset has no numeric feature of that name; profile "
                             f"{profile.name!r} needs the state [q1..q7, gripper]")
        if sum(cast("list[int]", widths)) != profile.raw_action_dim:
            raise InputError(f"--state-key {args.state_key!r} gives {sum(cast('list[int]', widths))} values; profile "
                             f"{profile.name!r} needs {profile.raw_action_dim} ([q1..q7, gripper])")
    if args.task is None and not dataset.tasks and not any(e.tasks for e in dataset.episodes.values()):
        raise InputError(f"dataset {str(dataset.root)!r} lists no tasks; give --task")
    stage(f"cameras: {', '.join(f'{n}={k}' for n, k in cameras)}")
    return DatasetJob(
        root=str(Path(args.dataset).resolve()), checkpoint=str(args.checkpoint), profile=profile,
        profile_name=args.profile, overrides=overrides, evaluator=args.evaluator, cameras=cameras, task=args.task,
        modes=("inverse_dynamics",) if args.mode == "inverse_dynamics" else ("inverse_dynamics", "policy"),
        stride=args.stride or profile.chunk, max_hold_ns=round(args.max_hold * NS_PER_S / profile.fps),
        seed=int(profile.seed), state_keys=state_keys, batch=args.batch)


def journal_settings(args: argparse.Namespace, job: DatasetJob, episodes: Sequence[int]) -> dict[str, Any]:
    """What changes the journal's content; ``--resume`` requires it equal (workers / devices may change)."""
    return {
        "dataset": job.root, "checkpoint": str(Path(job.checkpoint).resolve()), "profile": job.profile.name,
        "overrides": {k: v for k, v in sorted(job.overrides.items()) if v is not None}, "evaluator": job.evaluator,
        "cameras": [list(c) for c in job.cameras], "task": job.task, "modes": list(job.modes),
        "episodes": args.episodes, "chunk": job.profile.chunk, "fps": job.profile.fps, "stride": job.stride,
        "max_hold": args.max_hold, "seed": job.seed, "state_keys": list(job.state_keys),
    }


def devices_for(device: str, workers: int) -> list[str]:
    """``--device`` (one, or a comma list) and ``--workers`` -> one device per worker.

    ``cuda`` with N workers means ``cuda:0 .. cuda:N-1``; ``cpu`` repeats; a list gives one worker per entry.
    """
    listed = [d.strip() for d in device.split(",") if d.strip()]
    if workers < 1:
        raise InputError(f"--workers {workers}; expected an integer >= 1")
    if len(listed) > 1:
        if workers not in (1, len(listed)):
            raise InputError(f"--workers {workers} with --device {device!r}: give one worker per listed device")
        return listed
    one = listed[0] if listed else "cpu"
    if workers == 1:
        return [one]
    if one == "cuda":
        return [f"cuda:{i}" for i in range(workers)]
    if one == "cpu":
        return ["cpu"] * workers
    raise InputError(f"--workers {workers} with --device {one!r}: list the devices (e.g. cuda:0,cuda:1) or give "
                     f"cuda / cpu")


# ----- the run ----------------------------------------------------------------------------------------------


def label_dataset(args: argparse.Namespace, overrides: dict[str, Any], stage: Stage,
                  job_class: type[DatasetJob] = DatasetJob) -> dict[str, Any]:
    """Plan, run the pending episodes on the workers (journaled), write the outputs; also on Ctrl-C.

    Returns run statistics (windows labelled this run, seconds from the first worker ready to the end).
    """
    for module in ("pyarrow.parquet", "av"):  # fail before any work, not once per episode in the workers
        require(module)
    dataset = LeRobotDataset.open(args.dataset)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {args.out!r} exists and is not a folder")
    job = resolve_job(args, overrides, dataset, stage)
    if job_class is not DatasetJob:
        job = job_class(**{f: getattr(job, f) for f in DatasetJob.__dataclass_fields__})
    job.check()
    episodes = parse_episodes(args.episodes, list(dataset.episodes))
    devices = devices_for(args.device, args.workers)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    journal = Journal.open(out, journal_settings(args, job, episodes), resume=args.resume,
                           journal_format=JOURNAL_FORMAT)
    finished = journal.finished_episodes()
    pending = [e for e in episodes if e not in finished]
    profile = job.profile
    stage(f"dataset {dataset.root} (LeRobot {dataset.version}, {dataset.fps:g} fps): {len(episodes)} episodes, "
          f"windows of {profile.chunk + 1} frames at {profile.fps:g} fps, stride {job.stride}")
    if args.resume:
        stage(f"resuming: {len(episodes) - len(pending)} of {len(episodes)} episodes already in {journal.path.name}")
    stats: dict[str, Any] = {"windows": 0, "seconds": 0.0, "workers": len(devices) if not args.ray else args.workers}
    try:
        if pending:
            stats = run_episodes(args, job, dataset, pending, devices, journal, stage)
    except KeyboardInterrupt:
        journal.close()
        stage(f"interrupted: writing outputs from the {len(journal.records)} finished chunks")
        write_outputs(args, job, dataset, episodes, journal, stage)
        raise
    except Exception:
        journal.close()
        if not (args.resume or journal.records or journal.failures or journal.episodes):
            # Failed before anything was labelled (e.g. the model does not load): leave nothing behind, so the
            # next run needs no --resume.
            journal.path.unlink(missing_ok=True)
            if created and not any(out.iterdir()):
                out.rmdir()
        raise
    finally:
        journal.close()
    write_outputs(args, job, dataset, episodes, journal, stage)
    return stats


def run_episodes(args: argparse.Namespace, job: DatasetJob, dataset: LeRobotDataset, pending: Sequence[int],
                 devices: Sequence[str], journal: Journal, stage: Stage) -> dict[str, Any]:
    """Hand episodes to idle workers until all are done; journal every item once; replace dead workers."""
    from .workers import InlineBackend, ProcessBackend, RayBackend

    backend: Any
    if args.ray:
        gpus = 1.0 if devices[0].startswith("cuda") else 0.0
        backend = RayBackend(job, args.ray, args.workers, gpus)
        where = f"{args.workers} Ray actors ({'1 GPU' if gpus else 'CPU'} each, Ray at {args.ray})"
    elif len(devices) == 1 and not getattr(args, "spawn", False):
        backend = InlineBackend(job, devices[0])
        where = devices[0]
    else:
        backend = ProcessBackend(job, devices)
        where = f"{len(devices)} worker processes ({', '.join(devices)})"
    profile = job.profile
    estimates = {e: estimated_windows(dataset.episodes[e].length, dataset.fps, profile.fps, profile.chunk,
                                      job.stride) for e in pending}
    done_before = {(r.episode, r.window) for r in journal.records if r.mode == job.modes[-1]} | \
        {(f.episode, f.window) for f in journal.failures}
    progress = Progress(max(1, sum(estimates.values()) - len(done_before)), command="dataset-infer")
    stage(f"loading checkpoint {args.checkpoint} on {where}; labelling {len(pending)} episodes "
          f"(~{sum(estimates.values())} windows, {', '.join(job.modes)})")
    todo = list(pending)
    running: dict[int, int] = {}  # worker -> episode
    restarts = 0
    counted: dict[int | None, set[int]] = {}  # episode -> windows the progress has counted
    for e, w in done_before:
        counted.setdefault(e, set()).add(w)
    ready: set[int] = set()
    all_ready: float | None = None  # when every first worker had its model loaded: the steady-state clock starts
    windows_run = windows_steady = 0
    workers = backend.start()
    expected = len(workers)
    started = notice = time.perf_counter()
    try:
        while todo or running:
            if not ready and time.perf_counter() - notice > WAIT_NOTICE_S:
                notice = time.perf_counter()
                stage(f"waiting for workers: none has loaded its model after {notice - started:.0f} s"
                      + (" (does the Ray cluster have a free GPU / CPU per actor?)" if args.ray else ""))
            for event in backend.poll(0.5):
                kind, worker = event[0], event[1]
                if kind == "idle":
                    ready.add(worker)
                    if all_ready is None and len(ready) >= expected:
                        all_ready = time.perf_counter()
                    running.pop(worker, None)
                    if todo:
                        episode = todo.pop(0)
                        running[worker] = episode
                        backend.submit(worker, _task(journal, episode))
                elif kind == "item":
                    item = item_from_json(event[2])
                    labelled = _journal_item(journal, item, job, progress, counted, estimates, stage)
                    windows_run += labelled
                    windows_steady += labelled if all_ready is not None else 0
                elif kind == "dead":
                    if event[3:] == ("load",):  # a checkpoint that does not load will not load on a retry
                        raise InputError(event[2])
                    lost = running.pop(worker, None)
                    if worker in workers:
                        workers.remove(worker)
                    stage(f"{event[2]}" + (f"; episode {lost} goes back to the queue" if lost is not None else ""))
                    if lost is not None:
                        todo.insert(0, lost)
                    restarts += 1
                    if restarts > 2 * len(devices) + 2:
                        raise InputError(f"workers keep dying ({restarts} so far; last: {event[2]})")
                    workers.append(backend.replace(worker))
    finally:
        backend.close()
    seconds = time.perf_counter() - (all_ready or time.perf_counter())
    return {"windows": windows_run, "windows_steady": windows_steady, "seconds_steady": seconds,
            "workers": len(devices) if not args.ray else args.workers,
            "windows_per_s": windows_steady / seconds if seconds > 0 else None}


def _task(journal: Journal, episode: int) -> EpisodeTask:
    done, failed = journal.episode_state(episode)
    return EpisodeTask(episode, done, failed)


def _journal_item(journal: Journal, item: Any, job: DatasetJob, progress: Progress,
                  counted: dict[int | None, set[int]], estimates: dict[int, int], stage: Stage) -> int:
    """Append ``item`` unless the journal has it (a rerun episode); returns 1 when a window was labelled."""
    if isinstance(item, ChunkRecord):
        if journal.has(item):
            return 0
        journal.append(item)
        seen = counted.setdefault(item.episode, set())
        if item.mode == job.modes[-1] and item.window not in seen:
            seen.add(item.window)
            progress.advance()
            return 1
        return 0
    if isinstance(item, WindowFailure):
        if journal.has(item):
            return 0
        journal.append(item)
        stage(f"skipped: {item.reason}")
        seen = counted.setdefault(item.episode, set())
        if item.window >= 0 and item.window not in seen:
            seen.add(item.window)
            progress.advance()
        return 0
    if not journal.has(item):
        journal.append(item)
        # Correct the estimate with what the episode really held (e.g. a skipped episode has none).
        real = len(counted.get(item.episode, ()))
        progress.total += real - estimates.get(item.episode, real)
        estimates[item.episode] = real
    return 0


# ----- outputs ----------------------------------------------------------------------------------------------


def write_outputs(args: argparse.Namespace, job: DatasetJob, dataset: LeRobotDataset, episodes: Sequence[int],
                  journal: Journal, stage: Stage) -> None:
    """(Re)build ``actions.parquet``, ``actions.json`` and the evaluation from the journal (atomic replaces)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(args.out)
    profile = job.profile
    chosen = set(episodes)
    records = sorted(sorted_records(r for r in journal.records if r.episode in chosen and r.mode in job.modes),
                     key=lambda r: (r.episode, r.window))
    names = list(profile.dimension_names)
    columns: dict[str, list[Any]] = {k: [] for k in ("episode_index", "frame_index", "timestamp", "window_index",
                                                      "mode", "step")}
    values: list[np.ndarray] = []
    dt_ns = NS_PER_S / profile.fps
    for r in records:
        chunk = len(r.actions)
        columns["episode_index"] += [r.episode] * chunk
        columns["frame_index"] += list(r.row_frames or [-1] * chunk)
        columns["timestamp"] += [(r.start_ns + round(k * dt_ns)) / NS_PER_S for k in range(chunk)]
        columns["window_index"] += [r.window] * chunk
        columns["mode"] += [r.mode] * chunk
        columns["step"] += list(range(chunk))
        values.append(np.asarray(r.actions, dtype=np.float32))
    matrix = np.concatenate(values) if values else np.zeros((0, len(names)), dtype=np.float32)
    table = pa.table({
        "episode_index": pa.array(columns["episode_index"], type=pa.int64()),
        "frame_index": pa.array(columns["frame_index"], type=pa.int64()),
        "timestamp": pa.array(columns["timestamp"], type=pa.float64()),
        "window_index": pa.array(columns["window_index"], type=pa.int64()),
        "mode": pa.array(columns["mode"], type=pa.string()),
        "step": pa.array(columns["step"], type=pa.int32()),
        **{name: pa.array(matrix[:, d], type=pa.float32()) for d, name in enumerate(names)},
    })
    tmp = out / ".actions.parquet.partial"
    pq.write_table(table, tmp)
    tmp.replace(out / "actions.parquet")

    done_episodes = {d.episode for d in journal.episodes if d.episode in chosen}
    failures = sorted((f for f in journal.failures if f.episode in chosen), key=lambda f: (f.episode, f.window))
    complete_windows = {(r.episode, r.window) for r in records if r.mode == job.modes[-1]}
    evaluation, eval_note = evaluation_outputs(args, job, dataset, records, out)
    doc = {
        "format": OUTPUT_FORMAT, "dataset": str(dataset.root), "lerobot_version": dataset.version,
        "dataset_fps": dataset.fps, "profile": profile.name, "mode": list(job.modes),
        "action_space": profile.action_space, "dimension_names": names, "chunk": profile.chunk, "fps": profile.fps,
        "stride": job.stride, "cameras": {n: k for n, k in job.cameras}, "seed": job.seed,
        "seed_rule": f"window k of episode e uses seed + {SEED_EPISODE_STRIDE} * e + k",
        "episodes_selected": len(episodes), "episodes_done": len(done_episodes),
        "windows_done": len(complete_windows),
        "complete": done_episodes == set(episodes),
        "skipped": [{"episode": f.episode, "window": None if f.window < 0 else f.window, "reason": f.reason}
                    for f in failures],
        "files": {"actions": "actions.parquet", "journal": journal.path.name},
        "evaluation": evaluation or eval_note,
    }
    write_text_atomic(out / "actions.json", json.dumps(doc, indent=1))
    state = "complete" if doc["complete"] else "partial"
    stage(f"wrote {out}/actions.parquet ({len(records)} chunks), actions.json" + (f", {evaluation}" if evaluation
                                                                                   else "")
          + f" [{state}: {len(done_episodes)}/{len(episodes)} episodes, {len(complete_windows)} windows, "
            f"{len(failures)} skipped]")


def evaluation_outputs(args: argparse.Namespace, job: DatasetJob, dataset: LeRobotDataset,
                       records: Sequence[ChunkRecord], out: Path) -> tuple[str | None, str]:
    """``eval.json`` (+ PNGs) against the recorded action and state; returns (file names, note)."""
    from .evaluation import SHARED_DEFINITIONS, evaluate, evaluation_written, plot_chunks, plots_unavailable

    profile = job.profile
    if profile.action_space != "joint_position":
        return None, (f"not done: profile {profile.name!r} predicts {profile.action_space!r} actions; recorded "
                      f"joints are only compared with joint-position actions")
    dims = profile.raw_action_dim
    sources = {}
    for name, keys in (("action", _keys(args.action_key)), ("state", _keys(args.state_key))):
        widths = [dataset.vector_width(k) for k in keys]
        if keys and all(w is not None for w in widths) and sum(cast("list[int]", widths)) == dims:
            sources[name] = keys
    if not sources:
        return None, (f"not done: no --action-key / --state-key feature of width {dims} ({args.action_key!r}, "
                      f"{args.state_key!r})")
    if not records:
        return None, "not done: no finished windows"
    keyed = sorted({(r.episode, r.window) for r in records})
    position = {k: i for i, k in enumerate(keyed)}
    renumbered = [replace(r, window=position[(r.episode, r.window)]) for r in records]
    references = {f"recorded_{n}": np.full((len(keyed), profile.chunk, dims), np.nan) for n in sources}
    hold = np.full((len(keyed), dims), np.nan)
    recorded_series: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    dt_ns = NS_PER_S / profile.fps
    for e in sorted({r.episode for r in records if r.episode is not None}):
        episode = dataset.episodes[e]
        try:
            data = dataset.read_episode(episode, dict(sources))
        except InputError:
            continue
        stamps = planner_stamps(data.timestamps_s, dataset.fps)
        windows = sorted({r.window for r in records if r.episode == e})
        for w in windows:
            t0 = next(r.t0_ns for r in records if r.episode == e and r.window == w)
            ticks = t0 + np.rint(np.arange(profile.chunk + 1) * dt_ns).astype(np.int64)
            i = position[(e, w)]
            if "action" in sources:  # the action recorded at tick k targets frame k + 1: row k's reference
                references["recorded_action"][i] = held_values(stamps, data.vectors["action"], ticks[:-1],
                                                               job.max_hold_ns)
            if "state" in sources:
                references["recorded_state"][i] = held_values(stamps, data.vectors["state"], ticks[1:],
                                                              job.max_hold_ns)
                hold[i] = held_values(stamps, data.vectors["state"], ticks[:1], job.max_hold_ns)[0]
        if len(recorded_series) < PLOTTED_EPISODES:
            recorded_series[e] = {n: (stamps, data.vectors[n]) for n in sources}
    names = list(profile.dimension_names)
    arm = [i for i in range(dims) if i not in profile.gripper_dims]
    results = evaluate(renumbered, references, hold, names, arm)
    plots: list[str] = []
    plot_note = plots_unavailable(args.no_plots)
    if not plot_note:
        for e, recorded in recorded_series.items():
            chosen = [r for r in records if r.episode == e]
            for mode in job.modes:
                if any(r.mode == mode for r in chosen):
                    png = plot_chunks(mode, chosen, recorded, names, dt_ns, 0,
                                      f"episode {e}: {mode.replace('_', ' ')} vs recorded ({profile.name})")
                    path = out / f"eval_{mode}_episode_{e}.png"
                    write_bytes_atomic(path, png)
                    plots.append(path.name)
    doc = {
        "format": OUTPUT_FORMAT,
        "units": "the dataset's (rad for DROID's joints; 0 open .. 1 closed for its gripper)",
        "definitions": {
            "row_time": "row k of a window's chunk is the target for the frame at t0 + (k + 1) / fps",
            "recorded_action": f"the recorded {args.action_key!r} of the frame held at t0 + k / fps (LeRobot records "
                               f"at frame j the target reached at frame j + 1)",
            "recorded_state": f"the recorded {args.state_key!r} held at t0 + (k + 1) / fps",
            "hold_baseline": "the state at t0 repeated for every row (the robot holds its pose)",
            **SHARED_DEFINITIONS,
        },
        "dimension_names": names, "windows": len(keyed), "episodes": len({e for e, _ in keyed}),
        "references": results, "plots": plots or plot_note,
    }
    write_text_atomic(out / "eval.json", json.dumps(doc, indent=1))
    return evaluation_written(plots, plot_note), ""
