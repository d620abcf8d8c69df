"""Conditioning images: decode any accepted input to RGB, compose the DROID cameras, place on the tier canvas.

Pipeline for one request: inputs -> ``uint8 [H, W, 3]`` RGB frames -> (released policy) wrist-over-exteriors
composite resized to 540x640 -> tier canvas: downscale only (bicubic, antialiased), pad bottom/right
(reflect, or edge when a pad is as large as the content) -> float ``[3, T, H_canvas, W_canvas]`` in [-1, 1].
The content size is kept so the engine can crop the latent to it (``content // 16``).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from . import limits

# Canvas (H, W) per resolution tier, keyed by its aspect ratio H / W. The model was trained on these buckets.
CANVAS_BUCKETS: dict[int, tuple[tuple[int, int], ...]] = {
    256: ((256, 256), (256, 320), (320, 256), (192, 320), (320, 192)),
    480: ((640, 640), (544, 736), (736, 544), (480, 832), (832, 480)),
    704: ((960, 960), (832, 1088), (1088, 832), (704, 1280), (1280, 704)),
    720: ((960, 960), (832, 1104), (1104, 832), (720, 1280), (1280, 720)),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _pil_to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """A decoded PIL image as ``uint8 [H, W, 3]``; 16-bit grey keeps its high byte (x >> 8, so 65535 -> 255).

    PIL's own ``convert("RGB")`` clips 16-bit values to 255 (a typical 16-bit PNG would become almost all white).
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(img)
        if wide.min() < 0 or wide.max() > 65535:
            raise InputError(f"{img.mode} image spans [{wide.min()}, {wide.max()}]; expected 16-bit values 0..65535")
        grey = (wide.astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "F":
        raise InputError("32-bit float image file; expected an 8- or 16-bit colour or grey image")
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8).copy()


def read_image_file(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """Decode an image file to ``uint8 [H, W, 3]`` RGB after checking its size from the header."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                limits.check_image_size(f"{what} {str(path)!r}", *img.size)  # before decoding any pixel
                img.load()
                return _pil_to_rgb_uint8(img)
    except FileNotFoundError as exc:
        raise InputError(f"{what}: file {str(path)!r} does not exist") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{what}: {str(path)!r} is a folder; expected an image file") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL refuses at open, before our check sees the size; its message holds the pixel count
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.0f} MP" if found else "too large"
        raise InputError(f"{what}: file {str(path)!r} is {size}; expected at most "
                         f"{limits.MAX_IMAGE_PIXELS / 1e6:.0f} MP") from exc
    except InputError as exc:
        raise InputError(str(exc) if str(path) in str(exc) else f"{what} {str(path)!r}: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{what}: file {str(path)!r} is not a readable image ({exc})") from exc


def to_rgb_uint8(image: Any, what: str = "image") -> np.ndarray:
    """Decode a path / PIL image / array / tensor to ``uint8 [H, W, 3]`` RGB.

    Arrays are ``[H, W]``, ``[H, W, 1|3|4]`` (RGB(A)) or tensors ``[1|3|4, H, W]``; float values are read as
    [0, 1] (or [-1, 1] when negative values are present); ``uint16`` values keep their high byte (x >> 8).
    Each side must be at least ``limits.MIN_IMAGE_SIDE`` pixels and the image at most ``limits.MAX_IMAGE_PIXELS``.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image_file(image, what)
    if isinstance(image, Image.Image):
        limits.check_image_size(what, *image.size)
        return _pil_to_rgb_uint8(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
            t = t.permute(1, 2, 0)
        image = t.numpy()
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"{what}: unsupported type {type(image).__name__}; expected a path, PIL image, array or tensor"
        )
    arr = image
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or min(arr.shape[:2]) < 1:
        raise InputError(f"{what}: array of shape {list(image.shape)}; expected [H, W], [H, W, 3] or [H, W, 4]")
    limits.check_image_size(what, arr.shape[1], arr.shape[0])
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{what}: float image holds non-finite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0:
            if lo < -1.0001 or hi > 1.0001:
                raise InputError(f"{what}: float image spans [{lo:.3g}, {hi:.3g}]; expected [0, 1] or [-1, 1]")
            arr = (arr + 1.0) / 2.0
        elif hi > 1.0001:
            raise InputError(f"{what}: float image spans [{lo:.3g}, {hi:.3g}]; expected [0, 1] or [-1, 1]")
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise InputError(f"{what}: integer image spans [{arr.min()}, {arr.max()}]; expected 0..255 "
                             "(or a uint16 array)")
        return arr.astype(np.uint8)
    raise InputError(f"{what}: unsupported dtype {arr.dtype}")


def _resize_uint8(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (float32, no antialias, half-pixel centres) truncated back to uint8.

    Truncation (not rounding) is what NVIDIA's policy server does (``astype(np.uint8)`` after the interpolation),
    for the exterior halves and for the composite's resize to 540x640; rounding would move ~75 % of the exterior
    pixels by one grey level. The interpolated values lie in [0, 255], so the cast never wraps.
    """
    if image.shape[:2] == tuple(hw):
        return image
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=False)
    return t[0].permute(1, 2, 0).clamp(0, 255).to(torch.uint8).numpy()  # float -> uint8 truncates toward zero


def compose_droid_views(wrist: np.ndarray, exterior_1: np.ndarray, exterior_2: np.ndarray) -> np.ndarray:
    """Wrist image on top, the two exterior images below it side by side, each at half the wrist's size.

    ``[H, W, 3]`` x3 -> ``[H + H//2, W, 3]`` uint8 (640x360 cameras give the 640 wide x 540 high training layout).
    """
    h, w = wrist.shape[:2]
    half_h, left_w = h // 2, w // 2
    bottom = np.concatenate(
        [_resize_uint8(exterior_1, (half_h, left_w)), _resize_uint8(exterior_2, (half_h, w - left_w))], axis=1
    )
    return np.concatenate([wrist, bottom], axis=0)


def resize_to(image: np.ndarray, hw: tuple[int, int] | None) -> np.ndarray:
    """Resize a (composed) image to the profile's input size (bilinear, no antialias), or keep it."""
    return image if hw is None else _resize_uint8(image, (int(hw[0]), int(hw[1])))


def canvas_size(height: int, width: int, tier: int) -> tuple[int, int]:
    """The tier's canvas ``(H, W)`` whose aspect ratio H / W is closest to the input's."""
    ratio = height / width
    return min(CANVAS_BUCKETS[tier], key=lambda hw: abs(hw[0] / hw[1] - ratio))


@dataclass(frozen=True)
class CanvasVideo:
    """Frames on the tier canvas.

    Attributes:
        pixels: ``[3, T, H_canvas, W_canvas]`` float32 in [-1, 1].
        content_hw: size of the image content (top-left) inside the canvas, in pixels.

    """

    pixels: torch.Tensor
    content_hw: tuple[int, int]

    @property
    def canvas_hw(self) -> tuple[int, int]:
        """Canvas size in pixels."""
        return int(self.pixels.shape[2]), int(self.pixels.shape[3])


def to_canvas(frames: Sequence[np.ndarray], tier: int, device: torch.device | str = "cpu") -> CanvasVideo:
    """Place ``uint8 [H, W, 3]`` frames (all the same size) on the tier canvas; see the module docstring.

    The arithmetic runs on ``device`` (the model's, so a video's frames are uploaded once as uint8).
    """
    if not frames:
        raise InputError("no frames to place on the canvas")
    h, w = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.shape[:2] != (h, w):
            raise InputError(f"frame {i} is {f.shape[1]}x{f.shape[0]}; expected {w}x{h} like frame 0")
    canvas_h, canvas_w = canvas_size(h, w, tier)
    # Same arithmetic as the reference pipeline: u8 -> [0, 1] in float32, then 2x - 1.
    x = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0
    x = 2.0 * x - 1.0
    scale = min(canvas_w / w, canvas_h / h, 1.0)  # never upscale: the tier is a ceiling
    content_h, content_w = max(1, int(scale * h + 0.5)), max(1, int(scale * w + 0.5))
    if (content_h, content_w) != (h, w):
        x = F.interpolate(x, size=(content_h, content_w), mode="bicubic", align_corners=False, antialias=True)
    pad_bottom, pad_right = canvas_h - content_h, canvas_w - content_w
    if pad_bottom or pad_right:
        # reflect needs a pad smaller than the content; otherwise repeat the edge
        mode = "replicate" if pad_right >= content_w or pad_bottom >= content_h else "reflect"
        x = F.pad(x, (0, pad_right, 0, pad_bottom), mode=mode)
    return CanvasVideo(pixels=x.permute(1, 0, 2, 3).contiguous(), content_hw=(content_h, content_w))


def select_frames(frames: Sequence[Any], count: int) -> list[Any]:
    """The first ``count`` frames, repeating the last one when there are fewer."""
    if not frames:
        raise InputError("the video holds no frames")
    chosen = list(frames[:count])
    return chosen + [chosen[-1]] * (count - len(chosen))
