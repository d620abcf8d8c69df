"""LeRobot datasets (v2.1 and v3.0) in a local folder: metadata, per-episode columns, and video frames.

Read with ``pyarrow`` (parquet) and ``av`` (PyAV: video), both in the ``labelling`` extra; no dependency on the
``lerobot`` package. The two layouts:

* v2.1: one parquet per episode (``data_path`` template with ``episode_chunk``/``episode_index``), one mp4 per
  episode and camera (``video_path`` with ``video_key``); ``meta/episodes.jsonl``, ``meta/tasks.jsonl``;
  a frame's video time is its ``timestamp``.
* v3.0: many episodes per parquet and per mp4 (``chunk_index``/``file_index``); ``meta/episodes/*/*.parquet``
  holds each episode's files, row range (``dataset_from_index``/``dataset_to_index``) and per camera
  ``videos/<key>/from_timestamp``; ``meta/tasks.parquet``; a frame's video time is ``from_timestamp + timestamp``.

Video frames are matched to those times by presentation time (nearest frame within half a frame period).
AV1 (what DROID's LeRobot port uses) decodes where the PyAV build has an AV1 decoder: the PyPI wheels bundle
``libdav1d``; a build without one fails that episode with a one-line reason naming the file and codec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

VERSIONS = ("v2.0", "v2.1", "v3.0")  # v2.0 has v2.1's layout (v2.1 changed the statistics file)
INSTALL_HINT = "pip install 'cosmos3_ros[labelling]'"


def require(module: str) -> Any:
    """Import ``module`` of the ``labelling`` extra, or raise InputError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"dataset-infer needs {module.split('.', maxsplit=1)[0]!r} ({INSTALL_HINT})") from exc


@dataclass(frozen=True)
class EpisodeInfo:
    """Where one episode lives.

    Attributes:
        index: ``episode_index``.
        length: frames in the episode.
        tasks: task sentences listed for the episode (metadata; per-frame ``task_index`` wins when present).
        data_file: parquet holding its rows.
        rows: ``(from, to)`` global row range in a shared (v3.0) parquet, or None (v2.1: the whole file).
        videos: camera feature key -> (mp4 path, seconds of the episode's first frame in that file).

    """

    index: int
    length: int
    tasks: tuple[str, ...]
    data_file: Path
    rows: tuple[int, int] | None
    videos: Mapping[str, tuple[Path, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class EpisodeData:
    """The columns of one episode that labelling uses.

    Attributes:
        timestamps_s: ``[N]`` float64 seconds from the episode start (the ``timestamp`` column).
        frame_index: ``[N]`` int64.
        task_index: ``[N]`` int64, or None when the parquet has no ``task_index``.
        vectors: requested vector features -> ``[N, D]`` float64 (concatenated when several keys make one).

    """

    timestamps_s: np.ndarray
    frame_index: np.ndarray
    task_index: np.ndarray | None
    vectors: Mapping[str, np.ndarray]


class LeRobotDataset:
    """A LeRobot dataset folder (``meta/info.json`` with ``codebase_version`` v2.0, v2.1 or v3.0)."""

    def __init__(self, root: Path, info: dict[str, Any], episodes: dict[int, EpisodeInfo],
                 tasks: dict[int, str]) -> None:
        self.root = root
        self.info = info
        self.version = str(info["codebase_version"])
        self.fps = float(info["fps"])
        self.features: dict[str, Any] = dict(info.get("features", {}))
        self.episodes = episodes
        self.tasks = tasks

    # ----- metadata ----------------------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | Path) -> LeRobotDataset:
        """Read the metadata.

        Raises:
            InputError: not a folder, no or unreadable ``meta/info.json``, an unsupported version.

        """
        root = Path(root)
        info_path = root / "meta" / "info.json"
        if not root.is_dir():
            raise InputError(f"dataset {str(root)!r} is not a folder")
        if not info_path.is_file():
            raise InputError(f"dataset {str(root)!r} has no meta/info.json; expected a LeRobot v2.0, v2.1 or v3.0 "
                             f"folder")
        try:
            info = json.loads(info_path.read_text())
            version = str(info["codebase_version"])
            fps = float(info["fps"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"dataset {str(root)!r}: meta/info.json is not a LeRobot info file ({exc})") from exc
        if version not in VERSIONS:
            raise InputError(f"dataset {str(root)!r}: codebase_version {version!r}; expected one of {list(VERSIONS)}")
        if not fps > 0:
            raise InputError(f"dataset {str(root)!r}: fps {fps}; expected > 0")
        reader = _read_v21 if version.startswith("v2.") else _read_v30
        try:
            episodes, tasks = reader(root, info)
        except InputError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"dataset {str(root)!r}: unreadable {version} metadata ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
        return cls(root, info, episodes, tasks)

    def video_keys(self) -> list[str]:
        """Camera features stored as video."""
        return [k for k, v in self.features.items() if isinstance(v, dict) and v.get("dtype") == "video"]

    def vector_width(self, key: str) -> int | None:
        """Width of a numeric feature, or None when the dataset has no such feature."""
        spec = self.features.get(key)
        if not isinstance(spec, dict) or spec.get("dtype") in ("video", "image", "string"):
            return None
        shape = spec.get("shape") or [1]
        return int(np.prod(shape))

    def feature_names(self, key: str) -> list[str] | None:
        """Per-dimension names of a feature where ``info.json`` lists them."""
        names = (self.features.get(key) or {}).get("names")
        if isinstance(names, dict):  # e.g. {"motors": [...]}
            names = next(iter(names.values()), None)
        return [str(n) for n in names] if isinstance(names, list) else None

    # ----- one episode -------------------------------------------------------------------------------------

    def read_episode(self, episode: EpisodeInfo, vector_keys: Mapping[str, Sequence[str]]) -> EpisodeData:
        """The episode's timestamps, frame / task indices, and ``vector_keys`` (name -> feature keys, concatenated).

        Raises:
            InputError: missing file or column, wrong row count, non-monotonic timestamps.

        """
        pq = require("pyarrow.parquet")
        what = f"episode {episode.index}"
        if not episode.data_file.is_file():
            raise InputError(f"{what}: data file {str(episode.data_file)!r} is missing")
        keys = sorted({k for keys in vector_keys.values() for k in keys})
        try:
            schema = pq.read_schema(episode.data_file)
            wanted = ["timestamp", "frame_index", *(["task_index"] if "task_index" in schema.names else []),
                      *(["episode_index"] if "episode_index" in schema.names else []), *keys]
            missing = [c for c in wanted if c not in schema.names]
            if missing:
                raise InputError(f"{what}: {episode.data_file.name} has no column {missing[0]!r}; columns: "
                                 f"{schema.names}")
            table = _read_columns(episode.data_file, wanted) if episode.rows is not None else \
                pq.read_table(episode.data_file, columns=wanted)
        except InputError:
            raise
        except Exception as exc:  # pyarrow raises its own error types for a damaged file
            raise InputError(f"{what}: cannot read {str(episode.data_file)!r} ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
        if episode.rows is not None:
            start, stop = episode.rows
            if "episode_index" in table.column_names:
                # Shared files: select by episode_index, which does not depend on where the file's rows start.
                index = np.asarray(table.column("episode_index").to_numpy(zero_copy_only=False), dtype=np.int64)
                table = table.filter(index == episode.index)
            else:
                table = table.slice(start - _first_row(self, episode), stop - start)
        if table.num_rows != episode.length:
            raise InputError(f"{what}: {table.num_rows} rows in {episode.data_file.name}; the metadata says "
                             f"{episode.length}")
        ts = np.asarray(table.column("timestamp").to_numpy(zero_copy_only=False), dtype=np.float64)
        if ts.size == 0 or not np.all(np.isfinite(ts)) or np.any(np.diff(ts) <= 0):
            raise InputError(f"{what}: timestamps are empty, not finite or not increasing")
        vectors = {}
        for name, feature_keys in vector_keys.items():
            parts = [_column_matrix(table, k, what) for k in feature_keys]
            vectors[name] = np.concatenate(parts, axis=1) if parts else np.zeros((len(ts), 0))
        task_index = (np.asarray(table.column("task_index").to_numpy(zero_copy_only=False), dtype=np.int64)
                      if "task_index" in table.column_names else None)
        frame_index = np.asarray(table.column("frame_index").to_numpy(zero_copy_only=False), dtype=np.int64)
        return EpisodeData(timestamps_s=ts, frame_index=frame_index, task_index=task_index, vectors=vectors)

    def task_of(self, episode: EpisodeInfo, data: EpisodeData, row: int) -> str:
        """The task sentence in force at ``row`` of the episode."""
        text = None
        if data.task_index is not None and int(data.task_index[row]) in self.tasks:
            text = self.tasks[int(data.task_index[row])]
        elif episode.tasks:
            text = episode.tasks[0]
        if text is not None:
            if not text.strip():  # e.g. DROID episodes without a language annotation
                raise InputError(f"episode {episode.index}: empty task at frame_index {int(data.frame_index[row])}; "
                                 f"give --task, or leave the episode out with --episodes")
            return text
        raise InputError(f"episode {episode.index}: no task (no task_index column entry in meta/tasks and no task in "
                         f"the episode metadata); give --task")

    def decode(self, episode: EpisodeInfo, key: str, times_s: Sequence[float]) -> dict[float, np.ndarray]:
        """Frames of camera ``key`` at episode times ``times_s``: ``{time: uint8 [H, W, 3]}``.

        Raises:
            InputError: missing video, no decoder for its codec, or no frame within half a period of a time.

        """
        av = require("av")
        what = f"episode {episode.index} camera {key!r}"
        if key not in episode.videos:
            raise InputError(f"{what}: no video in the metadata")
        path, offset = episode.videos[key]
        if not path.is_file():
            raise InputError(f"{what}: video {str(path)!r} is missing")
        wanted = sorted({float(t) for t in times_s})
        if not wanted:
            return {}
        fps = float((self.features.get(key) or {}).get("info", {}).get("video.fps", self.fps))
        tolerance = 0.5 / fps
        lo, hi = offset + wanted[0] - tolerance, offset + wanted[-1] + tolerance
        found: dict[float, tuple[float, np.ndarray]] = {}
        codec = "?"
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                codec = stream.codec_context.name
                stream.thread_type = "AUTO"
                if lo > 0 and stream.time_base is not None:
                    container.seek(int(max(0.0, lo) / float(stream.time_base)), stream=stream, backward=True)
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * stream.time_base)
                    if t < lo:
                        continue
                    if t > hi:
                        break
                    image = None
                    for want in wanted:
                        gap = abs(t - offset - want)
                        if gap <= tolerance and (want not in found or gap < found[want][0]):
                            if image is None:
                                image = frame.to_ndarray(format="rgb24")
                            found[want] = (gap, image)
        except av.error.FFmpegError as exc:
            raise InputError(f"{what}: cannot decode {str(path)!r} (codec {codec}): {exc}; PyAV wheels from PyPI "
                             f"include an AV1 decoder (libdav1d), other builds may not") from exc
        missing = [t for t in wanted if t not in found]
        if missing:
            raise InputError(f"{what}: no frame within {tolerance * 1e3:.1f} ms of t={missing[0]:.4f} s in "
                             f"{path.name} (episode offset {offset:.4f} s)")
        return {t: found[t][1] for t in wanted}


_SHARED: dict[tuple[Path, tuple[str, ...]], Any] = {}


def _read_columns(path: Path, columns: list[str]) -> Any:
    """``columns`` of a v3.0 parquet shared by many episodes, read once per process (the last file is kept).

    A worker gets episodes in index order, so consecutive ones mostly share a file; reading the whole file per
    episode would make a 1,000-episode file cost 1,000 reads.
    """
    import pyarrow.parquet as pq

    key = (path, tuple(columns))
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = pq.read_table(path, columns=columns)
    return _SHARED[key]


def _first_row(dataset: LeRobotDataset, episode: EpisodeInfo) -> int:
    """Global index of the first row of ``episode.data_file`` (v3.0 without an ``episode_index`` column)."""
    same = [e.rows[0] for e in dataset.episodes.values() if e.data_file == episode.data_file and e.rows]
    return min(same)


def _column_matrix(table: Any, key: str, what: str) -> np.ndarray:
    pa = require("pyarrow")
    column = table.column(key)
    try:
        if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type) or \
                pa.types.is_large_list(column.type):
            matrix = np.asarray(column.to_pylist(), dtype=np.float64)
        else:
            matrix = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{what}: column {key!r} has ragged or non-numeric rows") from exc
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2:
        raise InputError(f"{what}: column {key!r} has shape {matrix.shape}; expected [frames, D]")
    return matrix


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"{str(path)!r} is missing")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_v21(root: Path, info: dict[str, Any]) -> tuple[dict[int, EpisodeInfo], dict[int, str]]:
    chunk_size = int(info.get("chunks_size", 1000))
    data_path = str(info["data_path"])
    video_path = info.get("video_path")
    video_keys = [k for k, v in info.get("features", {}).items() if isinstance(v, dict) and v.get("dtype") == "video"]
    tasks = {int(t["task_index"]): str(t["task"]) for t in _read_jsonl(root / "meta" / "tasks.jsonl")}
    episodes = {}
    for doc in _read_jsonl(root / "meta" / "episodes.jsonl"):
        index = int(doc["episode_index"])
        chunk = index // chunk_size
        videos = {key: (root / str(video_path).format(episode_chunk=chunk, episode_index=index, video_key=key), 0.0)
                  for key in video_keys} if video_path else {}
        episodes[index] = EpisodeInfo(
            index=index, length=int(doc["length"]), tasks=tuple(str(t) for t in doc.get("tasks", [])),
            data_file=root / data_path.format(episode_chunk=chunk, episode_index=index), rows=None, videos=videos)
    return episodes, tasks


def _read_v30(root: Path, info: dict[str, Any]) -> tuple[dict[int, EpisodeInfo], dict[int, str]]:
    pq = require("pyarrow.parquet")
    data_path = str(info["data_path"])
    video_path = info.get("video_path")
    video_keys = [k for k, v in info.get("features", {}).items() if isinstance(v, dict) and v.get("dtype") == "video"]
    tasks_file = root / "meta" / "tasks.parquet"
    if not tasks_file.is_file():
        raise InputError(f"{str(tasks_file)!r} is missing")
    table = pq.read_table(tasks_file).to_pydict()
    # lerobot writes the task sentences as the (pandas) index of tasks.parquet: column "task" or "__index_level_0__".
    names = table.get("task", table.get("__index_level_0__"))
    if names is None:
        raise InputError(f"{str(tasks_file)!r} has no task column; columns: {sorted(table)}")
    tasks = {int(i): str(t) for i, t in zip(table["task_index"], names, strict=True)}
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        raise InputError(f"dataset {str(root)!r}: no meta/episodes/*/*.parquet")
    episodes = {}
    wanted = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
              "dataset_to_index", *(f"videos/{k}/{f}" for k in video_keys for f in ("chunk_index", "file_index",
                                                                                  "from_timestamp"))]
    for file in files:
        # Only the columns used: DROID's episode files also hold per-episode statistics of every feature.
        names = pq.read_schema(file).names
        missing = [c for c in wanted if c not in names and c != "tasks"]
        if missing:
            raise InputError(f"{str(file)!r} has no column {missing[0]!r}")
        rows = pq.read_table(file, columns=[c for c in wanted if c in names]).to_pylist()
        for doc in rows:
            index = int(doc["episode_index"])
            videos = {}
            for key in video_keys if video_path else []:
                path = root / str(video_path).format(video_key=key, chunk_index=int(doc[f"videos/{key}/chunk_index"]),
                                                     file_index=int(doc[f"videos/{key}/file_index"]))
                videos[key] = (path, float(doc[f"videos/{key}/from_timestamp"]))
            episodes[index] = EpisodeInfo(
                index=index, length=int(doc["length"]), tasks=tuple(str(t) for t in doc.get("tasks") or []),
                data_file=root / data_path.format(chunk_index=int(doc["data/chunk_index"]),
                                                  file_index=int(doc["data/file_index"])),
                rows=(int(doc["dataset_from_index"]), int(doc["dataset_to_index"])), videos=videos)
    return episodes, tasks


def parse_episodes(spec: str | None, available: Sequence[int]) -> list[int]:
    """``--episodes`` (``0-9,12,20-``; None: all) -> sorted episode indices present in the dataset.

    Raises:
        InputError: bad syntax, or an explicitly listed episode the dataset lacks.

    """
    have = sorted(available)
    if spec is None or not spec.strip():
        return have
    chosen: set[int] = set()
    present = set(have)
    for part in (p.strip() for p in spec.split(",")):
        try:
            if "-" in part:
                lo_text, hi_text = part.split("-", 1)
                lo = int(lo_text)
                hi = int(hi_text) if hi_text.strip() else (have[-1] if have else lo)
                if hi < lo:
                    raise ValueError
                chosen.update(i for i in range(lo, hi + 1) if i in present)
            else:
                index = int(part)
                if index not in present:
                    raise InputError(f"--episodes {spec!r}: episode {index} is not in the dataset "
                                     f"({len(have)} episodes, {have[0] if have else '-'}..{have[-1] if have else '-'})")
                chosen.add(index)
        except ValueError as exc:
            raise InputError(f"--episodes {spec!r}: {part!r} is not N, N-M or N-; expected e.g. 0-9,12,20-") from exc
    if not chosen:
        raise InputError(f"--episodes {spec!r} selects no episode of the dataset")
    return sorted(chosen)
