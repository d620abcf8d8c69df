"""``ActionPredictor``: a loaded checkpoint + a profile that turns ``ActionRequest`` into ``ActionPrediction``.

This is the one entry point the node, the CLI and the bag labeller share, so all three run the same
processing and engine: decode/compose images -> canvas -> caption -> token ids -> model-space action
conditioning -> engine -> physical actions (+ rollout frames).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine.checkpoint import CheckpointInfo
from ..engine.generator import ActionGenerator, GenerationRequest, GenerationResult
from ..engine.layout import latent_frames, pixel_prefix_for
from ..engine.sampler import SamplingSettings
from ..errors import InputError, ProfileError
from . import actions as act
from . import limits
from .images import compose_droid_views, resize_to, select_frames, to_canvas, to_rgb_uint8
from .profiles import DROID_CAMERAS, Profile, get_profile
from .prompt import PromptTokenizer, caption, clean_task
from .request import MODES, ActionPrediction, ActionRequest

log = logging.getLogger(__name__)
EDGE_GUIDANCE_INTERVAL = (960, 1001)


def checkpoint_declarations(profile: Profile, info: CheckpointInfo) -> dict[str, Any]:
    """Profile fields the checkpoint's own files declare for ``profile``.

    The base-model contract follows diffusers' ``Cosmos3OmniPipeline``: ``model_index.json``'s
    ``default_use_system_prompt`` (absent = true, the pipeline's default) and ``use_native_flow_schedule``
    (absent = false: the scheduler config as is; true: that config on the native sigma grid). The released
    contract follows NVIDIA's server: the prompt format from ``checkpoint.json`` and, for Edge, the guidance interval.
    """
    declared: dict[str, Any] = {}
    if profile.name == "base":
        index = info.model_index
        declared["use_system_prompt"] = bool(index.get("default_use_system_prompt", True))
        declared["schedule"] = "checkpoint_native" if index.get("use_native_flow_schedule", False) else "checkpoint"
        return declared
    if info.prompt_format is not None:
        declared["prompt_format"] = info.prompt_format
    if info.variant == "edge":
        # NVIDIA serves the Edge policy with CFG on timesteps inside (960, 1001) only (the first of 4 steps)
        declared["guidance_interval"] = EDGE_GUIDANCE_INTERVAL
    return declared


def resolve_profile(base: Profile | str, checkpoint: ActionGenerator | CheckpointInfo | None = None,
                    overrides: dict[str, Any] | None = None) -> Profile:
    """The profile to serve: named defaults <- checkpoint declarations <- values the user gave, validated.

    ``overrides`` holds profile fields plus ``stats_file`` (a stats JSON path) and ``stats`` (inline
    ``{"mean": [...], ...}``), which become ``Profile.stats``. A ``None`` value means "not given" and never
    replaces a declaration. ``checkpoint`` is the checkpoint's ``CheckpointInfo`` (or a loaded generator); it
    needs no weights, so a bad value is reported before any are loaded.
    """
    profile = get_profile(base) if isinstance(base, str) else base
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    stats_file = given.pop("stats_file", None)
    stats_inline = given.pop("stats", None)
    info = getattr(checkpoint, "info", checkpoint)
    declared = checkpoint_declarations(profile, info) if info is not None else {}
    for key, value in declared.items():
        if key in given and given[key] != value:
            log.info("profile %s: %s=%r (given) replaces the checkpoint's %r", profile.name, key, given[key], value)
    merged = {**declared, **given}
    if "flow_shift" in given and merged.get("schedule", profile.schedule) != "native":
        raise ProfileError(f"flow_shift={given['flow_shift']!r} applies to schedule 'native' only, but the schedule is "
                           f"{merged.get('schedule', profile.schedule)!r} (the checkpoint's scheduler config); "
                           "give schedule 'native' too")
    profile = profile.with_overrides(**merged)
    if stats_file is not None or stats_inline is not None:
        stats = (act.ActionStats.from_file(stats_file, profile.normalization) if stats_file is not None
                 else stats_inline if isinstance(stats_inline, act.ActionStats)
                 else act.ActionStats.from_mapping(stats_inline))
        profile = profile.with_overrides(stats=stats)
    if isinstance(checkpoint, ActionGenerator):
        check_against_checkpoint(profile, checkpoint)
    return profile


def check_against_checkpoint(profile: Profile, generator: ActionGenerator) -> None:
    """Raise ProfileError when the profile contradicts what the checkpoint declares about itself."""
    info = generator.info
    if profile.domain_id >= info.num_domains:
        raise ProfileError(f"profile {profile.name!r}: domain_id {profile.domain_id} but the checkpoint has "
                           f"{info.num_domains} action-head domains")
    if profile.raw_action_dim > generator.action_dim:
        raise ProfileError(f"profile {profile.name!r}: raw_action_dim {profile.raw_action_dim} exceeds the "
                           f"checkpoint's action_dim {generator.action_dim}")
    trained_dim = info.training_value("action_dim")
    if trained_dim is not None and profile.use_state and int(trained_dim) != profile.raw_action_dim:
        raise ProfileError(f"profile {profile.name!r}: raw_action_dim {profile.raw_action_dim} but checkpoint.json "
                           f"declares action_dim {trained_dim}")
    trained_state = info.training_value("use_state")
    if trained_state is not None and profile.name != "base" and bool(trained_state) != profile.use_state:
        raise ProfileError(f"profile {profile.name!r}: use_state={profile.use_state} but checkpoint.json declares "
                           f"use_state={bool(trained_state)}")


class ActionPredictor:
    """Serve one profile from one checkpoint. ``predict`` is not thread-safe: give it one worker thread."""

    def __init__(self, generator: ActionGenerator, tokenizer: PromptTokenizer, profile: Profile,
                 decode_rollout: bool = False, evaluator: str = "cached") -> None:
        self.generator = generator
        self.tokenizer = tokenizer
        self.profile = profile
        self.decode_rollout = decode_rollout
        self.evaluator = evaluator
        if tokenizer.vocab_size > int(generator.transformer.config.vocab_size):
            raise ProfileError(f"text tokenizer has {tokenizer.vocab_size} tokens but the transformer embeds "
                               f"{generator.transformer.config.vocab_size}")

    @classmethod
    def load(cls, checkpoint: str | Path, profile: Profile | str = "released_droid_policy", *,
             device: str = "cpu", dtype: torch.dtype | None = None, overrides: dict[str, Any] | None = None,
             decode_rollout: bool = False, evaluator: str = "cached", text_cache_size: int = 8,
             compile_layers: bool = True, cuda_graphs: bool = True, devices: str | None = None,
             weights: str = "bf16") -> ActionPredictor:
        """Load a checkpoint folder and resolve the profile against it.

        ``compile_layers`` / ``cuda_graphs`` (CUDA only) trade a ~20 s first request for the fastest steady
        state: right for a node or a bag, wasted on a single request.
        """
        # Everything that needs no weights first: the device, the config files, the profile and its bounds.
        device = limits.check_device(device)
        info = CheckpointInfo.read(checkpoint)
        resolved = resolve_profile(profile, info, overrides)
        tokenizer = PromptTokenizer.from_folder(Path(checkpoint) / "text_tokenizer")
        generator = ActionGenerator.load(checkpoint, device=device, dtype=dtype, with_decoder=decode_rollout,
                                         text_cache_size=text_cache_size, compile_layers=compile_layers,
                                         cuda_graphs=cuda_graphs, devices=devices, weights=weights)
        check_against_checkpoint(resolved, generator)
        return cls(generator, tokenizer, resolved, decode_rollout=decode_rollout, evaluator=evaluator)

    def warm_up(self) -> float | None:
        """Run one synthetic request so compilation and graph capture happen now, not on the first real chunk.

        Only for profiles that fix the input size (the released policy's 540x640 composite): other layouts
        depend on the cameras' resolution, which is known only when frames arrive. Returns the time (ms) or None.
        """
        profile = self.profile
        if profile.camera_input_hw is None:
            return None
        start = time.perf_counter()
        blank = np.zeros((*profile.camera_input_hw, 3), dtype=np.uint8)
        mode = profile.mode
        request = ActionRequest(
            task="warm up", mode=mode, image=None if mode == "inverse_dynamics" else blank,
            video=[blank] * profile.num_frames if mode == "inverse_dynamics" else None,
            state=np.zeros(profile.raw_action_dim, np.float32) if profile.use_state else None,
            actions=np.zeros((profile.chunk, profile.raw_action_dim), np.float32)
            if mode == "forward_dynamics" else None,
            decode_rollout=False,
        )
        self.predict(request)
        return (time.perf_counter() - start) * 1e3

    def with_profile(self, profile: Profile) -> ActionPredictor:
        """The same loaded model serving another (validated) profile."""
        check_against_checkpoint(profile, self.generator)
        return ActionPredictor(self.generator, self.tokenizer, profile, self.decode_rollout, self.evaluator)

    # ----- inputs -------------------------------------------------------------------------------------------

    def _observation_frame(self, item: Any, what: str) -> np.ndarray:
        """One model-input frame ``uint8 [H, W, 3]``: composed (released layout) and resized per the profile."""
        profile = self.profile
        if isinstance(item, dict):
            if profile.camera_layout != "droid_concat":
                raise InputError(f"{what}: camera dict given but profile {profile.name!r} takes a single image")
            missing = [c for c in DROID_CAMERAS if c not in item]
            if missing:
                raise InputError(f"{what}: cameras {missing} missing; expected {list(DROID_CAMERAS)}")
            image = compose_droid_views(*(to_rgb_uint8(item[c], f"{what} camera {c!r}") for c in DROID_CAMERAS))
        else:
            image = to_rgb_uint8(item, what)
        return resize_to(image, profile.camera_input_hw)

    def _frames(self, request: ActionRequest, mode: str) -> list[np.ndarray]:
        sources = [s for s in (request.cameras, request.image, request.video) if s is not None]
        if len(sources) > 1:
            raise InputError("give exactly one of cameras, image or video")
        if mode == "inverse_dynamics":
            if request.video is None:
                raise InputError("inverse_dynamics needs a video (frames); got a single image")
            items = select_frames(list(request.video), self.profile.num_frames)
            return [self._observation_frame(f, f"video frame {i}") for i, f in enumerate(items)]
        if request.cameras is not None:
            return [self._observation_frame(request.cameras, "cameras")]
        if request.image is not None:
            return [self._observation_frame(request.image, "image")]
        if request.video:
            return [self._observation_frame(request.video[0], "video frame 0")]
        raise InputError(f"{mode} needs an observation: cameras, image or video")

    def _state_row(self, request: ActionRequest) -> np.ndarray | None:
        profile = self.profile
        if not profile.use_state:
            return None
        if request.state is None:
            raise InputError(f"profile {profile.name!r} needs the robot state [q1..q7, gripper] "
                             f"({profile.raw_action_dim} values)")
        state = act.as_action_array(request.state, profile.raw_action_dim, "state")
        if state.shape[0] != 1:
            state = state[-1:]  # a state history: the newest row is the current state
        return state

    def generation_request(self, request: ActionRequest, noise: dict[str, torch.Tensor] | None = None
                           ) -> tuple[GenerationRequest, dict[str, Any]]:
        """Turn ``request`` into the engine's request; also returns context needed to post-process."""
        profile = self.profile
        mode = request.mode or profile.mode
        if mode not in MODES:
            raise InputError(f"mode {mode!r}; expected one of {list(MODES)}")
        task = clean_task(request.task)
        frames = self._frames(request, mode)
        latent_t = latent_frames(profile.num_frames)
        if profile.cond_frames is not None:
            clean_frames = tuple(f for f in profile.cond_frames if f < latent_t)
        elif mode == "inverse_dynamics":
            clean_frames = tuple(range(latent_t))
        else:
            clean_frames = (0,)
        needed = pixel_prefix_for(max(clean_frames)) if clean_frames else 1
        if mode != "inverse_dynamics" and needed > 1:
            frames = select_frames(frames, needed)  # a single observation repeated, as the reference does
        canvas = to_canvas(frames[:needed], profile.resolution_tier, device=self.generator.device)
        cond_text = caption(task, profile, canvas.canvas_hw)
        cond_ids = self.tokenizer.encode(cond_text, profile.use_system_prompt, profile.system_prompt_kind)
        if len(cond_ids) > limits.MAX_PROMPT_TOKENS:
            raise InputError(f"task: the caption is {len(cond_ids)} tokens; expected at most "
                             f"{limits.MAX_PROMPT_TOKENS} (shorten the task sentence)")
        uncond_ids = self.tokenizer.encode(profile.negative_prompt, profile.use_system_prompt,
                                           profile.system_prompt_kind)

        width = self.generator.action_dim
        state = self._state_row(request)
        offset = 1 if state is not None else 0
        rows = profile.action_rows
        clean_actions = np.zeros((rows, width), dtype=np.float32)
        clean_rows: list[int] = []
        to_model = {"gripper_dims": profile.gripper_dims, "normalization": profile.normalization,
                    "stats": profile.stats, "model_width": width}
        if state is not None:
            clean_actions[0] = act.to_model_space(state, **to_model)[0]
            clean_rows.append(0)
        known: np.ndarray | None = None
        if mode == "forward_dynamics":
            if request.actions is None:
                raise InputError("forward_dynamics needs known actions ([T, raw_action_dim])")
            known = act.fit_to_length(act.as_action_array(request.actions, profile.raw_action_dim, "actions"),
                                      profile.chunk)
            clean_actions[offset:] = act.to_model_space(known, **to_model)
            clean_rows.extend(range(offset, rows))
        elif request.actions is not None:
            raise InputError(f"actions are only taken in forward_dynamics, not in {mode}")
        if request.action_prefix is not None:
            if mode != "policy":
                raise InputError(f"action_prefix is only taken in policy mode, not in {mode}")
            prefix = act.as_action_array(request.action_prefix, profile.raw_action_dim, "action_prefix")
            if prefix.shape[0] >= profile.chunk:
                raise InputError(f"action_prefix: {prefix.shape[0]} rows; expected fewer than the chunk "
                                 f"({profile.chunk}) so that some rows are generated")
            clean_actions[offset:offset + prefix.shape[0]] = act.to_model_space(prefix, **to_model)
            clean_rows.extend(range(offset, offset + prefix.shape[0]))
        seed = profile.seed if request.seed is None else int(request.seed)
        decode = self.decode_rollout if request.decode_rollout is None else bool(request.decode_rollout)
        gen = GenerationRequest(
            cond_ids=cond_ids, uncond_ids=uncond_ids, pixels=canvas.pixels, content_hw=canvas.content_hw,
            num_frames=profile.num_frames, clean_frames=clean_frames,
            clean_actions=torch.from_numpy(clean_actions), clean_rows=tuple(clean_rows),
            action_start_offset=profile.action_start_offset, raw_action_dim=profile.raw_action_dim,
            domain_id=profile.domain_id, fps=profile.fps,
            sampling=SamplingSettings(steps=profile.steps, guidance=profile.guidance,
                                      guidance_steps=profile.guidance_steps,
                                      guidance_interval=profile.guidance_interval, schedule=profile.schedule,
                                      flow_shift=profile.flow_shift),
            seed=seed, noise=noise, decode=decode, noise_rng=profile.noise_rng,
        )
        context = {"mode": mode, "state_rows": offset, "known": known, "caption": cond_text, "seed": seed}
        return gen, context

    # ----- outputs ------------------------------------------------------------------------------------------

    def physical_actions(self, result: GenerationResult, context: dict[str, Any]) -> np.ndarray:
        """``[chunk, raw_action_dim]`` physical actions from the engine result (or the known ones in FD)."""
        profile = self.profile
        if context["mode"] == "forward_dynamics":
            return np.asarray(context["known"], dtype=np.float32)
        rows = result.action_latents.numpy()[context["state_rows"]:]
        return act.to_physical(rows, raw_action_dim=profile.raw_action_dim, gripper_dims=profile.gripper_dims,
                               normalization=profile.normalization, stats=profile.stats,
                               binarize_gripper=profile.binarize_gripper)

    def predict_batch(self, requests: list[ActionRequest], workers: int = 4) -> list[ActionPrediction]:
        """Several requests (e.g. bag windows): preprocessed on parallel threads, VAE-encoded in one batch, then
        denoised one after another. Each result equals ``predict`` on its own up to the VAE's batch arithmetic.
        """
        from concurrent.futures import ThreadPoolExecutor

        if not requests:
            return []
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(requests)))) as pool:
            prepared = list(pool.map(self.generation_request, requests))
        preprocess_ms = (time.perf_counter() - start) * 1e3 / len(requests)
        results = self.generator.generate_batch([g for g, _ in prepared], evaluator=self.evaluator)
        predictions = []
        profile = self.profile
        for (_, context), result in zip(prepared, results, strict=True):
            post_start = time.perf_counter()
            actions = self.physical_actions(result, context)
            timings = {"preprocess": preprocess_ms, **result.timings_ms,
                       "postprocess": (time.perf_counter() - post_start) * 1e3}
            timings["total"] = sum(timings.values())
            predictions.append(ActionPrediction(
                actions=actions, rollout=result.rollout.numpy() if result.rollout is not None else None,
                mode=context["mode"], profile=profile.name, domain_name=profile.domain_name,
                domain_id=profile.domain_id, dimension_names=profile.dimension_names, fps=profile.fps,
                seed=context["seed"], timings_ms=timings,
            ))
        return predictions

    def predict(self, request: ActionRequest, noise: dict[str, torch.Tensor] | None = None,
                progress: Callable[[str], None] | None = None) -> ActionPrediction:
        """Run one request end to end."""
        start = time.perf_counter()
        if progress:
            progress("preprocess")
        gen, context = self.generation_request(request, noise)
        preprocess_ms = (time.perf_counter() - start) * 1e3
        result = self.generator.generate(gen, evaluator=self.evaluator, progress=progress)
        post_start = time.perf_counter()
        actions = self.physical_actions(result, context)
        rollout = result.rollout.numpy() if result.rollout is not None else None
        timings = {"preprocess": preprocess_ms, **result.timings_ms,
                   "postprocess": (time.perf_counter() - post_start) * 1e3}
        timings["total"] = (time.perf_counter() - start) * 1e3
        profile = self.profile
        return ActionPrediction(
            actions=actions, rollout=rollout, mode=context["mode"], profile=profile.name,
            domain_name=profile.domain_name, domain_id=profile.domain_id, dimension_names=profile.dimension_names,
            fps=profile.fps, seed=context["seed"], timings_ms=timings,
            latents={"video": result.video_latents, "action": result.action_latents},
        )
