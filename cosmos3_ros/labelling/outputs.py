"""What bag labelling writes: the per-window journal, the action bag, and the JSON / CSV tables.

The journal (``windows.jsonl``: a settings header line, then one line per finished chunk, flushed as it is
written) is the source of truth; every final file is rebuilt from it and replaced atomically (temporary name,
then rename), so an interrupted run leaves a valid journal and either the old or the new version of each file.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

JOURNAL_NAME = "windows.jsonl"
JOURNAL_FORMAT = "cosmos3_ros.bag_infer.journal/1"


@dataclass(frozen=True)
class ChunkRecord:
    """One finished model call on one window.

    Attributes:
        window: window index k (its seed is ``seed + k``).
        mode: ``inverse_dynamics`` or ``policy``.
        t0_ns: grid time of the window's frame 0.
        start_ns: when row 0 applies (``t0 + 1/fps``); row k applies at ``start_ns + k / fps``.
        stamp_ns: newest header stamp of the source messages used (the ActionChunk header stamp).
        log_ns: newest bag log time of the source messages used (the output bag's record time).
        seed: noise seed used.
        task: task sentence used.
        actions: ``[chunk, action_dim]`` float32, physical units.
        model_s: wall seconds of the model call.
        frame_stamps_ns: camera topic -> header stamps of the messages used per frame.
        state: robot state at t0 given to the model, or None.
        episode: dataset episode index (dataset labelling; None for bags).
        row_frames: per action row, the dataset ``frame_index`` held at the row's time (dataset labelling).

    """

    window: int
    mode: str
    t0_ns: int
    start_ns: int
    stamp_ns: int
    log_ns: int
    seed: int
    task: str
    actions: np.ndarray
    model_s: float
    frame_stamps_ns: Mapping[str, Sequence[int]]
    state: Sequence[float] | None = None
    episode: int | None = None
    row_frames: Sequence[int] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (float32 actions survive a round trip exactly)."""
        doc = {
            "kind": "chunk", "window": self.window, "mode": self.mode, "t0_ns": self.t0_ns,
            "start_ns": self.start_ns, "stamp_ns": self.stamp_ns, "log_ns": self.log_ns, "seed": self.seed,
            "task": self.task, "actions": np.asarray(self.actions, dtype=np.float32).tolist(),
            "model_s": round(float(self.model_s), 6),
            "frame_stamps_ns": {k: [int(v) for v in vals] for k, vals in self.frame_stamps_ns.items()},
            "state": None if self.state is None else [float(v) for v in self.state],
        }
        if self.episode is not None:  # dataset journals only: bag journals keep their exact layout
            doc["episode"] = int(self.episode)
            doc["row_frames"] = None if self.row_frames is None else [int(v) for v in self.row_frames]
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ChunkRecord:
        """Inverse of ``to_json``."""
        return cls(
            window=int(doc["window"]), mode=str(doc["mode"]), t0_ns=int(doc["t0_ns"]), start_ns=int(doc["start_ns"]),
            stamp_ns=int(doc["stamp_ns"]), log_ns=int(doc["log_ns"]), seed=int(doc["seed"]), task=str(doc["task"]),
            actions=np.asarray(doc["actions"], dtype=np.float32), model_s=float(doc["model_s"]),
            frame_stamps_ns={k: [int(v) for v in vals] for k, vals in doc["frame_stamps_ns"].items()},
            state=None if doc.get("state") is None else [float(v) for v in doc["state"]],
            episode=None if doc.get("episode") is None else int(doc["episode"]),
            row_frames=None if doc.get("row_frames") is None else [int(v) for v in doc["row_frames"]],
        )


@dataclass(frozen=True)
class WindowFailure:
    """A window whose inputs could not be turned into a request (e.g. one corrupt frame)."""

    window: int
    t0_ns: int
    reason: str
    episode: int | None = None  # dataset labelling; window -1 = the whole episode

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        doc: dict[str, Any] = {"kind": "failure", "window": self.window, "t0_ns": self.t0_ns, "reason": self.reason}
        if self.episode is not None:
            doc["episode"] = int(self.episode)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> WindowFailure:
        """Inverse of ``to_json``."""
        return cls(int(doc["window"]), int(doc["t0_ns"]), str(doc["reason"]),
                   None if doc.get("episode") is None else int(doc["episode"]))


@dataclass(frozen=True)
class EpisodeDone:
    """Dataset labelling: every window of ``episode`` is in the journal (``windows`` planned, skips included)."""

    episode: int
    windows: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {"kind": "episode", "episode": self.episode, "windows": self.windows}


JournalItem = ChunkRecord | WindowFailure | EpisodeDone


def item_from_json(doc: Mapping[str, Any]) -> JournalItem:
    """A journal line (or a worker's message) back as its dataclass."""
    if doc["kind"] == "chunk":
        return ChunkRecord.from_json(doc)
    if doc["kind"] == "failure":
        return WindowFailure.from_json(doc)
    if doc["kind"] == "episode":
        return EpisodeDone(int(doc["episode"]), int(doc["windows"]))
    raise ValueError(f"unknown journal entry kind {doc['kind']!r}")


class Journal:
    """Append-only JSONL journal of finished chunks; the first line holds the run's settings."""

    def __init__(self, path: Path, settings: Mapping[str, Any], records: list[ChunkRecord],
                 failures: list[WindowFailure], episodes: list[EpisodeDone] | None = None,
                 journal_format: str = JOURNAL_FORMAT) -> None:
        self.path = path
        self.settings = dict(settings)
        self.records = records
        self.failures = failures
        self.episodes = episodes if episodes is not None else []
        self.format = journal_format
        self._file: io.TextIOWrapper | None = None
        # (episode -> finished (window, mode), failed windows) and finished episodes: kept up to date on append,
        # so a dataset run asks "is this already written?" in O(1) however long the journal is.
        self._by_episode: dict[int | None, tuple[set[tuple[int, str]], set[int]]] = {}
        self._finished: set[int] = set()
        for item in [*records, *failures, *self.episodes]:
            self._index(item)

    def _index(self, item: JournalItem) -> None:
        if isinstance(item, EpisodeDone):
            self._finished.add(item.episode)
            return
        done, failed = self._by_episode.setdefault(item.episode, (set(), set()))
        if isinstance(item, ChunkRecord):
            done.add((item.window, item.mode))
        else:
            failed.add(item.window)

    def has(self, item: JournalItem) -> bool:
        """True when the journal already holds ``item`` (the same chunk, window failure or finished episode)."""
        if isinstance(item, EpisodeDone):
            return item.episode in self._finished
        done, failed = self._by_episode.get(item.episode, (set(), set()))
        return (item.window, item.mode) in done if isinstance(item, ChunkRecord) else item.window in failed

    def episode_state(self, episode: int | None) -> tuple[frozenset[tuple[int, str]], frozenset[int]]:
        """Finished ``(window, mode)`` and failed windows of ``episode``."""
        done, failed = self._by_episode.get(episode, (set(), set()))
        return frozenset(done), frozenset(failed)

    def finished_episodes(self) -> set[int]:
        """Episodes marked done."""
        return set(self._finished)

    @classmethod
    def open(cls, out_dir: Path, settings: Mapping[str, Any], *, resume: bool,
             journal_format: str = JOURNAL_FORMAT) -> Journal:
        """Start a new journal, or (``resume``) continue one whose settings equal ``settings``.

        Raises:
            InputError: a journal exists and ``resume`` is off; or ``resume`` finds different settings.

        """
        path = out_dir / JOURNAL_NAME
        settings = json.loads(json.dumps(settings))  # normalise (tuples -> lists) for the comparison
        if path.exists() and not resume:
            raise InputError(f"--out {str(out_dir)!r} already holds a journal ({JOURNAL_NAME}); pass --resume to "
                             f"continue it, or choose another --out")
        if not path.exists() or not resume:
            journal = cls(path, settings, [], [], journal_format=journal_format)
            journal._rewrite()
            return journal
        header, records, failures, episodes, clean = _read_journal(path, journal_format)
        differing = sorted(k for k in set(header) | set(settings) if header.get(k) != settings.get(k))
        if differing:
            key = differing[0]
            raise InputError(f"--resume: {path} was written with different settings ({', '.join(differing)}); "
                             f"{key}: journal {header.get(key)!r}, now {settings.get(key)!r}")
        journal = cls(path, settings, records, failures, episodes, journal_format)
        if not clean:
            journal._rewrite()  # drop a line cut off by a crash
        return journal

    def _rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".partial")
        with tmp.open("w") as f:
            f.write(json.dumps({"kind": "header", "format": self.format, "settings": self.settings}) + "\n")
            for item in [*self.records, *self.failures, *self.episodes]:
                f.write(json.dumps(item.to_json()) + "\n")
        os.replace(tmp, self.path)

    def done(self) -> set[tuple[int, str]]:
        """``(window, mode)`` pairs already in the journal."""
        return {(r.window, r.mode) for r in self.records}

    def failed(self) -> set[int]:
        """Windows recorded as failed."""
        return {f.window for f in self.failures}

    def append(self, item: JournalItem) -> None:
        """Write one line and flush it to disk."""
        if self._file is None:
            self._file = self.path.open("a")
        self._file.write(json.dumps(item.to_json()) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if isinstance(item, ChunkRecord):
            self.records.append(item)
        elif isinstance(item, WindowFailure):
            self.failures.append(item)
        else:
            self.episodes.append(item)
        self._index(item)

    def close(self) -> None:
        """Close the file (appending again reopens it)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _read_journal(path: Path, journal_format: str = JOURNAL_FORMAT
                  ) -> tuple[dict[str, Any], list[ChunkRecord], list[WindowFailure], list[EpisodeDone], bool]:
    """Settings, records, failures, and whether every line was complete."""
    lines = path.read_text().split("\n")
    clean = lines[-1] == ""
    lines = [line for line in lines if line.strip()]
    try:
        head = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        head = {}
    if head.get("kind") != "header" or head.get("format") != journal_format:
        kind = journal_format.split(".")[1].replace("_", "-")
        raise InputError(f"--resume: {path} is not a {kind} journal (first line is not a {journal_format} header)")
    records: dict[tuple[int | None, int, str], ChunkRecord] = {}
    failures: dict[tuple[int | None, int], WindowFailure] = {}
    episodes: dict[int, EpisodeDone] = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            doc = json.loads(line)
            item = item_from_json(doc)
            if isinstance(item, ChunkRecord):
                records[(item.episode, item.window, item.mode)] = item
            elif isinstance(item, WindowFailure):
                failures[(item.episode, item.window)] = item
            else:
                episodes[item.episode] = item
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if number == len(lines):  # the last line may have been cut off by a crash
                clean = False
                break
            raise InputError(f"--resume: {path} line {number} is not a journal entry ({exc})") from exc
    return head["settings"], list(records.values()), list(failures.values()), list(episodes.values()), clean


# ----- atomic files ---------------------------------------------------------------------------------------------


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def replace_folder(build: Callable[[Path], None], path: Path) -> None:
    """Build a folder under a temporary name with ``build(tmp)``, then put it at ``path`` (replacing it)."""
    staging = path.parent / f".{path.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    target = staging / path.name
    try:
        build(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = path.parent / f".{path.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(target, path)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


# ----- tables ---------------------------------------------------------------------------------------------------


def sorted_records(records: Iterable[ChunkRecord]) -> list[ChunkRecord]:
    """Records by window, inverse dynamics before policy."""
    order = {"inverse_dynamics": 0, "policy": 1}
    return sorted(records, key=lambda r: (r.window, order.get(r.mode, 2), r.mode))


def actions_csv(records: Iterable[ChunkRecord], dimension_names: Sequence[str],
                row_time_ns: Callable[[ChunkRecord, int], int]) -> str:
    """One row per action step: ``window, mode, step, time_ns, stamp_ns, <dimension columns>``.

    ``time_ns`` is when the row applies, ``row_time_ns(record, step)`` (the grid time of frame ``step + 1``);
    ``stamp_ns`` is the chunk's header stamp.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["window", "mode", "step", "time_ns", "stamp_ns", *dimension_names])
    for record in sorted_records(records):
        for step, row in enumerate(np.asarray(record.actions, dtype=np.float32)):
            writer.writerow([record.window, record.mode, step, row_time_ns(record, step), record.stamp_ns,
                             *(repr(float(v)) for v in row)])
    return buf.getvalue()


def windows_json(records: Iterable[ChunkRecord]) -> list[dict[str, Any]]:
    """Per window: its stamps, task, seed, state and one entry per mode with the actions."""
    by_window: dict[int, dict[str, Any]] = {}
    for record in sorted_records(records):
        entry = by_window.setdefault(record.window, {
            "window": record.window, "t0_ns": record.t0_ns, "start_ns": record.start_ns, "seed": record.seed,
            "task": record.task, "state": None if record.state is None else list(record.state),
        })
        entry[record.mode] = {
            "stamp_ns": record.stamp_ns, "actions": np.asarray(record.actions, dtype=np.float32).tolist(),
            "model_s": record.model_s, "frame_stamps_ns": dict(record.frame_stamps_ns),
        }
    return [by_window[k] for k in sorted(by_window)]


# ----- the action bag -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopiedTopic:
    """An input topic copied into the action bag: its type and ROS 2 definition (``msgdef``, ``rihs01``)."""

    topic: str
    msgtype: str
    msgdef: str
    rihs01: str


def write_action_bag(path: Path, records: Iterable[ChunkRecord], *, storage: str, topics: Mapping[str, str],
                     make_message: Callable[[ChunkRecord], Any],
                     copied_topics: Sequence[CopiedTopic] = (),
                     copied_messages: Iterable[tuple[str, int, bytes]] = ()) -> int:
    """A rosbag2 folder with one ``ActionChunk`` per record on ``topics[record.mode]``, at the record's log time.

    ``make_message`` builds the rosbags message. ``copied_messages`` (``(topic, log_ns, cdr)`` in log-time order,
    topics declared in ``copied_topics``) are merged in so the bag is written in log-time order. Returns the
    number of chunks written.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ..runtime.action_chunk import ACTION_CHUNK_TYPE, jazzy_typestore

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise InputError(f"--storage {storage!r}; expected one of {sorted(plugins)}")
    typestore = jazzy_typestore()
    chunks = sorted(records, key=lambda r: (r.log_ns, r.window, r.mode))
    with Writer(path, version=9, storage_plugin=plugins[storage]) as writer:
        chunk_connections = {mode: writer.add_connection(topic, ACTION_CHUNK_TYPE, typestore=typestore)
                             for mode, topic in topics.items()}
        copy_connections = {spec.topic: writer.add_connection(spec.topic, spec.msgtype, msgdef=spec.msgdef,
                                                              rihs01=spec.rihs01) for spec in copied_topics}
        own = ((r.log_ns, 0, r.mode, r) for r in chunks)
        other = ((log_ns, 1, topic, data) for topic, log_ns, data in copied_messages)
        for log_ns, kind, key, item in heapq.merge(own, other, key=lambda x: (x[0], x[1])):
            if kind == 0:
                writer.write(chunk_connections[key], log_ns, typestore.serialize_cdr(make_message(item),
                                                                                     ACTION_CHUNK_TYPE))
            else:
                writer.write(copy_connections[key], log_ns, item)
    return len(chunks)
