"""Bounds on every user-given value, shared by the CLI, the library and the node, checked before weights load.

A checkpoint takes minutes to load at full size, so everything that can be judged without the model (sampling
settings, state and action values, image sizes, the device string) is judged first, with one error that names
the value and what was expected. ``Profile.validate`` applies the profile bounds; the node's parameter ranges are
built from the same numbers.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ..errors import InputError

MAX_CHUNK = 128  # action rows per request: the video then has 129 frames (33 latent frames), ~4x the released 32
MAX_STEPS = 1000  # one step per training timestep: more would repeat integer timesteps
MAX_FPS = 120.0  # control / conditioning rate (Hz)
MAX_GUIDANCE = 100.0  # CFG scale; beyond this the output is dominated by the CFG difference, not the model
MAX_FLOW_SHIFT = 100.0
MAX_TIMESTEP = 1001  # guidance-interval bounds are integer timesteps in [0, 1001] (the Edge interval ends at 1001)
MAX_ABS_VALUE = 1.0e4  # state / known-action magnitude: joints in rad and EEF poses in m are far below this
MIN_IMAGE_SIDE = 16  # one latent pixel of the VAE (x16 spatial compression)
MAX_IMAGE_PIXELS = 40_000_000  # 40 MP: above an 8K frame; PIL's decompression-bomb limit is ~179 MP
MAX_PROMPT_TOKENS = 1024  # token budget of the caption (task + template sentences) in the text slot
MAX_TASK_CHARS = 4000  # a cheap bound checked before the tokenizer is loaded
_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d+|mps|xpu|xpu:\d+)$")


def check_finite_number(name: str, value: Any, low: float | None = None, high: float | None = None,
                        low_inclusive: bool = True) -> float:
    """``value`` as a float if finite and within ``[low, high]`` (``(low, high]`` when not ``low_inclusive``)."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}={value!r}; expected a number") from exc
    lo_ok = low is None or (number >= low if low_inclusive else number > low)
    if not math.isfinite(number) or not lo_ok or (high is not None and number > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise InputError(f"{name}={value!r}; expected a finite number in {'[' if low_inclusive else '('}{lo}, {hi}]")
    return number


def check_values(name: str, array: np.ndarray, bound: float = MAX_ABS_VALUE) -> np.ndarray:
    """``array`` unchanged if every value is finite and ``|x| <= bound``."""
    finite = np.isfinite(array)
    if not finite.all():
        index = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise InputError(f"{name}: value {float(array[index])} at index {list(index)}; expected finite numbers")
    if array.size and float(np.abs(array).max()) > bound:
        index = tuple(int(i) for i in np.unravel_index(int(np.abs(array).argmax()), array.shape))
        raise InputError(f"{name}: value {float(array[index]):g} at index {list(index)}; expected |x| <= {bound:g}")
    return array


def check_image_size(what: str, width: int, height: int) -> None:
    """Refuse images smaller than one latent pixel per side or larger than ``MAX_IMAGE_PIXELS``."""
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(f"{what}: image is {width}x{height}; expected at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"{what}: image is {width}x{height} ({width * height / 1e6:.0f} MP); expected at most "
                         f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP")


def check_device(device: Any) -> str:
    """A torch device string this machine can use: cpu, cuda, cuda:N (N < device count), mps, xpu[:N]."""
    text = str(device).strip()
    if not _DEVICE.match(text):
        raise InputError(f"device {text!r}; expected cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= count:
            raise InputError(f"device {text!r}, but this machine has {count} usable CUDA device(s); expected "
                             + ("cpu" if count == 0 else f"cuda:0..cuda:{count - 1}"))
    return text


def check_task_text(task: Any) -> None:
    """A cheap length bound on the task sentence, before any tokenizer is loaded."""
    if isinstance(task, str) and len(task) > MAX_TASK_CHARS:
        raise InputError(f"task: {len(task)} characters; expected at most {MAX_TASK_CHARS}")
