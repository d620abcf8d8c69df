"""Video files in and out: read the first N frames of a video file or a folder of images; write an mp4."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from .images import IMAGE_SUFFIXES, to_rgb_uint8


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_frames(source: str | Path, max_frames: int) -> list[np.ndarray]:
    """Up to ``max_frames`` RGB ``uint8 [H, W, 3]`` frames from a video file or a folder of images (natural order)."""
    path = Path(source)
    if path.is_dir():
        images = (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files = sorted(images, key=lambda p: _natural_key(p.name))
        if not files:
            raise InputError(f"video folder {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return [to_rgb_uint8(p, what=f"frame {p.name}") for p in files[:max_frames]]
    if not path.exists():
        raise InputError(f"video {str(path)!r} does not exist")
    import imageio.v2 as iio

    frames: list[np.ndarray] = []
    try:
        with iio.get_reader(os.fspath(path), format="ffmpeg") as reader:
            for frame in reader:
                frames.append(to_rgb_uint8(np.asarray(frame), what=f"{path.name} frame {len(frames)}"))
                if len(frames) >= max_frames:
                    break
    except InputError:
        raise
    except Exception as exc:  # imageio/ffmpeg raise many types; report them as one bad-input error
        raise InputError(f"video {str(path)!r} is not readable ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise InputError(f"video {str(path)!r} holds no frames")
    return frames


def write_mp4(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """Write ``[T, H, W, 3]`` frames (float in [0, 1] or uint8) as H.264 mp4; atomic (temp file + rename)."""
    import imageio.v2 as iio

    path = Path(path)
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    # yuv420p needs even sides: pad one edge row/column by repetition when odd.
    pad_h, pad_w = arr.shape[1] % 2, arr.shape[2] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    tmp = path.with_name(path.name + ".partial.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with iio.get_writer(os.fspath(tmp), format="ffmpeg", fps=float(fps), codec="libx264", macro_block_size=1,
                        pixelformat="yuv420p", output_params=["-crf", "18"]) as writer:
        for frame in arr:
            writer.append_data(frame)
    os.replace(tmp, path)
    return path
