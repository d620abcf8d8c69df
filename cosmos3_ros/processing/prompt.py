"""Captions and token ids.

The model reads one user turn in the chat template followed by ``eos`` and ``<|vision_start|>``. The caption
is either ``plain`` (task + viewpoint/layout sentences + duration/fps + resolution; the released Nano policy)
or ``json`` (a structured caption; the base model's action domains and the Edge policy).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, InputError
from .profiles import VIEW_POINT_SENTENCES, Profile

# The generation system prompts used when a checkpoint asks for one (the spelling is the model's). diffusers'
# pipeline picks the video one for a video; NVIDIA's policy server, were it to enable one, would pick the image one.
VIDEO_SYSTEM_PROMPT = "You are a helpful assistant who will generate videos from a give prompt."
IMAGE_SYSTEM_PROMPT = "You are a helpful assistant who will generate images from a give prompt."
SYSTEM_PROMPTS = {"video": VIDEO_SYSTEM_PROMPT, "image": IMAGE_SYSTEM_PROMPT}
_ASPECT_RATIOS = ((1, 1), (4, 3), (3, 4), (16, 9), (9, 16))


def clean_task(task: Any) -> str:
    """The task sentence of a request (first entry of a list) without trailing whitespace; empty is an error.

    Only trailing whitespace goes, as NVIDIA's server strips it; leading whitespace stays part of the caption.
    """
    if isinstance(task, (list, tuple)):
        if not task:
            raise InputError("task: empty list; expected a task sentence")
        task = task[0]
    if not isinstance(task, str):
        raise InputError(f"task: {type(task).__name__}; expected a string")
    text = task.rstrip()
    if not text.strip():
        raise InputError("task: empty string; expected a task sentence such as 'pick up the cup'")
    return text


def _join(text: str, sentence: str) -> str:
    return f"{text} {sentence}" if text.endswith(".") else f"{text}. {sentence}"


def plain_caption(task: str, profile: Profile, canvas_hw: tuple[int, int]) -> str:
    """``<task>. <view> [<layout>] The video is D.0 seconds long and is of F FPS. This video is of HxW resolution.``"""
    text = task
    text = _join(text, VIEW_POINT_SENTENCES[profile.view_point])
    if profile.view_description:
        text = _join(text, profile.view_description)
    duration = int(profile.num_frames / profile.fps)  # whole seconds, as in training
    text = _join(text, f"The video is {float(duration):.1f} seconds long and is of {profile.fps:g} FPS.")
    return _join(text, f"This video is of {canvas_hw[0]}x{canvas_hw[1]} resolution.")


def json_caption(task: str, profile: Profile, canvas_hw: tuple[int, int]) -> str:
    """The structured caption: framing, timed action, duration, fps, resolution, aspect ratio (key order matters)."""
    seconds = profile.num_frames / profile.fps
    minutes, secs = divmod(round(seconds), 60)
    description = task if task.endswith((".", "!", "?")) else f"{task}."
    framing = VIEW_POINT_SENTENCES[profile.view_point]
    if profile.view_description:
        framing = f"{framing} {profile.view_description}"
    height, width = canvas_hw
    ratio = width / height
    aspect = min(_ASPECT_RATIOS, key=lambda r: abs(r[0] / r[1] - ratio))
    doc: dict[str, Any] = {
        "cinematography": {"framing": framing},
        "actions": [{"time": f"0:00-{minutes}:{secs:02d}", "description": description}],
        "duration": f"{int(seconds) if math.isfinite(seconds) else 0}s",
        "fps": float(profile.fps),
        "resolution": {"H": int(height), "W": int(width)},
        "aspect_ratio": f"{aspect[0]},{aspect[1]}",
    }
    return json.dumps(doc)


def caption(task: str, profile: Profile, canvas_hw: tuple[int, int]) -> str:
    """The conditional caption in the profile's format."""
    build = plain_caption if profile.prompt_format == "plain" else json_caption
    return build(task, profile, canvas_hw)


class PromptTokenizer:
    """Chat-template tokenisation with the model's trailing special tokens; memoises recent texts."""

    def __init__(self, tokenizer: Any, cache_size: int = 64) -> None:
        self._tok = tokenizer
        self._cache: OrderedDict[tuple[str, bool, str], tuple[int, ...]] = OrderedDict()
        self._cache_size = cache_size
        vision_start = tokenizer.convert_tokens_to_ids("<|vision_start|>")
        if vision_start is None or vision_start == tokenizer.unk_token_id or tokenizer.eos_token_id is None:
            raise CheckpointError("text_tokenizer: missing the '<|vision_start|>' or eos special token")
        self.suffix = (int(tokenizer.eos_token_id), int(vision_start))
        self.vocab_size = len(tokenizer)

    @classmethod
    def from_folder(cls, folder: str | Path) -> PromptTokenizer:
        """Load ``text_tokenizer/`` offline (no hub access, no remote code)."""
        from transformers import AutoTokenizer

        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"text tokenizer folder {str(folder)!r} does not exist")
        try:
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        except Exception as exc:  # transformers raises OSError/ValueError/KeyError for broken folders
            raise CheckpointError(f"text tokenizer in {str(folder)!r} failed to load: {exc}") from exc
        if not getattr(tok, "chat_template", None):
            raise CheckpointError(f"text tokenizer in {str(folder)!r} has no chat template")
        return cls(tok)

    def encode(self, text: str, use_system_prompt: bool, system_prompt_kind: str = "video") -> tuple[int, ...]:
        """Token ids of one user turn (plus optional system turn), generation prompt, eos, ``<|vision_start|>``."""
        key = (text, use_system_prompt, system_prompt_kind)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        messages = []
        if use_system_prompt:
            messages.append({"role": "system", "content": SYSTEM_PROMPTS[system_prompt_kind]})
        messages.append({"role": "user", "content": text})
        encoded = self._tok.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True, add_vision_id=False, return_dict=True
        )
        ids = (*(int(i) for i in encoded["input_ids"]), *self.suffix)
        self._cache[key] = ids
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return ids
