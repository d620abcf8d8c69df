"""Small synthetic LeRobot datasets (v2.1 / v3.0) with known motion, for tests and the labelling benchmark.

Every camera shows a bright square that moves ``SQUARE_STEP_PX`` pixels right per frame on a dark gradient
(each camera its own colour). The robot moves its joints at constant speed: ``observation.state`` at frame j is
``[q(t_j), gripper(t_j)]`` and the recorded ``action`` at frame j is the state one frame later (the target the
robot reaches at frame j + 1). Written with pyarrow and PyAV (the ``labelling`` extra).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SQUARE_STEP_PX = 4
JOINT_START = np.array([0.0, -0.6, 0.0, -2.2, 0.0, 1.6, 0.8])
JOINT_SPEED = np.array([0.10, -0.05, 0.20, 0.15, -0.10, 0.05, 0.30])  # rad/s
GRIPPER_SPEED = 0.4  # per second, clipped to 1
DROID_CAMERAS = ("observation.images.wrist_left", "observation.images.exterior_1_left",
                 "observation.images.exterior_2_left")
STATE_NAMES = [*(f"joint_{i}" for i in range(1, 8)), "gripper"]


def frame_rgb(n: int, hw: tuple[int, int], camera: int = 0) -> np.ndarray:
    """Frame ``n`` of camera ``camera``: ``uint8 [H, W, 3]``, the square at column ``8 + 4n``."""
    h, w = hw
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:, :, 2] = np.linspace(20, 80, w, dtype=np.uint8)[None, :]
    size = max(8, h // 6)
    x = (8 + SQUARE_STEP_PX * n) % max(1, w - size)
    y = h // 3
    img[y:y + size, x:x + size] = [(240, 200, 40), (40, 220, 90), (220, 60, 200)][camera % 3]
    return img


def robot_state(t_s: np.ndarray) -> np.ndarray:
    """``[N, 8]`` state ``[q1..q7, gripper]`` at times ``t_s`` (seconds from the episode start)."""
    t = np.asarray(t_s, dtype=np.float64)[:, None]
    return np.concatenate([JOINT_START + JOINT_SPEED * t, np.minimum(1.0, GRIPPER_SPEED * t)], axis=1)


@contextlib.contextmanager
def keep_thread_scheduling() -> Iterator[None]:
    """Restore the calling thread's scheduling policy and priority on exit.

    Why: SVT-AV1's encoder, run as root, switches the thread that opens it to SCHED_FIFO priority 99 and leaves
    it there. Every thread and process started from it afterwards inherits real-time priority: a ROS node or a
    test process spinning at FIFO 99 on a 2-core machine starves everything else (it hung a CI run for an hour).
    """
    policy = os.sched_getscheduler(0)
    param = os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)


def _write_video(path: Path, frames: Sequence[np.ndarray], fps: float, codec: str) -> None:
    import av

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration per file otherwise
    path.parent.mkdir(parents=True, exist_ok=True)
    with keep_thread_scheduling(), av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=round(fps))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if codec == "libsvtav1":
            stream.options = {"preset": "12"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_lerobot_dataset(root: str | Path, *, version: str, lengths: Sequence[int], fps: float = 15.0,
                          cameras: Sequence[str] = DROID_CAMERAS, hw: tuple[int, int] = (96, 128),
                          codec: str = "libsvtav1", tasks: Sequence[str] = ("push the square to the right",),
                          drop: Mapping[str, Any] | None = None) -> Path:
    """Write a dataset with ``len(lengths)`` episodes of ``lengths[e]`` frames; returns ``root``.

    v2.1: one parquet and one mp4 per episode and camera; v3.0: all episodes in one parquet and one mp4 per
    camera. Episode e's task is ``tasks[e % len(tasks)]``. ``drop`` damages it for tests:
    ``{"video": (episode, camera)}`` deletes that episode's video (v2.1).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    features: dict[str, Any] = {
        key: {"dtype": "video", "shape": [hw[0], hw[1], 3], "names": ["height", "width", "channels"],
              "info": {"video.fps": fps, "video.codec": codec}} for key in cameras}
    for key in ("observation.state", "action"):
        features[key] = {"dtype": "float32", "shape": [8], "names": list(STATE_NAMES)}
    for key in ("timestamp",):
        features[key] = {"dtype": "float32", "shape": [1], "names": None}
    for key in ("frame_index", "episode_index", "index", "task_index"):
        features[key] = {"dtype": "int64", "shape": [1], "names": None}

    def episode_table(e: int, length: int, first_row: int) -> Any:
        t = np.arange(length) / fps
        state = robot_state(t).astype(np.float32)
        action = robot_state(t + 1.0 / fps).astype(np.float32)
        return pa.table({
            "observation.state": pa.array(list(state), type=pa.list_(pa.float32(), 8)),
            "action": pa.array(list(action), type=pa.list_(pa.float32(), 8)),
            "timestamp": pa.array(t.astype(np.float32)),
            "frame_index": pa.array(np.arange(length, dtype=np.int64)),
            "episode_index": pa.array(np.full(length, e, dtype=np.int64)),
            "index": pa.array(np.arange(first_row, first_row + length, dtype=np.int64)),
            "task_index": pa.array(np.full(length, e % len(tasks), dtype=np.int64)),
        })

    total = int(sum(lengths))
    info: dict[str, Any] = {"codebase_version": version, "robot_type": "franka", "fps": fps,
                            "total_episodes": len(lengths), "total_frames": total, "total_tasks": len(tasks),
                            "chunks_size": 1000, "splits": {"train": f"0:{len(lengths)}"}, "features": features}
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
    if version == "v2.1":
        info["data_path"] = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
        info["video_path"] = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
        with (meta / "tasks.jsonl").open("w") as f:
            for i, task in enumerate(tasks):
                f.write(json.dumps({"task_index": i, "task": task}) + "\n")
        with (meta / "episodes.jsonl").open("w") as f:
            for e, length in enumerate(lengths):
                f.write(json.dumps({"episode_index": e, "tasks": [tasks[e % len(tasks)]], "length": int(length)})
                        + "\n")
        for e, length in enumerate(lengths):
            path = root / info["data_path"].format(episode_chunk=0, episode_index=e)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(episode_table(e, length, int(starts[e])), path)
            for c, key in enumerate(cameras):
                if drop and drop.get("video") == (e, key):
                    continue
                _write_video(root / info["video_path"].format(episode_chunk=0, episode_index=e, video_key=key),
                             [frame_rgb(n, hw, c) for n in range(length)], fps, codec)
    elif version == "v3.0":
        info["data_path"] = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
        info["video_path"] = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
        pq.write_table(pa.table({"task_index": pa.array(np.arange(len(tasks), dtype=np.int64)),
                                 "task": pa.array(list(tasks))}), meta / "tasks.parquet")
        data = pa.concat_tables([episode_table(e, n, int(starts[e])) for e, n in enumerate(lengths)])
        path = root / info["data_path"].format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data, path)
        episodes: dict[str, list[Any]] = {
            "episode_index": list(range(len(lengths))), "tasks": [[tasks[e % len(tasks)]] for e in range(len(lengths))],
            "length": [int(n) for n in lengths], "data/chunk_index": [0] * len(lengths),
            "data/file_index": [0] * len(lengths), "dataset_from_index": [int(s) for s in starts[:-1]],
            "dataset_to_index": [int(s) for s in starts[1:]]}
        for c, key in enumerate(cameras):
            # One file per camera: episode e's frames follow each other, so its video time starts at starts[e] / fps.
            _write_video(root / info["video_path"].format(video_key=key, chunk_index=0, file_index=0),
                         [frame_rgb(n - int(starts[e]), hw, c) for e in range(len(lengths))
                          for n in range(int(starts[e]), int(starts[e + 1]))], fps, codec)
            episodes[f"videos/{key}/chunk_index"] = [0] * len(lengths)
            episodes[f"videos/{key}/file_index"] = [0] * len(lengths)
            episodes[f"videos/{key}/from_timestamp"] = [float(s) / fps for s in starts[:-1]]
            episodes[f"videos/{key}/to_timestamp"] = [float(s) / fps for s in starts[1:]]
        path = meta / "episodes" / "chunk-000" / "file-000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(episodes), path)
    else:
        raise ValueError(f"version {version!r}; expected v2.1 or v3.0")
    (meta / "info.json").write_text(json.dumps(info, indent=2))
    return root
