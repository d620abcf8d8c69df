"""The denoising engine: token ids + canvas pixels + action conditioning -> action latents (+ rollout).

Two evaluators compute the per-step velocities and share one outer loop:

* ``reference``: the straightforward uncached loop — the full diffusers forward over text + vision + action
  for each branch at each step. It is the oracle every optimisation is checked against.
* ``cached``: text K/V from the text tower, cached across steps and requests (LRU by token ids); each step
  runs only the generation stack over vision + action tokens, both CFG branches as one batch.

Sampler state is float32; the transformer runs in the serving dtype. Only the clean conditioning frames are
VAE-encoded (the causal VAE makes latent frame f depend on pixel frames <= 4f only). The decoder runs only
when a rollout is asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, InputError
from . import sampler as unipc
from .checkpoint import CheckpointInfo, load_transformer, load_vae, load_vae_decoder
from .layout import (
    SPATIAL_COMPRESSION,
    GenerationLayout,
    PositionConfig,
    latent_frames,
    pixel_prefix_for,
    text_positions,
)
from .stacks import GenerationInputs, GenerationTower, TextKV, TextTower
from .text_kv import TextKVCache
from .vae_encode import GraphedEncoder, use_single_frame_conv2d

EVALUATORS = ("cached", "reference")
# CUDA attention for the generation stream (see fast.py): cudnn_zero_pad runs one kernel over the zero-padded
# slot and rescales; flash / cudnn merge a masked text-slot kernel by log-sum-exp. Dropped after measuring: one
# masked cuDNN kernel over [text | generation] (940 vs 716 ms: its expanded bias is read per query) and cuDNN's
# ragged (variable-length) layout through torch 2.11 (it rebuilds its cuDNN graph per call, which CUDA-graph
# capture rejects).
ATTENTION_BACKENDS = ("flash", "cudnn", "cudnn_zero_pad")


@dataclass
class GenerationRequest:
    """Everything the engine needs for one sample (no files, no images, no text).

    Attributes:
        cond_ids / uncond_ids: token ids of the conditional and unconditional prompts.
        pixels: ``[3, T_p, H_canvas, W_canvas]`` float32 in [-1, 1]; at least the pixel frames the clean
            latent frames need (``4 * max(clean_frames) + 1``).
        content_hw: image content size inside the canvas (pixels); the latent is cropped to ``content // 16``.
        num_frames: pixel frames of the whole video (``chunk + 1``).
        clean_frames: latent frames given as conditioning.
        clean_actions: ``[rows, A]`` float32 model-space values of the clean action rows (others ignored).
        clean_rows: action rows given as conditioning.
        action_start_offset: pixel frame that action row 0 lines up with.
        raw_action_dim: columns in use; the rest of the A=64 are kept at zero.
        domain_id: row of the domain-aware action heads.
        fps: conditioning fps.
        sampling: steps, guidance, schedule.
        seed: noise seed.
        noise_rng: ``torch``: one CPU ``torch.Generator`` seeded once, vision noise first, then action noise (as
            diffusers draws it); ``numpy``: ``np.random.RandomState(seed).standard_normal`` in C order over each
            modality's shape, re-seeded for vision and for action (as NVIDIA's server draws it).
        noise: optional initial noise ``{"video": [1, C, T, h, w], "action": [rows, A]}`` (values at clean
            positions are ignored), to reproduce another implementation's run.
        decode: decode the rollout video.

    """

    cond_ids: tuple[int, ...]
    uncond_ids: tuple[int, ...]
    pixels: torch.Tensor
    content_hw: tuple[int, int]
    num_frames: int
    clean_frames: tuple[int, ...]
    clean_actions: torch.Tensor
    clean_rows: tuple[int, ...]
    action_start_offset: int
    raw_action_dim: int
    domain_id: int
    fps: float
    sampling: unipc.SamplingSettings
    seed: int
    noise: dict[str, torch.Tensor] | None = None
    decode: bool = False
    noise_rng: str = "torch"


@dataclass
class GenerationResult:
    """Engine output.

    Attributes:
        action_latents: ``[rows, A]`` float32 model-space actions (clean rows keep their input values).
        video_latents: ``[1, C, T, h, w]`` float32 normalised latents.
        rollout: ``[T, H, W, 3]`` float32 in [0, 1] when decoded, else None.
        timings_ms: ``vae_encode``, ``text``, ``denoise``, ``vae_decode`` wall times.

    """

    action_latents: torch.Tensor
    video_latents: torch.Tensor
    rollout: torch.Tensor | None
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Stopwatch:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, float] = {}

    def __call__(self, name: str) -> _Stopwatch:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._sync()
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.times[self._name] = self.times.get(self._name, 0.0) + (time.perf_counter() - self._start) * 1e3

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class ActionGenerator:
    """A loaded transformer + VAE that serves generation requests (one at a time; not thread-safe)."""

    def __init__(self, info: CheckpointInfo, transformer: torch.nn.Module, vae: torch.nn.Module,
                 device: torch.device, dtype: torch.dtype, text_cache_size: int = 8, *,
                 max_text_tokens: int = 128, cuda_graphs: bool = True, compile_layers: bool = True,
                 attention: str | None = None, fp8: bool | str = False) -> None:
        self.info = info
        # On CUDA the cached evaluator uses the static-shape fast tower (CUDA graphs); on CPU the plain one,
        # which keeps the reference's operand shapes so the two are bit-identical.
        self.fast = device.type == "cuda"
        self.max_text_tokens = max_text_tokens
        self.cuda_graphs = cuda_graphs
        self.compile_layers = compile_layers
        # cuDNN's Hopper attention over the zero-padded slot was the fastest measured (docs/performance.md: three
        # same-run comparisons, 12-13 ms per request ahead of the two-kernel merge); flash where cuDNN is absent
        self.attention = attention or ("cudnn_zero_pad" if torch.backends.cudnn.is_available() else "flash")
        self.fp8 = fp8
        self._fast_towers: dict[tuple[object, ...], object] = {}
        # CFG-parallel (engine/cfg_parallel.py): a replica of the transformer runs the unconditional branch here
        self.cfg_device: torch.device | None = None
        self._cfg_replica: torch.nn.Module | None = None
        self._masks: dict[GenerationLayout, tuple[torch.Tensor, torch.Tensor]] = {}
        self.transformer = transformer
        self.vae = vae
        self.device = device
        self.dtype = dtype
        self.text_tower = TextTower(transformer)
        self.text_cache = TextKVCache(self.text_tower, capacity=text_cache_size)
        use_single_frame_conv2d(vae)
        self.encoder = GraphedEncoder(vae)
        vae_dtype = next(p for p in vae.parameters() if not p.is_meta).dtype
        self._latents_mean = torch.tensor(vae.config.latents_mean, dtype=vae_dtype)
        self._latents_inv_std = 1.0 / torch.tensor(vae.config.latents_std, dtype=vae_dtype)

    @classmethod
    def load(cls, root: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
             with_decoder: bool = False, text_cache_size: int = 8, cuda_graphs: bool = True,
             compile_layers: bool = True, devices: str | None = None, weights: str = "bf16") -> ActionGenerator:
        """Load ``root`` (published layout) onto ``device``; bf16 on CUDA and fp32 on CPU unless ``dtype`` is given.

        ``devices`` (``"cuda:0,cuda:1"``) overrides ``device``: a second device runs the unconditional CFG branch.
        ``weights="fp8"`` stores the transformer blocks' linear weights in FP8 (engine/fp8.py), for 24 GB GPUs.
        """
        from .cfg_parallel import parse_devices

        chosen = parse_devices(devices) if devices else [torch.device(device)]
        device = chosen[0]
        if weights not in ("bf16", "fp8"):
            raise InputError(f"weights {weights!r}; expected 'bf16' or 'fp8'")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CheckpointError(f"device {str(device)!r} requested but CUDA is not available")
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        info = CheckpointInfo.read(root)
        transformer = load_transformer(info, device, dtype, weights=weights)
        if weights == "fp8" and device.type == "cuda":
            torch.cuda.empty_cache()  # the per-tensor bf16 temporaries of quantisation: back to the driver
        vae = load_vae(info, device, dtype, with_decoder=with_decoder)
        generator = cls(info, transformer, vae, device, dtype, text_cache_size=text_cache_size,
                        cuda_graphs=cuda_graphs, compile_layers=compile_layers)
        if len(chosen) == 2:
            generator.enable_cfg_parallel(chosen[1])
        return generator

    def enable_cfg_parallel(self, device: torch.device | str | None) -> None:
        """Run the unconditional CFG branch on ``device`` (a replica of the transformer); None turns it off."""
        from .cfg_parallel import replicate

        self._fast_towers.clear()
        self._cfg_replica, self.cfg_device = None, None
        if device is not None:
            device = torch.device(device)
            if device.type != self.device.type:
                raise InputError(f"CFG device {str(device)!r} must be of the same type as {str(self.device)!r}")
            self._cfg_replica, self.cfg_device = replicate(self.transformer, device), device

    @property
    def action_dim(self) -> int:
        """Model action width A (64)."""
        return int(self.transformer.action_dim)

    # ----- VAE -------------------------------------------------------------------------------------------

    def encode_clean_frames(self, pixels: torch.Tensor, clean_frames: tuple[int, ...], latent_t: int,
                            content_hw: tuple[int, int]) -> torch.Tensor:
        """Normalised latents ``[1, C, T, h, w]`` float32 on the device: encoded on clean frames, zero elsewhere.

        On CUDA the encode is only queued: the caller may do CPU work (draw the noise) while it runs.
        """
        return self.encode_clean_frames_batch([pixels], clean_frames, latent_t, content_hw)[0]

    def encode_clean_frames_batch(self, pixels: list[torch.Tensor], clean_frames: tuple[int, ...], latent_t: int,
                                  content_hw: tuple[int, int]) -> list[torch.Tensor]:
        """``encode_clean_frames`` for several same-shape videos in one VAE call (one batch of B videos)."""
        h, w = (max(s // SPATIAL_COMPRESSION, 1) for s in content_hw)
        channels = int(self.vae.config.z_dim)
        x0 = [torch.zeros(1, channels, latent_t, h, w, device=self.device) for _ in pixels]
        clean = [f for f in clean_frames if 0 <= f < latent_t]
        if not clean:
            return x0
        needed = pixel_prefix_for(max(clean))
        for p in pixels:
            if p.shape[1] < needed:
                raise InputError(f"{p.shape[1]} pixel frame(s) given; clean latent frames {clean} need {needed}")
        vae_dtype = self._latents_mean.dtype
        x = torch.stack([p[:, :needed] for p in pixels]).to(device=self.device, dtype=vae_dtype)
        mu = self.encoder(x)
        mean = self._latents_mean.to(self.device).view(1, -1, 1, 1, 1)
        inv_std = self._latents_inv_std.to(self.device).view(1, -1, 1, 1, 1)
        z = ((mu - mean) * inv_std).float()[:, :, :, :h, :w]
        for index, out in enumerate(x0):
            out[:, :, clean] = z[index: index + 1, :, clean]
        return x0

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[1, C, T, h, w]`` -> frames ``[T', H, W, 3]`` float32 in [0, 1] (CPU)."""
        load_vae_decoder(self.info, self.vae, self.device, self._latents_mean.dtype)
        vae_dtype = self._latents_mean.dtype
        mean = self._latents_mean.to(self.device).view(1, -1, 1, 1, 1)
        inv_std = self._latents_inv_std.to(self.device).view(1, -1, 1, 1, 1)
        z = latents.to(device=self.device, dtype=vae_dtype) / inv_std + mean
        video = self.vae.decode(z).sample.float()
        return (video[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).cpu()

    # ----- denoising ---------------------------------------------------------------------------------------

    def layout_for(self, request: GenerationRequest) -> GenerationLayout:
        """Token bookkeeping of ``request``."""
        h, w = (max(s // SPATIAL_COMPRESSION, 1) for s in request.content_hw)
        return GenerationLayout(
            latent_thw=(latent_frames(request.num_frames), h, w),
            patch_size=int(self.transformer.config.latent_patch_size),
            clean_frames=tuple(request.clean_frames),
            action_rows=int(request.clean_actions.shape[0]),
            clean_rows=tuple(request.clean_rows),
            action_start_offset=request.action_start_offset,
            fps=request.fps,
        )

    def _validate(self, request: GenerationRequest) -> None:
        cfg = self.transformer.config
        if not 0 <= request.domain_id < int(cfg.num_embodiment_domains):
            raise InputError(f"domain_id {request.domain_id}; expected 0..{int(cfg.num_embodiment_domains) - 1}")
        if not 1 <= request.raw_action_dim <= self.action_dim:
            raise InputError(f"raw_action_dim {request.raw_action_dim}; expected 1..{self.action_dim}")
        if request.clean_actions.ndim != 2 or request.clean_actions.shape[1] != self.action_dim:
            raise InputError(
                f"clean_actions shape {list(request.clean_actions.shape)}; expected [rows, {self.action_dim}]"
            )
        vocab = int(cfg.vocab_size)
        for name, ids in (("cond_ids", request.cond_ids), ("uncond_ids", request.uncond_ids)):
            if not ids or min(ids) < 0 or max(ids) >= vocab:
                raise InputError(f"{name}: token ids must be non-empty and in [0, {vocab})")

    def initial_noise(self, request: GenerationRequest, layout: GenerationLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """``(video [1, C, T, h, w], action [rows, A])`` float32 initial noise (given, or from the seed on CPU)."""
        channels = int(self.vae.config.z_dim)
        video_shape = (1, channels, *layout.latent_thw)
        action_shape = (layout.action_rows, self.action_dim)
        if request.noise is not None:
            video, action = request.noise.get("video"), request.noise.get("action")
            if video is None or tuple(video.shape) != video_shape:
                raise InputError(f"noise 'video' has shape {None if video is None else list(video.shape)}; "
                                 f"expected {list(video_shape)}")
            if action is None or tuple(action.shape) != action_shape:
                raise InputError(f"noise 'action' has shape {None if action is None else list(action.shape)}; "
                                 f"expected {list(action_shape)}")
            return video.float().cpu(), action.float().cpu()
        if request.noise_rng == "numpy":
            if not 0 <= int(request.seed) < 2**32:
                raise InputError(f"seed {request.seed} with numpy noise; expected an integer in [0, 2**32)")
            video_np = np.random.RandomState(int(request.seed)).standard_normal(video_shape).astype(np.float32)
            action_np = np.random.RandomState(int(request.seed)).standard_normal(action_shape).astype(np.float32)
            return torch.from_numpy(video_np), torch.from_numpy(action_np)
        if request.noise_rng != "torch":
            raise InputError(f"noise_rng {request.noise_rng!r}; expected 'torch' or 'numpy'")
        generator = torch.Generator("cpu").manual_seed(int(request.seed))
        pinned = self.device.type == "cuda"  # page-locked, so the copy to the GPU does not stall the stream
        video = torch.empty(video_shape, dtype=torch.float32, pin_memory=pinned)
        action = torch.empty(action_shape, dtype=torch.float32, pin_memory=pinned)
        torch.randn(video_shape, generator=generator, out=video)
        torch.randn(action_shape, generator=generator, out=action)
        return video, action

    def condition_masks(self, layout: GenerationLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """``(vision [T, 1, 1], action [rows, 1])``: 1 at clean positions, float32 on the device (cached per layout)."""
        if layout not in self._masks:
            if len(self._masks) >= 8:
                self._masks.pop(next(iter(self._masks)))
            self._masks[layout] = (layout.vision_condition_mask().to(self.device),
                                   layout.action_condition_mask().to(self.device))
        return self._masks[layout]

    def generate(self, request: GenerationRequest, evaluator: str = "cached",
                 progress: Callable[[str], None] | None = None) -> GenerationResult:
        """Run one request through VAE encode, the denoising loop and (optionally) decode."""
        if evaluator not in EVALUATORS:
            raise InputError(f"evaluator {evaluator!r}; expected one of {list(EVALUATORS)}")
        self._validate(request)
        watch = _Stopwatch(self.device)
        layout = self.layout_for(request)
        with torch.no_grad():
            if progress:
                progress("vae encode")
            with watch("vae_encode"):  # the CPU draws the noise while the GPU encodes
                x0_video = self.encode_clean_frames(request.pixels, layout.clean_frames, layout.latent_thw[0],
                                                    request.content_hw)
                noise = self.initial_noise(request, layout)
        return self._generate_from_latents(request, layout, x0_video, noise, evaluator, watch, progress)

    def generate_batch(self, requests: list[GenerationRequest], evaluator: str = "cached",
                       progress: Callable[[str], None] | None = None) -> list[GenerationResult]:
        """Several requests: their clean frames are VAE-encoded together (same shapes), then each is denoised.

        Results equal ``generate`` per request up to the VAE's batch arithmetic; ``vae_encode`` time is shared
        out evenly.
        """
        if evaluator not in EVALUATORS:
            raise InputError(f"evaluator {evaluator!r}; expected one of {list(EVALUATORS)}")
        for request in requests:
            self._validate(request)
        layouts = [self.layout_for(r) for r in requests]
        groups: dict[tuple[object, ...], list[int]] = {}
        for index, (request, layout) in enumerate(zip(requests, layouts, strict=True)):
            key = (tuple(request.pixels.shape), layout.clean_frames, layout.latent_thw, request.content_hw)
            groups.setdefault(key, []).append(index)
        encoded: dict[int, torch.Tensor] = {}
        noises: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        shares: dict[int, float] = {}
        with torch.no_grad():
            for indices in groups.values():
                watch = _Stopwatch(self.device)
                first = layouts[indices[0]]
                with watch("vae_encode"):
                    latents = self.encode_clean_frames_batch([requests[i].pixels for i in indices], first.clean_frames,
                                                             first.latent_thw[0], requests[indices[0]].content_hw)
                    for i in indices:
                        noises[i] = self.initial_noise(requests[i], layouts[i])
                for i, latent in zip(indices, latents, strict=True):
                    encoded[i] = latent
                    shares[i] = watch.times["vae_encode"] / len(indices)
        results = []
        for index, (request, layout) in enumerate(zip(requests, layouts, strict=True)):
            watch = _Stopwatch(self.device)
            watch.times["vae_encode"] = shares[index]
            results.append(self._generate_from_latents(request, layout, encoded[index], noises[index], evaluator,
                                                       watch, progress))
        return results

    def _generate_from_latents(self, request: GenerationRequest, layout: GenerationLayout, x0_video: torch.Tensor,
                               noise: tuple[torch.Tensor, torch.Tensor], evaluator: str, watch: _Stopwatch,
                               progress: Callable[[str], None] | None) -> GenerationResult:
        """The denoising loop and the optional decode, from the encoded clean latents and the initial noise."""
        with torch.no_grad():
            device = self.device
            noise_video, noise_action = (n.to(device, non_blocking=True) for n in noise)
            vision_mask, action_mask = self.condition_masks(layout)
            x0_action = request.clean_actions.float().to(device)
            vision = vision_mask * x0_video + (1.0 - vision_mask) * noise_video
            action = action_mask * x0_action + (1.0 - action_mask) * noise_action
            action[:, request.raw_action_dim:] = 0
            velocity = self._make_evaluator(evaluator, request, layout, watch)
            with watch("denoise"):
                vision, action = self._denoise(request, layout, vision, action, velocity, progress)
            rollout = None
            if request.decode:
                if progress:
                    progress("vae decode")
                with watch("vae_decode"):
                    rollout = self.decode(vision)
        return GenerationResult(action_latents=action.float().cpu(), video_latents=vision.float().cpu(),
                                rollout=rollout, timings_ms=dict(watch.times))

    def _denoise(self, request: GenerationRequest, layout: GenerationLayout, vision: torch.Tensor,
                 action: torch.Tensor, velocity: Callable[..., list[tuple[torch.Tensor, torch.Tensor]]],
                 progress: Callable[[str], None] | None) -> tuple[torch.Tensor, torch.Tensor]:
        settings = request.sampling
        scheduler = unipc.build_scheduler(settings, self.info.scheduler_config)
        vision_solver, action_solver = unipc.clone(scheduler), unipc.clone(scheduler)
        device = self.device
        clean_vision, clean_action = self.condition_masks(layout)
        noisy_vision, noisy_action = 1.0 - clean_vision, 1.0 - clean_action
        has_noisy_action = bool(len(layout.noisy_rows))
        raw = request.raw_action_dim
        steps = len(scheduler.timesteps)
        for index, timestep in enumerate(scheduler.timesteps):
            if progress:
                progress(f"denoise step {index + 1}/{steps}")
            cfg = settings.uses_cfg(index, int(timestep.item()))
            outputs = velocity(vision.to(self.dtype), action.to(self.dtype), int(timestep.item()), cfg)
            (v_cond, a_cond) = outputs[0]
            v_cond = (v_cond * noisy_vision.to(v_cond.dtype)).float()
            a_cond = a_cond * noisy_action.to(a_cond.dtype)
            a_cond[:, raw:] = 0
            a_cond = a_cond.float()
            if cfg:
                v_uncond, a_uncond = outputs[1]
                v_uncond = (v_uncond * noisy_vision.to(v_uncond.dtype)).float()
                a_uncond = a_uncond * noisy_action.to(a_uncond.dtype)
                a_uncond[:, raw:] = 0
                a_uncond = a_uncond.float()
                g = settings.guidance
                v_cond = v_uncond + g * (v_cond - v_uncond)
                a_cond = a_uncond + g * (a_cond - a_uncond)
            vision = unipc.step(vision_solver, v_cond, timestep.to(device), vision)
            if has_noisy_action:
                action = unipc.step(action_solver, a_cond, timestep.to(device), action)
                action[:, raw:] = 0
        return vision, action

    # ----- evaluators --------------------------------------------------------------------------------------

    def _fast_tower(self, layout: GenerationLayout, domain_id: int, text_len: int, replica: bool = False) -> object:
        from .cfg_parallel import device_context
        from .fast import FastGenerationTower

        key = (layout, domain_id, replica)
        if key in self._fast_towers and not self._fast_towers[key].fits_length(text_len):  # type: ignore[attr-defined]
            # a prompt longer than the slot: grow the slot (one new capture), later prompts of that size reuse it
            self.max_text_tokens = (text_len + 63) // 64 * 64
            del self._fast_towers[key]
        if key not in self._fast_towers:
            if len(self._fast_towers) >= 4:  # a new profile/shape: drop the oldest captured layout
                self._fast_towers.pop(next(iter(self._fast_towers)))
            slot = max(self.max_text_tokens, text_len)
            model = self._cfg_replica if replica else self.transformer
            with device_context(self.cfg_device if replica else self.device):
                self._fast_towers[key] = FastGenerationTower(model, layout, domain_id, max_text_tokens=slot,
                                                             use_graphs=self.cuda_graphs,
                                                             compile_layers=self.compile_layers,
                                                             attention=self.attention, fp8=self.fp8)
        return self._fast_towers[key]

    def configure_fast_path(self, *, cuda_graphs: bool | None = None, compile_layers: bool | None = None,
                            attention: str | None = None, fp8: bool | str | None = None) -> None:
        """Change the CUDA fast-path options; captured layouts are dropped and re-captured on next use."""
        if cuda_graphs is not None:
            self.cuda_graphs = cuda_graphs
        if compile_layers is not None:
            self.compile_layers = compile_layers
        if attention is not None:
            if attention not in ATTENTION_BACKENDS:
                raise InputError(f"attention {attention!r}; expected one of {list(ATTENTION_BACKENDS)}")
            self.attention = attention
        if fp8 is not None:
            self.fp8 = fp8
        self._fast_towers.clear()

    @property
    def capture_ms(self) -> float:
        """Total time spent warming up and capturing CUDA graphs so far."""
        return float(sum(getattr(t, "capture_ms", 0.0) for t in self._fast_towers.values()))

    def _make_evaluator(self, name: str, request: GenerationRequest, layout: GenerationLayout,
                        watch: _Stopwatch) -> Callable[..., list[tuple[torch.Tensor, torch.Tensor]]]:
        if name == "reference":
            return self._reference_evaluator(request, layout)
        with watch("text"):
            cond = self.text_cache.get(tuple(request.cond_ids))
            uncond = (self.text_cache.get(tuple(request.uncond_ids), pin=True)
                      if request.sampling.guidance != 1.0 else None)
        if self.fast:
            longest = max(cond.length, uncond.length if uncond is not None else 0)
            fast = self._fast_tower(layout, request.domain_id, longest)
            fast.load_text(0, cond)  # type: ignore[attr-defined]
            if uncond is not None and self._cfg_replica is not None:
                from .cfg_parallel import parallel_evaluator

                second = self._fast_tower(layout, request.domain_id, longest, replica=True)
                second.load_text(0, uncond)  # type: ignore[attr-defined]
                return parallel_evaluator(fast, second, self.device, self.cfg_device)  # type: ignore[arg-type]
            if uncond is not None:
                fast.load_text(1, uncond)  # type: ignore[attr-defined]

            def evaluate_fast(vision: torch.Tensor, action: torch.Tensor, timestep: int, cfg: bool
                              ) -> list[tuple[torch.Tensor, torch.Tensor]]:
                return fast(vision, action, timestep, 2 if cfg else 1)  # type: ignore[operator]

            return evaluate_fast
        tower = GenerationTower(self.transformer, layout, request.domain_id)
        ropes = {kv.length: tower.rope_for(kv.length, self.dtype) for kv in (cond, uncond) if kv is not None}

        def evaluate(vision: torch.Tensor, action: torch.Tensor, timestep: int, cfg: bool
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
            texts: list[TextKV] = [cond] if not cfg else [cond, uncond]  # type: ignore[list-item]
            hidden = tower.embed(GenerationInputs(vision, action, timestep))
            batch = hidden.unsqueeze(0).expand(len(texts), -1, -1)
            out = tower.forward(batch, texts, [ropes[t.length] for t in texts])
            return [tower.read_out(out[b]) for b in range(len(texts))]

        return evaluate

    def _reference_evaluator(self, request: GenerationRequest, layout: GenerationLayout
                             ) -> Callable[..., list[tuple[torch.Tensor, torch.Tensor]]]:
        """Per-step full forward of the diffusers transformer, no caching of any kind."""
        model, device = self.transformer, self.device
        positions = PositionConfig.from_model_config(model.config)

        def packed(ids: tuple[int, ...]) -> dict[str, object]:
            length = len(ids)
            n_vision = layout.num_vision_tokens
            action_index = torch.arange(length + n_vision, length + layout.num_gen_tokens, device=device)
            position_ids = torch.cat([text_positions(length, positions), layout.gen_positions(length, positions)],
                                     dim=1)
            return {
                "input_ids": torch.tensor(ids, dtype=torch.long, device=device),
                "text_indexes": torch.arange(length, device=device),
                "position_ids": position_ids.to(device),
                "und_len": length,
                "sequence_length": length + layout.num_gen_tokens,
                "vision_token_shapes": [layout.patch_grid],
                "vision_sequence_indexes": torch.arange(length, length + n_vision, device=device),
                "vision_mse_loss_indexes": (layout.noisy_vision_token_index() + length).to(device),
                "vision_noisy_frame_indexes": [layout.noisy_frames.to(device)],
                "action_token_shapes": [(layout.action_rows, 1, 1)],
                "action_sequence_indexes": action_index,
                "action_mse_loss_indexes": action_index[layout.noisy_rows.to(device)],
                "action_noisy_frame_indexes": [layout.noisy_rows.to(device)],
                "action_domain_ids": [torch.tensor([request.domain_id], dtype=torch.long, device=device)],
            }

        branches = [packed(tuple(request.cond_ids)), packed(tuple(request.uncond_ids))]
        n_noisy_vision = len(layout.noisy_vision_token_index())
        n_noisy_rows = len(layout.noisy_rows)

        def evaluate(vision: torch.Tensor, action: torch.Tensor, timestep: int, cfg: bool
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
            results = []
            for static in branches[: 2 if cfg else 1]:
                preds_vision, _, preds_action = model(
                    **static, vision_tokens=[vision],
                    vision_timesteps=torch.full((n_noisy_vision,), timestep, device=device),
                    action_tokens=[action],
                    action_timesteps=torch.full((n_noisy_rows,), timestep, device=device),
                    return_dict=False,
                )
                results.append((preds_vision[0], preds_action[0]))
            return results

        return evaluate
