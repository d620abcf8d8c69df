"""``cosmos3-ros bench``: latency of the released-policy request on a GPU, against diffusers and the FLOP floor.

The full-size Cosmos3-Nano architecture (hidden 4096, 36 layers, 32/8 heads, MLP 12288, latent 48, actions 64,
Wan 2.2 VAE) is built directly on the GPU with random bf16 weights (timing does not depend on weight values).
One run measures, on the same weights:

* the ceiling: the highest of the bf16 8192^3 product rate, the sustained rate of the model's own GEMM shapes
  and the GEMMs' in-model rate from the kernel profile (so it cannot sit below what the request achieves);
  with the request's FLOPs -> the floor;
* our engine: p50/p90 chunk latency, per-phase times, peak memory, warm-up/capture time, text-cache miss cost;
* the bf16 agreement of our fast engine with our uncached reference loop (relative error of the actions);
* diffusers' ``Cosmos3OmniPipeline`` on the closest request it can express (base contract, linear-shift
  UniPC, ``output_type="latent"``, safety checker off), eager and with ``compile_repeated_blocks`` ->
  ``speedup_vs_diffusers`` / ``speedup_vs_diffusers_compiled``; its 33-frame VAE encode on its own;
* FP8 (latency, drift vs bf16), alone and with CFG on the first step only;
* with a second GPU: FP8 weight storage under a 22 GiB cap (a 24 GB card), CFG-parallel over both GPUs and
  inverse-dynamics windows/s with one model per GPU;
* optional extras: ``inverse_dynamics`` over 33 frames, batched bag windows, the Edge (relu2) variant.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Stage = Callable[[str], None]

NANO = {
    "hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 128, "intermediate_size": 12288, "vocab_size": 151936, "latent_channel": 48, "latent_patch_size": 2,
    "patch_latent_dim": 192, "action_gen": True, "action_dim": 64, "num_embodiment_domains": 32, "sound_gen": False,
    "rope_theta": 5000000.0, "rope_scaling": {"mrope_section": [24, 20, 20], "mrope_interleaved": True},
    "timestep_scale": 0.001, "base_fps": 24, "enable_fps_modulation": True,
    "unified_3d_mrope_temporal_modality_margin": 15000, "unified_3d_mrope_reset_spatial_ids": True,
    "rms_norm_eps": 1e-6, "hidden_act": "silu", "qk_norm_for_text": True, "use_und_k_norm_for_gen": False,
}
# The facts give no Edge dimensions: the Edge variant here is the Nano shape with Edge's relu2 MLP and norms.
EDGE = {**NANO, "hidden_act": "relu2", "qk_norm_for_text": False, "use_und_k_norm_for_gen": True}
WAN22_VAE = {
    "base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
    "attn_scales": [], "temperal_downsample": [False, True, True], "dropout": 0.0, "is_residual": True,
    "in_channels": 12, "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16, "scale_factor_temporal": 4,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``bench``."""
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--requests", type=int, default=20, help="timed requests of our engine (after warm-up)")
    parser.add_argument("--baseline-requests", type=int, default=8, help="timed diffusers requests")
    parser.add_argument("--no-baseline", action="store_true", help="skip the diffusers pipeline")
    parser.add_argument("--extras", default="guidance_interval,profile,baseline_compiled,small_gpu,cfg_parallel,"
                                            "windows_two_gpus",
                        help="comma list of: guidance_interval, profile, baseline_compiled, small_gpu (needs 2 GPUs), "
                             "cfg_parallel (2 GPUs), windows_two_gpus (2 GPUs, with cfg_parallel), inverse_dynamics, "
                             "bag_batch, edge, no_graphs, vae_benchmark")
    parser.add_argument("--variants", default="cudnn_zero_pad+compile,cudnn_zero_pad+compile+fp8",
                        help="engine variants to time, comma list of ATTENTION[+compile][+fp8|+fp8t] (ATTENTION: "
                             "flash, cudnn, cudnn_zero_pad); the fastest bf16 one is the headline")
    parser.add_argument("--out", help="results JSON (default bench/results/<gpu>-<date>.json)")
    parser.set_defaults(handler=bench_command)


# ----- model construction -------------------------------------------------------------------------------------


def _random_fill(name: str, tensor: Any, generator: Any) -> None:
    """Fill one parameter in place: norms 1, biases and vectors N(0, 0.01), matrices N(0, min(0.02, fan_in^-1/2))."""
    if "norm" in name and tensor.ndim == 1:
        tensor.fill_(1.0)
    elif name.endswith("bias") or tensor.ndim == 1:
        tensor.normal_(0.0, 0.01, generator=generator)
    else:
        fan_in = tensor[0].numel() if tensor.ndim > 1 else 1
        tensor.normal_(0.0, min(0.02, fan_in ** -0.5), generator=generator)


def _stream_fp8_transformer(model: Any, device: Any, generator: Any) -> None:
    """Fill the meta-built ``model`` tensor by tensor as the FP8 loader does: each bf16 tensor is drawn on the GPU
    (the same draws, in the same order, as the bf16 build) and the blocks' linear weights are quantised at once,
    so the bf16 model never exists whole.
    """
    import torch

    from ..engine.fp8 import Fp8Storage

    storage = Fp8Storage(model)
    state = {}
    for name, param in model.named_parameters():
        tensor = torch.empty(param.shape, dtype=param.dtype, device=device)
        _random_fill(name, tensor, generator)
        state[name] = storage(name, tensor)
        del tensor
    storage.install(model, state)
    model.load_state_dict(state, strict=False, assign=True)
    for module in model.modules():  # buffers (rope frequencies) are rebuilt by the caller; zeros meanwhile
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.is_meta:
                module._buffers[name] = torch.zeros(buffer.shape, dtype=buffer.dtype, device=device)
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"internal: {left[:3]} were not materialised")


def build_random_generator(config: dict[str, Any], device: Any, seed: int = 0, weights: str = "bf16") -> Any:
    """An ``ActionGenerator`` over a random full-size transformer + Wan 2.2 VAE built on ``device`` in bf16.

    ``weights="fp8"``: the same random weights (same seed, same draws), with the blocks' linear layers stored in
    FP8 and quantised one tensor at a time while building (engine/fp8.py).
    """
    import torch
    from diffusers import AutoencoderKLWan, Cosmos3OmniTransformer
    from diffusers.models.transformers.transformer_cosmos3 import Cosmos3VLTextRotaryEmbedding

    from ..engine.checkpoint import CheckpointInfo
    from ..engine.generator import ActionGenerator

    generator = torch.Generator(device=device).manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta"):
            model = Cosmos3OmniTransformer(**config)
            vae_kwargs = {**WAN22_VAE, "latents_mean": [0.0] * 48, "latents_std": [1.0] * 48}
            vae = AutoencoderKLWan(**vae_kwargs)
    finally:
        torch.set_default_dtype(previous)
    del model.lm_head
    with torch.no_grad():
        if weights == "fp8":
            _stream_fp8_transformer(model, device, generator)
        else:
            model.to_empty(device=device)
            for name, param in model.named_parameters():
                _random_fill(name, param, generator)
        vae.to_empty(device=device)
        for name, param in vae.named_parameters():
            _random_fill(name, param, generator)
    model.time_embedder.float()
    model.rotary_emb = Cosmos3VLTextRotaryEmbedding(config["head_dim"], config["rope_theta"],
                                                    tuple(config["rope_scaling"]["mrope_section"])).to(device)
    model.eval().requires_grad_(False)
    vae.eval().requires_grad_(False)
    vae._cosmos3_decoder_loaded = True
    info = CheckpointInfo(root=Path("random-weights"), model_index={}, transformer_config=dict(config),
                          vae_config=dict(vae_kwargs), scheduler_config={})
    return ActionGenerator(info, model, vae, torch.device(device), torch.bfloat16)


# ----- measurements -------------------------------------------------------------------------------------------


def matmul_peak_tflops(device: Any, size: int = 8192, repeats: int = 20, warmup_s: float = 1.0) -> float:
    """Median bf16 ``size^3`` matrix-product rate on random data (TFLOP/s), after ``warmup_s`` of products.

    The warm-up brings an idle GPU to its sustained clocks: with 3 products only, one H100 measured 758 and,
    minutes later, 790 TFLOP/s, which moved the floor multiple by 4%.
    """
    import torch

    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    start_s = time.perf_counter()
    while time.perf_counter() - start_s < warmup_s:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize(device)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return 2 * size**3 / (statistics.median(times) * 1e-3) / 1e12


def model_gemm_rate(device: Any, config: dict[str, Any], rows: int, seconds: float = 0.4) -> dict[str, Any]:
    """Sustained bf16 rate of the generation layer's four GEMMs at the model's own shapes (``rows`` tokens).

    Each shape runs back to back for ``seconds`` (clocks and power settle) and is then timed over 20 products;
    the layer's rate is its FLOPs over the summed times (the shapes weighted as one layer weights them).
    """
    import torch
    import torch.nn.functional as F

    c, heads, kv, d = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"], \
        config["head_dim"]
    inner = config["intermediate_size"]
    shapes = {"qkv": (c, (heads + 2 * kv) * d), "out": (heads * d, c), "gate_up": (c, 2 * inner),
              "down": (inner, c)}
    per_shape, flops_total, time_total = {}, 0.0, 0.0
    for name, (k, n) in shapes.items():
        x = torch.randn(rows, k, device=device, dtype=torch.bfloat16)
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16) * k ** -0.5
        start_s = time.perf_counter()
        while time.perf_counter() - start_s < seconds:
            for _ in range(10):
                F.linear(x, w)
            torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(20):
            F.linear(x, w)
        end.record()
        end.synchronize()
        ms = start.elapsed_time(end) / 20
        flops = 2.0 * rows * k * n
        per_shape[name] = {"m_k_n": [rows, k, n], "ms": ms, "tflops": flops / (ms * 1e-3) / 1e12}
        flops_total += flops
        time_total += ms
    return {"tflops": flops_total / (time_total * 1e-3) / 1e12, "shapes": per_shape}


def choose_ceiling(candidates: dict[str, float]) -> tuple[float, str]:
    """The highest measured bf16 rate and how it was measured: a ceiling must not sit below what the request
    itself achieves (a power-capped GPU can run a bare 8192^3 product slower than the model's own GEMMs).
    """
    method = max(candidates, key=lambda k: candidates[k])
    return candidates[method], method


def transformer_flops(config: dict[str, Any], gen_tokens: int, text_lengths: list[int], steps_with_cfg: int,
                      steps_without_cfg: int, text_misses: list[int]) -> dict[str, float]:
    """Matrix FLOPs of the denoising steps and of the text tower (multiply-add = 2 FLOPs)."""
    c, heads, kv, d = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"], \
        config["head_dim"]
    inner = config["intermediate_size"]
    layers = config["num_hidden_layers"]
    mlp_mats = 3 if config["hidden_act"] == "silu" else 2
    per_token_linear = 2 * (c * heads * d + 2 * c * kv * d + heads * d * c + mlp_mats * c * inner)

    def gen_forward(text_len: int) -> float:
        attention = 4 * gen_tokens * (gen_tokens + text_len) * heads * d
        return layers * (gen_tokens * per_token_linear + attention)

    cond, uncond = text_lengths
    denoise = steps_with_cfg * (gen_forward(cond) + gen_forward(uncond)) + steps_without_cfg * gen_forward(cond)
    text = sum(layers * (length * per_token_linear + 2 * length * length * heads * d) for length in text_misses)
    return {"denoise": float(denoise), "text": float(text)}


def linear_flops(config: dict[str, Any], gen_tokens: int, forwards: int) -> float:
    """FLOPs of the generation stream's four GEMMs over ``forwards`` single-branch forwards."""
    c, heads, kv, d = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"], \
        config["head_dim"]
    mlp_mats = 3 if config["hidden_act"] == "silu" else 2
    per_token = 2 * (c * heads * d + 2 * c * kv * d + heads * d * c + mlp_mats * c * config["intermediate_size"])
    return float(forwards * config["num_hidden_layers"] * gen_tokens * per_token)


def vae_encode_flops(generator: Any, pixels: Any) -> float:
    """FLOPs of encoding the clean frames, counted by torch's FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        generator.vae.encode(pixels.unsqueeze(0).to(generator.device, torch.bfloat16))
    return float(counter.get_total_flops())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _timed(fn: Callable[[], Any], device: Any) -> tuple[float, Any]:
    import torch

    torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3, result


def _relative_error(a: Any, b: Any) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def released_predictor(generator: Any, tokenizer_dir: Path) -> Any:
    """An ``ActionPredictor`` serving the released profile from ``generator`` with the offline tokenizer."""
    from ..processing.predictor import ActionPredictor
    from ..processing.profiles import RELEASED_DROID_POLICY
    from ..processing.prompt import PromptTokenizer

    return ActionPredictor(generator, PromptTokenizer.from_folder(tokenizer_dir), RELEASED_DROID_POLICY)


def measure_ours(predictor: Any, request: Any, requests: int, stage: Stage, reset_peak: bool = True
                 ) -> dict[str, Any]:
    """Warm-up (with capture) then ``requests`` timed chunks; p50/p90, phases, peak memory."""
    import torch

    device = predictor.generator.device
    if reset_peak:
        torch.cuda.reset_peak_memory_stats(device)
    warmup_ms, _ = _timed(lambda: predictor.predict(request), device)
    totals, phases = [], []
    for _ in range(requests):
        elapsed, prediction = _timed(lambda: predictor.predict(request), device)
        totals.append(elapsed)
        phases.append(prediction.timings_ms)
    stage(f"ours: p50 {statistics.median(totals):.1f} ms over {requests} requests")
    phase_names = sorted({k for p in phases for k in p})
    return {
        "p50_ms": statistics.median(totals), "p90_ms": _percentile(totals, 0.9), "all_ms": totals,
        "warmup_ms": warmup_ms, "capture_ms": predictor.generator.capture_ms,
        "phases_p50_ms": {k: statistics.median(p.get(k, 0.0) for p in phases) for k in phase_names},
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30,
    }


def measure_diffusers(generator: Any, tokenizer_dir: Path, image: Any, requests: int, stage: Stage,
                      compiled: bool = False, warmup_s: float = 10.0) -> dict[str, Any]:
    """The same-weights request through diffusers' pipeline (base contract, linear shift 5, latent output).

    ``compiled``: first ``transformer.compile_repeated_blocks()`` (torch.compile of each decoder layer), warmed
    up for ``warmup_s`` — what a user who knows PyTorch does. The compilation is undone afterwards. The
    pipeline's own VAE encode (all 33 frames) is timed inside each call and reported on its own.
    """
    import torch
    from diffusers import Cosmos3OmniPipeline, UniPCMultistepScheduler
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import CosmosActionCondition
    from PIL import Image
    from transformers import AutoTokenizer

    scheduler = UniPCMultistepScheduler(use_flow_sigmas=True, use_karras_sigmas=False, flow_shift=5.0,
                                        prediction_type="flow_prediction")
    pipe = Cosmos3OmniPipeline(transformer=generator.transformer, text_tokenizer=AutoTokenizer.from_pretrained(
        tokenizer_dir), vae=generator.vae, scheduler=scheduler, enable_safety_checker=False,
        default_use_system_prompt=False, use_native_flow_schedule=True)
    pipe.set_progress_bar_config(disable=True)
    condition = CosmosActionCondition(mode="policy", chunk_size=32, domain_name="droid_lerobot", resolution_tier=480,
                                      image=Image.fromarray(image), view_point="concat_view")

    def call() -> Any:
        return pipe(prompt="put the red cube in the blue bowl", action=condition, num_inference_steps=4,
                    guidance_scale=3.0, fps=15.0, output_type="latent", enable_safety_check=False,
                    generator=torch.Generator().manual_seed(0))

    device = generator.device
    vae, encode_ms, encode_shapes = generator.vae, [], set()
    plain_encode = vae.encode

    def timed_encode(x: Any, *args: Any, **kwargs: Any) -> Any:
        elapsed, out = _timed(lambda: plain_encode(x, *args, **kwargs), device)
        encode_ms.append(elapsed)
        encode_shapes.add(tuple(x.shape))
        return out

    transformer = generator.transformer
    if compiled:
        transformer.compile_repeated_blocks()
    vae.encode = timed_encode
    try:
        start_s = time.perf_counter()
        warmup_ms, _ = _timed(call, device)
        warmups = 1
        while compiled and (time.perf_counter() - start_s < warmup_s or warmups < 3):
            _timed(call, device)
            warmups += 1
        encode_ms.clear()
        totals = [_timed(call, device)[0] for _ in range(requests)]
    finally:
        del vae.encode  # back to the class's method
        if compiled:
            for module in transformer.modules():
                if getattr(module, "_compiled_call_impl", None) is not None:
                    module._compiled_call_impl = None
    name = "diffusers (compile_repeated_blocks)" if compiled else "diffusers (eager)"
    stage(f"{name}: p50 {statistics.median(totals):.1f} ms over {requests} requests; its VAE encode "
          f"{statistics.median(encode_ms):.1f} ms for {sorted(encode_shapes)}")
    return {"p50_ms": statistics.median(totals), "p90_ms": _percentile(totals, 0.9), "all_ms": totals,
            "warmup_ms": warmup_ms, "warmup_calls": warmups, "vae_encode_p50_ms": statistics.median(encode_ms),
            "vae_encode_input_shapes": [list(x) for x in sorted(encode_shapes)],
            "without_vae_encode_p50_ms": statistics.median(totals) - statistics.median(encode_ms)}


def measure_bag_windows(predictor: Any, cameras: dict[str, Any], stage: Stage, batch: int = 4,
                        rounds: int = 3) -> dict[str, Any]:
    """Inverse-dynamics windows per second: one at a time vs ``predict_batch`` of ``batch`` windows."""
    import numpy as np
    import torch

    from ..processing.request import ActionRequest
    from .demo import DEMO_STATE

    rng = np.random.default_rng(0)

    def window(k: int) -> ActionRequest:
        frames = [{name: np.roll(image, int(rng.integers(0, 64)), axis=1) for name, image in cameras.items()}
                  for _ in range(33)]
        return ActionRequest(task="label this episode", mode="inverse_dynamics", video=frames, state=DEMO_STATE,
                             seed=k)

    windows = [window(k) for k in range(batch)]
    device = predictor.generator.device
    predictor.predict(windows[0])  # warm-up (capture for this layout)
    predictor.predict_batch(windows[:2])
    single, batched = [], []
    for _ in range(rounds):
        single.append(_timed(lambda: [predictor.predict(w) for w in windows], device)[0] / batch)
        batched.append(_timed(lambda: predictor.predict_batch(windows), device)[0] / batch)
        torch.cuda.synchronize(device)
    one, many = 1e3 / statistics.median(single), 1e3 / statistics.median(batched)
    stage(f"bag windows/s: batch 1 {one:.2f}, batch {batch} {many:.2f} (x{many / one:.2f})")
    return {"batch": batch, "windows_per_s_batch1": one, f"windows_per_s_batch{batch}": many,
            "ratio": many / one}


def measure_small_gpu(device: Any, tokenizer_dir: Path, request: Any, generation: Any, bf16_actions: Any,
                      bf16_embedding_sum: float, variant: str, requests: int, stage: Stage,
                      cap_gib: float = 22.0) -> dict[str, Any]:
    """Nano with FP8 weight storage on ``device`` capped at ``cap_gib`` (a 24 GB GPU): build, latency, drift.

    The process's share of ``device`` is capped with ``torch.cuda.set_per_process_memory_fraction`` before the
    model is built (tensor by tensor, quantised at once), so any allocation past the cap fails. The drift is
    against the bf16 engine's actions on the same random weights (checked through the bf16 embedding table,
    which both builds hold).
    """
    import gc

    import torch

    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(cap_gib * 2**30 / total, device)
    torch.cuda.reset_peak_memory_stats(device)
    generator = predictor = None
    try:
        with torch.cuda.device(device):
            build_ms, generator = _timed(lambda: build_random_generator(NANO, device, weights="fp8"), device)
            build_peak = torch.cuda.max_memory_allocated(device) / 2**30
            torch.cuda.empty_cache()  # give the build's cached temporaries back before serving under the cap
            generator.configure_fast_path(**{**variant_options(variant), "fp8": False})
            predictor = released_predictor(generator, tokenizer_dir)
            measured = measure_ours(predictor, request, requests, stage, reset_peak=False)
            actions = generator.generate(generation).action_latents[1:, :8]
            from ..engine.fp8 import storage_bytes

            held = storage_bytes(generator.transformer)
            same = float(generator.transformer.embed_tokens.weight.float().sum()) == bf16_embedding_sum
            free, capacity = torch.cuda.mem_get_info(device)  # what the card lends out: + CUDA context, cuBLAS
        result = {
            "cap_gib": cap_gib, "p50_ms": measured["p50_ms"], "p90_ms": measured["p90_ms"],
            "peak_mem_gib": measured["peak_mem_gib"], "peak_reserved_gib": measured["peak_reserved_gib"],
            "build_peak_mem_gib": build_peak, "build_ms": build_ms, "warmup_ms": measured["warmup_ms"],
            "device_used_gib": (capacity - free) / 2**30,
            "transformer_gib_by_dtype": {k: v / 2**30 for k, v in held.items()},
            "action_drift_rel": _relative_error(actions, bf16_actions),
            "action_drift_max_abs": float((actions - bf16_actions).abs().max()),
            "same_random_weights": same, "phases_p50_ms": measured["phases_p50_ms"],
        }
        stage(f"small GPU (FP8 storage, cap {cap_gib} GiB): p50 {result['p50_ms']:.1f} ms, peak "
              f"{result['peak_mem_gib']:.1f} GiB allocated / {result['peak_reserved_gib']:.1f} reserved, drift "
              f"{result['action_drift_rel']:.4f}")
        return result
    finally:
        generator = predictor = None
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(1.0, device)


def measure_windows_two_gpus(predictors: list[Any], cameras: dict[str, Any], stage: Stage, per_gpu: int = 3
                             ) -> dict[str, Any]:
    """Inverse-dynamics windows/s: one model on one GPU vs one model per GPU, each GPU fed by its own thread."""
    import threading

    import numpy as np
    import torch

    from ..processing.request import ActionRequest
    from .demo import DEMO_STATE

    rng = np.random.default_rng(1)
    windows = [ActionRequest(task="label this episode", mode="inverse_dynamics", state=DEMO_STATE, seed=k,
                             video=[{n: np.roll(im, int(rng.integers(0, 64)), axis=1) for n, im in cameras.items()}
                                    for _ in range(33)])
               for k in range(per_gpu * len(predictors))]
    for predictor in predictors:  # capture graphs one device at a time (capture is not thread-safe)
        with torch.cuda.device(predictor.generator.device):
            predictor.predict(windows[0])

    def work(predictor: Any, items: list[Any]) -> None:
        with torch.cuda.device(predictor.generator.device):
            for item in items:
                predictor.predict(item)

    start = time.perf_counter()
    work(predictors[0], windows[:per_gpu])
    single = per_gpu / (time.perf_counter() - start)
    threads = [threading.Thread(target=work, args=(p, windows[i * per_gpu:(i + 1) * per_gpu]))
               for i, p in enumerate(predictors)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    both = len(windows) / (time.perf_counter() - start)
    stage(f"inverse-dynamics windows/s: one GPU {single:.2f}, one model per GPU x{len(predictors)} {both:.2f}")
    return {"windows_per_s_one_gpu": single, "windows_per_s_model_per_gpu": both, "gpus": len(predictors),
            "ratio": both / single, "windows": len(windows)}


def variant_options(variant: str) -> dict[str, Any]:
    """``ATTENTION[+compile][+fp8|+fp8t]`` -> ``configure_fast_path`` keyword arguments (fp8t: per-tensor scales)."""
    attention, *options = variant.split("+")
    fp8: bool | str = "tensor" if "fp8t" in options else "fp8" in options
    return {"attention": attention, "compile_layers": "compile" in options, "fp8": fp8}


KERNEL_KINDS = (  # (kind, name fragments), first match wins; names as cuBLAS / cuDNN / Inductor give them
    # Inductor names its kernels after the ops they were fused beside ("triton_red_fused__scaled_mm_..._amax"
    # is the activation quantisation, not a GEMM), so Triton comes first
    ("compiled elementwise (Triton)", ("triton",)),
    ("gemm", ("gemm", "nvjet", "xmma", "cutlass", "cublas")),
    ("attention", ("fmha", "flash", "sdpa", "attention", "attn")),
)


def kernel_kind(name: str) -> str:
    """Coarse class of a GPU kernel by its name."""
    low = name.lower()
    for kind, fragments in KERNEL_KINDS:
        if any(f in low for f in fragments):
            return kind
    return "other"


def kernel_table(kernels: list[tuple[str, float]], rows: int = 25) -> dict[str, Any]:
    """Per-kernel and per-kind times from ``(kernel name, duration us)`` pairs, one pair per GPU kernel launch.

    Only kernels are counted: a profiler's CPU-side operator rows (``aten::mm``, Inductor's ``triton_*`` launcher
    records) report the device time of the kernels they launched, so adding them counts each kernel twice.
    """
    by_name: dict[str, list[float]] = {}
    for name, us in kernels:
        entry = by_name.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += us
    total = sum(us for _, us in kernels) or 1.0
    table = [{"name": name[:90], "kind": kernel_kind(name), "calls": int(calls), "cuda_ms": us / 1e3,
              "share": us / total}
             for name, (calls, us) in sorted(by_name.items(), key=lambda item: -item[1][1])[:rows]]
    kinds: dict[str, float] = {}
    for name, us in kernels:
        kinds[kernel_kind(name)] = kinds.get(kernel_kind(name), 0.0) + us / 1e3
    return {"total_ms": total / 1e3, "kernels": table, "kinds_ms": kinds}


def profile_step(predictor: Any, request: Any, stage: Stage, steps: int, gemm_flops: float) -> dict[str, Any]:
    """GPU kernel times of one request with graphs off (so kernels are visible), per kind and per step.

    ``gemm_flops``: the request's GEMM FLOPs, to give the GEMMs' in-model rate.
    """
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    generator = predictor.generator
    graphs = generator.cuda_graphs
    generator.configure_fast_path(cuda_graphs=False, compile_layers=generator.compile_layers)
    predictor.predict(request)
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        predictor.predict(request)
        torch.cuda.synchronize()
    generator.configure_fast_path(cuda_graphs=graphs, compile_layers=generator.compile_layers)
    kernels = [(e.name, float(e.time_range.elapsed_us())) for e in prof.events()
               if e.device_type == DeviceType.CUDA]
    result = kernel_table(kernels)
    result["per_step_ms"] = {k: v / steps for k, v in result["kinds_ms"].items()}
    gemm_ms = result["kinds_ms"].get("gemm", 0.0)
    result["gemm_tflops_in_model"] = gemm_flops / (gemm_ms * 1e-3) / 1e12 if gemm_ms else None
    for row in result["kernels"][:10]:
        stage(f"profile {row['cuda_ms']:8.1f} ms {row['share']:6.1%} x{row['calls']:<5} {row['name']}")
    stage("profile per step: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result["per_step_ms"].items())
          + f"; GEMMs at {result['gemm_tflops_in_model'] or 0:.0f} TFLOP/s in the model")
    return result


def measure_two_gpus(results: dict[str, Any], generator: Any, predictor: Any, first_step: Any, request: Any,
                     generation: Any, first_step_generation: Any, fast: Any, drift: Callable[[Any], dict[str, float]],
                     best: str, best_fp8: str | None, second: Any, tokenizer_dir: Path, cameras: dict[str, Any],
                     extras: set[str], requests: int, stage: Stage) -> None:
    """CFG-parallel over the generator's device and ``second`` (bf16, first-step CFG, FP8), then inverse-dynamics
    windows/s with one model per GPU; fills ``results``.
    """
    from ..engine.generator import ActionGenerator

    device, ours = generator.device, results["ours"]
    bf16_actions = fast.action_latents[1:, :8]
    generator.configure_fast_path(**variant_options(best))
    generator.enable_cfg_parallel(second)
    parallel = measure_ours(predictor, request, requests, stage)
    result = generator.generate(generation)
    results["cfg_parallel"] = {
        "devices": [str(device), str(second)], "p50_ms": parallel["p50_ms"], "p90_ms": parallel["p90_ms"],
        "latency_vs_single": parallel["p50_ms"] / ours["p50_ms"], "single_p50_ms": ours["p50_ms"],
        "action_rel_err": _relative_error(result.action_latents[1:, :8], bf16_actions),
        "video_latents_rel_err": _relative_error(result.video_latents, fast.video_latents),
        "bf16_noise_floor_actions": results["reference_kernel_change_rel_err"]["actions"],
        "phases_p50_ms": parallel["phases_p50_ms"], "peak_mem_gib_first_device": parallel["peak_mem_gib"],
        "capture_ms": parallel["capture_ms"],
    }
    stage(f"CFG-parallel on {device} + {second}: p50 {parallel['p50_ms']:.1f} ms = "
          f"x{results['cfg_parallel']['latency_vs_single']:.3f} of one GPU; actions vs one GPU "
          f"{results['cfg_parallel']['action_rel_err']:.4f}")
    interval = measure_ours(first_step, request, max(5, requests // 2), stage)
    results["cfg_parallel"]["guidance_first_step_only"] = {
        "p50_ms": interval["p50_ms"], **drift(generator.generate(first_step_generation))}
    if best_fp8:
        generator.configure_fast_path(**variant_options(best_fp8))
        measured = measure_ours(first_step, request, max(5, requests // 2), stage)
        results["cfg_parallel"]["fp8_first_step_cfg"] = {
            "p50_ms": measured["p50_ms"], "latency_vs_bf16": measured["p50_ms"] / ours["p50_ms"],
            **drift(generator.generate(first_step_generation))}
        measured = measure_ours(predictor, request, max(5, requests // 2), stage)
        results["cfg_parallel"]["fp8"] = {"p50_ms": measured["p50_ms"],
                                          "latency_vs_bf16": measured["p50_ms"] / ours["p50_ms"],
                                          **drift(generator.generate(generation))}
    replica = generator._cfg_replica
    generator.enable_cfg_parallel(None)
    generator.configure_fast_path(**variant_options(best))
    if "windows_two_gpus" in extras:
        from ..engine.cfg_parallel import replicate

        twin = ActionGenerator(generator.info, replica, replicate(generator.vae, second), second, generator.dtype)
        twin.configure_fast_path(**variant_options(best))
        results["inverse_dynamics_two_gpus"] = measure_windows_two_gpus(
            [predictor, released_predictor(twin, tokenizer_dir)], cameras, stage)
        twin = None
    replica = None



def _compile_limits() -> None:
    """One process compiles the layer for several variants, batch sizes and devices: allow that many graphs
    (past the default limit torch would silently run the layer eagerly).
    """
    import torch

    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(256, getattr(torch._dynamo.config, name)))


def bench_command(args: argparse.Namespace, stage: Stage) -> int:
    """Run every measurement and write the results JSON."""
    import numpy as np
    import torch

    from ..engine.tiny_checkpoint import make_tiny_tokenizer
    from ..errors import InputError
    from ..processing.images import compose_droid_views
    from ..processing.request import ActionRequest
    from .demo import DEMO_STATE, synthetic_camera

    if not torch.cuda.is_available():
        raise InputError("bench needs a CUDA GPU (torch.cuda.is_available() is False)")
    _compile_limits()
    device = torch.device(args.device)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    extras = {e.strip() for e in args.extras.split(",") if e.strip()}
    gpu = torch.cuda.get_device_name(device)
    second = next((torch.device("cuda", i) for i in range(torch.cuda.device_count()) if i != device.index), None)
    stage(f"GPU {gpu} x{torch.cuda.device_count()}, torch {torch.__version__}")
    results: dict[str, Any] = {"gpu": gpu, "gpus": torch.cuda.device_count(), "torch": torch.__version__,
                               "date": dt.date.today().isoformat()}
    results["matmul_peak_tflops"] = matmul_peak_tflops(device)
    stage(f"bf16 matmul peak (8192^3) {results['matmul_peak_tflops']:.0f} TFLOP/s")

    tokenizer_dir = make_tiny_tokenizer(Path(tempfile.mkdtemp()) / "text_tokenizer")
    cameras = {name: synthetic_camera(name) for name in ("wrist", "exterior_1", "exterior_2")}
    request = ActionRequest(task="put the red cube in the blue bowl", cameras=cameras, state=DEMO_STATE)

    stage("building the random full-size Nano model on the GPU")
    build_ms, generator = _timed(lambda: build_random_generator(NANO, device), device)
    predictor = released_predictor(generator, tokenizer_dir)
    generation, _ = predictor.generation_request(request)
    layout = generator.layout_for(generation)
    text_lengths = [len(generation.cond_ids), len(generation.uncond_ids)]
    config = {"variant": "nano", "profile": "released_droid_policy", "steps": 4, "guidance": 3.0, "flow_shift": 5.0,
              "chunk": 32, "image_hw": [540, 640], "canvas_hw": list(generation.pixels.shape[-2:]),
              "gen_tokens": layout.num_gen_tokens, "text_tokens": text_lengths, "dtype": "bfloat16",
              "cuda_graphs": True, "max_text_tokens": generator.max_text_tokens}
    results["config"] = config
    results["build_ms"] = build_ms
    results["model_gemm_rate"] = model_gemm_rate(device, NANO, 2 * layout.num_gen_tokens)
    stage(f"bf16 GEMMs at the model's shapes, sustained: {results['model_gemm_rate']['tflops']:.0f} TFLOP/s")

    variants: dict[str, Any] = {}
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        generator.configure_fast_path(**variant_options(variant))
        try:
            variants[variant] = measure_ours(predictor, request, args.requests, stage)
        except Exception as exc:  # a variant a GPU/torch cannot run is reported, not fatal
            variants[variant] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            stage(f"variant {variant} failed: {variants[variant]['error']}")
    results["variants"] = {k: {n: x for n, x in v.items() if n != "all_ms"} for k, v in variants.items()}
    working = [k for k, v in variants.items() if "p50_ms" in v]
    if not working:
        raise InputError(f"no engine variant ran: {variants}")
    bf16_working = [k for k in working if not variant_options(k)["fp8"]] or working
    best = min(bf16_working, key=lambda k: variants[k]["p50_ms"])  # the headline is bf16; FP8 is an option
    fp8_variants = [k for k in working if variant_options(k)["fp8"]]
    best_fp8 = min(fp8_variants, key=lambda k: variants[k]["p50_ms"]) if fp8_variants else None
    generator.configure_fast_path(**variant_options(best))
    ours = variants[best]
    config["engine_variant"] = best
    results["ours"] = ours
    steps = config["steps"]
    gemm_flops = linear_flops(NANO, layout.num_gen_tokens, 2 * steps)
    if "profile" in extras:
        results["profile"] = profile_step(predictor, request, stage, steps, gemm_flops)
        if best_fp8:
            generator.configure_fast_path(**variant_options(best_fp8))
            results["profile_fp8"] = profile_step(predictor, request, stage, steps, gemm_flops)
            generator.configure_fast_path(**variant_options(best))

    # text-tower cost on a cache miss (a new task sentence each time)
    misses = []
    for index in range(5):
        miss = ActionRequest(task=f"put the red cube in the blue bowl, attempt {index}", cameras=cameras,
                             state=DEMO_STATE)
        misses.append(predictor.predict(miss).timings_ms.get("text", 0.0))
    results["text_miss_ms_p50"] = statistics.median(misses)

    # the ceiling: the highest bf16 rate measured, so it cannot sit below what the request itself achieves
    candidates = {"matmul_8192": results["matmul_peak_tflops"],
                  "model_gemm_shapes_sustained": results["model_gemm_rate"]["tflops"]}
    if results.get("profile", {}).get("gemm_tflops_in_model"):
        candidates["in_model_gemm_rate_from_profile"] = results["profile"]["gemm_tflops_in_model"]
    ceiling, method = choose_ceiling(candidates)
    flops = transformer_flops(NANO, layout.num_gen_tokens, text_lengths, steps, 0, [])
    flops["vae_encode"] = vae_encode_flops(generator, generation.pixels)
    total_flops = sum(flops.values())
    floor_ms = total_flops / (ceiling * 1e12) * 1e3
    results.update({"ceiling_tflops": ceiling, "ceiling_method": method, "ceiling_candidates_tflops": candidates,
                    "flops": flops, "request_tflop": total_flops / 1e12, "floor_ms": floor_ms,
                    "ours_p50_ms": ours["p50_ms"], "ours_p90_ms": ours["p90_ms"],
                    "floor_multiple": ours["p50_ms"] / floor_ms, "peak_mem_gib": ours["peak_mem_gib"]})
    results["beats_ceiling"] = results["floor_multiple"] < 1.0
    stage(f"ceiling {ceiling:.0f} TFLOP/s ({method}); floor {floor_ms:.1f} ms ({total_flops / 1e12:.1f} TFLOP); "
          f"ours x{ours['p50_ms'] / floor_ms:.2f}" + (" -- BEATS ITS CEILING: the ceiling is wrong"
                                                       if results["beats_ceiling"] else ""))

    # bf16 agreement of the fast engine with the uncached reference loop on the same request and noise
    fast = generator.generate(generation, evaluator="cached")
    bf16_actions = fast.action_latents[1:, :8]
    reference = generator.generate(generation, evaluator="reference")
    results["fast_vs_reference_rel_err"] = {
        "actions": _relative_error(fast.action_latents[1:, :8], reference.action_latents[1:, :8]),
        "video_latents": _relative_error(fast.video_latents, reference.video_latents),
    }
    stage(f"fast vs reference (bf16) relative error: {results['fast_vs_reference_rel_err']}")
    # the graphed one-frame VAE encode must be the eager encode, bit for bit (same kernels, replayed)
    with torch.no_grad():
        frame = generation.pixels[:, :1].unsqueeze(0).to(device, torch.bfloat16)
        graphed = generator.encoder(frame).clone()
        results["vae_graph_vs_eager_max_abs"] = float((graphed.float() - generator.encoder.eager(frame).float())
                                                      .abs().max())
    stage(f"graphed vs eager VAE encode, max abs difference: {results['vae_graph_vs_eager_max_abs']}")
    # the bf16 noise floor: the same reference loop with only its attention kernel changed (SDPA math)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        reference_math = generator.generate(generation, evaluator="reference")
    results["reference_kernel_change_rel_err"] = {
        "actions": _relative_error(reference_math.action_latents[1:, :8], reference.action_latents[1:, :8]),
        "video_latents": _relative_error(reference_math.video_latents, reference.video_latents),
    }
    stage(f"reference vs reference with the math attention kernel: {results['reference_kernel_change_rel_err']}")
    del reference, reference_math

    def drift(result: Any) -> dict[str, float]:
        actions = result.action_latents[1:, :8]
        return {"action_drift_rel": _relative_error(actions, bf16_actions),
                "action_drift_max_abs": float((actions - bf16_actions).abs().max())}

    first_step = predictor.with_profile(predictor.profile.with_overrides(guidance_steps=1))
    first_step_generation, _ = first_step.generation_request(request)
    if best_fp8:
        generator.configure_fast_path(**variant_options(best_fp8))
        results["fp8"] = {"variant": best_fp8, "p50_ms": variants[best_fp8]["p50_ms"],
                          "latency_vs_bf16": variants[best_fp8]["p50_ms"] / ours["p50_ms"],
                          **drift(generator.generate(generation, evaluator="cached")),
                          "bf16_vs_reference_rel": results["fast_vs_reference_rel_err"]["actions"]}
        stage(f"fp8 {best_fp8}: x{results['fp8']['latency_vs_bf16']:.3f} of bf16, action drift "
              f"{results['fp8']['action_drift_rel']:.4f} (rel)")
        # the Edge serving setting on top: CFG on the first step only (5 forwards instead of 8)
        measured = measure_ours(first_step, request, max(5, args.requests // 2), stage)
        results["fp8_first_step_cfg"] = {"p50_ms": measured["p50_ms"], "p90_ms": measured["p90_ms"],
                                         "latency_vs_bf16": measured["p50_ms"] / ours["p50_ms"],
                                         **drift(generator.generate(first_step_generation))}
        generator.configure_fast_path(**variant_options(best))
    reference_ms = [_timed(lambda: generator.generate(generation, evaluator="reference"), device)[0]
                    for _ in range(3)]
    results["reference_loop_p50_ms"] = statistics.median(reference_ms)

    if "guidance_interval" in extras:
        interval = measure_ours(first_step, request, max(5, args.requests // 2), stage)
        results["guidance_first_step_only"] = {"p50_ms": interval["p50_ms"], "p90_ms": interval["p90_ms"],
                                               **drift(generator.generate(first_step_generation))}

    if "small_gpu" in extras:
        if second is None:
            stage("small_gpu needs a second GPU (it caps that GPU's memory for this process); skipped")
        else:
            embedding_sum = float(generator.transformer.embed_tokens.weight.float().sum())
            try:
                results["small_gpu"] = measure_small_gpu(second, tokenizer_dir, request, generation, bf16_actions,
                                                         embedding_sum, best, max(5, args.requests // 2), stage)
            except Exception as exc:  # e.g. out of memory under the cap: report it
                results["small_gpu"] = {"error": f"{type(exc).__name__}: {exc}"[:800]}
                stage(f"small_gpu failed: {results['small_gpu']['error']}")

    if "cfg_parallel" in extras and second is not None:
        try:
            measure_two_gpus(results, generator, predictor, first_step, request, generation, first_step_generation,
                             fast, drift, best, best_fp8, second, tokenizer_dir, cameras, extras, args.requests, stage)
        except Exception as exc:  # reported, not fatal: the single-GPU results still get written
            results.setdefault("cfg_parallel", {})["error"] = f"{type(exc).__name__}: {exc}"[:800]
            stage(f"two-GPU measurements failed: {results['cfg_parallel']['error']}")
            generator.enable_cfg_parallel(None)
            generator.configure_fast_path(**variant_options(best))

    if "bag_batch" in extras:
        results["bag_windows"] = measure_bag_windows(predictor, cameras, stage)
    if "vae_benchmark" in extras:
        frames = [dict(cameras)] * 33
        inverse = ActionRequest(task=request.task, mode="inverse_dynamics", video=frames, state=DEMO_STATE)
        torch.backends.cudnn.benchmark = True
        measured = measure_ours(predictor, inverse, max(5, args.requests // 2), stage)
        torch.backends.cudnn.benchmark = False
        results["inverse_dynamics_cudnn_benchmark"] = {"p50_ms": measured["p50_ms"],
                                                       "phases_p50_ms": measured["phases_p50_ms"]}
    if "no_graphs" in extras:
        generator.cuda_graphs = False
        generator._fast_towers.clear()
        eager = measure_ours(predictor, request, max(5, args.requests // 2), stage)
        results["no_cuda_graphs"] = {"p50_ms": eager["p50_ms"]}
        generator.cuda_graphs = True
    if "inverse_dynamics" in extras:
        frames = [dict(cameras)] * 33
        inverse = ActionRequest(task=request.task, mode="inverse_dynamics", video=frames, state=DEMO_STATE)
        measured = measure_ours(predictor, inverse, max(5, args.requests // 2), stage)
        results["inverse_dynamics"] = {"p50_ms": measured["p50_ms"], "p90_ms": measured["p90_ms"],
                                       "phases_p50_ms": measured["phases_p50_ms"]}

    if not args.no_baseline:
        image = np.asarray(compose_droid_views(*(cameras[n] for n in ("wrist", "exterior_1", "exterior_2"))))
        baseline = measure_diffusers(generator, tokenizer_dir, image, args.baseline_requests, stage)
        results["baseline"] = baseline
        results["baseline_p50_ms"] = baseline["p50_ms"]
        results["speedup_vs_diffusers"] = baseline["p50_ms"] / ours["p50_ms"]
        results["baseline_vae_encode_33_frames_ms"] = baseline["vae_encode_p50_ms"]
        if "baseline_compiled" in extras:
            try:
                compiled = measure_diffusers(generator, tokenizer_dir, image, args.baseline_requests, stage,
                                             compiled=True)
                results["baseline_compiled"] = compiled
                results["baseline_compiled_p50_ms"] = compiled["p50_ms"]
                results["speedup_vs_diffusers_compiled"] = compiled["p50_ms"] / ours["p50_ms"]
            except Exception as exc:  # a torch whose compiler cannot take the pipeline: reported
                results["baseline_compiled"] = {"error": f"{type(exc).__name__}: {exc}"[:800]}
                stage(f"compiled baseline failed: {results['baseline_compiled']['error']}")

    if "edge" in extras:
        first_step = None
        del predictor, generator, fast, first_step, generation
        torch._dynamo.reset()  # compiled-graph caches may hold references to the Nano weights
        import gc

        gc.collect()
        torch.cuda.empty_cache()
        results["edge_start_mem_gib"] = torch.cuda.memory_allocated(device) / 2**30
        edge_generator = build_random_generator(EDGE, device, seed=1)
        edge_generator.configure_fast_path(**variant_options(best))
        edge = measure_ours(released_predictor(edge_generator, tokenizer_dir), request, max(5, args.requests // 2),
                            stage)
        results["edge"] = {"p50_ms": edge["p50_ms"], "p90_ms": edge["p90_ms"], "peak_mem_gib": edge["peak_mem_gib"]}

    out = Path(args.out) if args.out else Path("bench/results") / f"{gpu.replace(' ', '_')}-{results['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float))
    summary = {k: results.get(k) for k in ("gpu", "ours_p50_ms", "baseline_p50_ms", "baseline_compiled_p50_ms",
                                           "speedup_vs_diffusers", "speedup_vs_diffusers_compiled",
                                           "ceiling_tflops", "ceiling_method", "floor_ms", "floor_multiple",
                                           "peak_mem_gib")}
    summary["fp8"] = {k: results.get("fp8", {}).get(k) for k in ("latency_vs_bf16", "action_drift_rel")}
    summary["cfg_parallel"] = {k: results.get("cfg_parallel", {}).get(k)
                               for k in ("p50_ms", "latency_vs_single", "action_rel_err")}
    summary["small_gpu"] = {k: results.get("small_gpu", {}).get(k)
                            for k in ("peak_mem_gib", "p50_ms", "action_drift_rel", "error")}
    summary["fp8_first_step_cfg"] = {k: results.get("fp8_first_step_cfg", {}).get(k)
                                     for k in ("p50_ms", "action_drift_rel")}
    stage("summary " + json.dumps(summary, default=lambda v: round(v, 3)))
    stage(f"wrote {out}")
    return 0
