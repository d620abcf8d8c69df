"""Video files in and out: read the first N frames of a video file or a folder of images; write an mp4."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputError
from .images import IMAGE_SUFFIXES, to_rgb_uint8


def _imageio_ffmpeg() -> Any:
    """``imageio.v2``, with imageio-ffmpeg told to start ffmpeg without a ``preexec_fn``.

    By default imageio-ffmpeg starts ffmpeg with ``preexec_fn=os.setpgrp`` (so a terminal's Ctrl-C does not reach
    ffmpeg). That makes the child run Python between fork and exec, which is unsafe in a threaded process: on
    Python 3.12 the child frees the other threads' thread-locals, and a PyAV frame converter held there (the
    LeRobot decoder's threads) waits in ``pthread_cond_destroy`` for threads that do not exist in the child.
    ffmpeg then never starts and the rollout writer hangs. Without ``preexec_fn`` subprocess spawns without
    running Python in the child; a Ctrl-C now also stops ffmpeg, and the callers remove what it left.
    """
    os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")  # imageio-ffmpeg's switch for this hang
    import imageio.v2 as iio

    return iio


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _summarise_ffmpeg(exc: BaseException) -> str:
    """One line from an imageio/ffmpeg error: the last meaningful line of its output, without the banner."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    noise = ("ffmpeg version", "built with", "configuration:", "lib", "Input #", "Metadata:", "Duration:", "Stream #")
    useful = [line for line in lines if not line.startswith(noise)]
    text = (useful or lines or [type(exc).__name__])[-1]
    return text if len(text) <= 160 else text[:157] + "..."


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
    iio = _imageio_ffmpeg()
    frames: list[np.ndarray] = []
    try:
        with iio.get_reader(os.fspath(path), format="ffmpeg") as reader:
            for frame in reader:
                frames.append(to_rgb_uint8(np.asarray(frame), what=f"{path.name} frame {len(frames)}"))
                if len(frames) >= max_frames:
                    break
    except InputError:
        raise
    except Exception as exc:  # imageio/ffmpeg raise many types with ffmpeg's whole banner: one line of it
        raise InputError(f"video {str(path)!r} is not readable by ffmpeg ({_summarise_ffmpeg(exc)})") from exc
    if not frames:
        raise InputError(f"video {str(path)!r} holds no frames")
    return frames


def count_mp4_frames(path: str | Path) -> int:
    """Decode ``path`` and count its frames; 0 when it cannot be opened (truncated, empty, not a video)."""
    iio = _imageio_ffmpeg()

    try:
        with iio.get_reader(os.fspath(path), format="ffmpeg") as reader:
            return sum(1 for _ in reader)
    except Exception:  # any failure to decode means the file is not a usable video
        return 0


def encode_mp4(frames: np.ndarray, path: str | Path, fps: float, shown: str | Path | None = None) -> Path:
    """Write ``[T, H, W, 3]`` frames (float in [0, 1] or uint8) as H.264 mp4 at ``path`` and check it reopens with
    ``T`` frames (a full disk can leave a truncated file without an error from ffmpeg). ``shown`` is the name
    errors use (the final name when ``path`` is a temporary one).

    Raises:
        OutputError: the file could not be written or does not read back; the partial file is removed.

    """
    iio = _imageio_ffmpeg()
    path = Path(path)
    shown = str(shown or path)
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    # yuv420p needs even sides: pad one edge row/column by repetition when odd.
    pad_h, pad_w = arr.shape[1] % 2, arr.shape[2] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    try:
        try:
            with iio.get_writer(os.fspath(path), format="ffmpeg", fps=float(fps), codec="libx264",
                                macro_block_size=1, pixelformat="yuv420p", output_params=["-crf", "18"]) as writer:
                for frame in arr:
                    writer.append_data(frame)
        except Exception as exc:  # ffmpeg's error text (with its banner) -> one line
            raise OutputError(f"could not write {shown!r} ({_summarise_ffmpeg(exc)})") from exc
        written = count_mp4_frames(path)
        if written != len(arr):
            raise OutputError(f"could not write {shown!r}: it reads back with {written} of {len(arr)} frames "
                              "(disk full or not writable?)")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def write_mp4(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """``encode_mp4`` to a temporary name in the target folder, then rename: ``path`` is complete or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        encode_mp4(frames, tmp, fps, shown=path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def temporary_name(path: Path) -> Path:
    """A hidden name next to ``path`` with the same suffix (ffmpeg picks the container from it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(3)}.tmp{path.suffix}")


class AtomicOutputs:
    """Files written under temporary names in their target folders and renamed together at ``commit``.

    Used as a context manager: leaving it by an exception (a failure, ``KeyboardInterrupt``) removes every
    temporary file, so a run leaves either all of its outputs or none.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def __enter__(self) -> AtomicOutputs:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.discard()

    def temporary(self, final: str | Path) -> Path:
        """The temporary path to write ``final`` to."""
        final = Path(final)
        tmp = temporary_name(final)
        self._pending.append((tmp, final))
        return tmp

    def write_text(self, final: str | Path, text: str) -> None:
        """Write ``text`` to a temporary file for ``final`` (flushed to disk, so a full disk shows here)."""
        tmp = self.temporary(final)
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise OutputError(f"could not write {str(final)!r} ({exc.strerror or exc})") from exc

    def write_mp4(self, final: str | Path, frames: np.ndarray, fps: float) -> None:
        """Encode and verify an mp4 for ``final`` under a temporary name."""
        encode_mp4(frames, self.temporary(final), fps, shown=final)

    def commit(self) -> list[Path]:
        """Rename every temporary file to its final name; returns the final paths."""
        moved: list[Path] = []
        try:
            for tmp, final in self._pending:
                os.replace(tmp, final)
                moved.append(final)
        except OSError as exc:
            for final in moved:  # all or nothing: take back the ones already in place
                final.unlink(missing_ok=True)
            raise OutputError(f"could not move the outputs into place ({exc.strerror or exc}: {exc.filename!r})"
                              ) from exc
        done = [final for _, final in self._pending]
        self._pending = []
        return done

    def discard(self) -> None:
        """Remove every temporary file not yet committed."""
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending = []
