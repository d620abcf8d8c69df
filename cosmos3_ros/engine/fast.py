"""The CUDA fast path of the generation stream: static shapes, fused projections, CUDA graphs.

Per denoising step it runs only the generation stack over vision + action tokens for both CFG branches as
one batch. The text K/V of each branch sits in a fixed-size slot (``max_text_tokens``), so shapes never depend
on the prompt and the step is captured in a CUDA graph once per layout: a prompt change only rewrites the slot.
How generation queries see ``[text | own keys]`` depends on the attention backend:

* ``cudnn_zero_pad`` (default with cuDNN): one kernel over ``[zero-padded slot | own keys]``, rescaled exactly
  through its log-sum-exp.
* ``cudnn`` / ``flash``: own keys and the masked slot in two kernels, merged by their log-sum-exp.

Differences from the reference forward are rounding only (bf16): the timestep MLP runs once per step
instead of once per token, q/k/v and gate/up are single fused matrix products (their weights are views of
one fused tensor, so the reference path still sees the same parameters), and the action heads are plain
matrix products with the domain's weights picked once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.transformers.transformer_cosmos3 import _rotate_half

from .fp8 import FP8_MAX, is_fp8_linear, quantize_fp8
from .layout import GenerationLayout, PositionConfig
from .stacks import TextKV, rotary

NEG_INF = float("-inf")
KEY_TILE = 128  # cuDNN's key-block length on Hopper
log = logging.getLogger(__name__)


def _fuse(modules: tuple[torch.nn.Module, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate the weights (and FP8 scales) of ``modules`` along the output axis; each module keeps views."""
    fused = torch.cat([m.weight for m in modules]).contiguous()
    sizes = [m.weight.shape[0] for m in modules]
    for module, view in zip(modules, fused.split(sizes), strict=True):
        module.weight = torch.nn.Parameter(view, requires_grad=False)
    if not all(is_fp8_linear(m) for m in modules):
        return fused, None
    # per-channel scales concatenate exactly as the rows do
    scale = torch.cat([m.weight_scale for m in modules]).contiguous()
    for module, view in zip(modules, scale.split(sizes), strict=True):
        module.weight_scale = view
    return fused, scale


def fuse_generation_projections(model: torch.nn.Module) -> None:
    """Store each layer's gen q/k/v and gate/up weights in one tensor; the modules keep views into it.

    FP8-stored layers (``Fp8Linear``) fuse their per-channel scales the same way (``_cosmos3_*_scale``).
    """
    for layer in model.layers:
        if hasattr(layer, "_cosmos3_qkv"):
            continue
        attn = layer.self_attn
        layer._cosmos3_qkv, layer._cosmos3_qkv_scale = _fuse((attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
        mlp = layer.mlp_moe_gen
        if getattr(mlp, "gate_proj", None) is not None:
            layer._cosmos3_gate_up, layer._cosmos3_gate_up_scale = _fuse((mlp.gate_proj, mlp.up_proj))
        else:
            layer._cosmos3_gate_up, layer._cosmos3_gate_up_scale = None, None


def _partial_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                       backend: str = "flash") -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output ``[B, H, N, D]`` and its log-sum-exp ``[B, H, N]`` (float32).

    CUDA: flash or cuDNN attention (no bias) or the memory-efficient kernel (with bias). CPU: the plain formula,
    so the merge logic can be checked without a GPU.
    """
    if q.is_cuda:
        if bias is None and backend == "cudnn":
            out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, False, False)[:2]
            if lse.ndim == 4:
                lse = lse.squeeze(-1)
        elif bias is None:
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False)[:2]
        else:
            out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, True)[:2]
        return out, lse[..., : q.shape[2]]
    scores = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    if bias is not None:
        scores = scores + bias.float()
    lse = torch.logsumexp(scores, dim=-1)
    return (torch.exp(scores - lse.unsqueeze(-1)) @ v.float()).to(q.dtype), lse


def _attention_parts(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, text_k: torch.Tensor, text_v: torch.Tensor,
                     text_bias: torch.Tensor, backend: str = "flash") -> torch.Tensor:
    """Softmax attention of ``q`` over ``[text slot | own keys]``, exact, with static shapes.

    Args:
        q: ``[B, Hq, N, D]``; k, v: ``[B, Hq, N, D]`` (heads already expanded from the KV heads).
        text_k, text_v: ``[B, Hq, S, D]`` padded text slot; text_bias: ``[B, Hq, N, S]`` 0 / -inf (a view).

    Returns:
        ``[B, N, Hq * D]``.

    """
    out_g, lse_g = _partial_attention(q, k, v, None, backend)
    out_t, lse_t = _partial_attention(q, text_k, text_v, text_bias)
    top = torch.maximum(lse_g, lse_t)
    w_g = torch.exp(lse_g - top).unsqueeze(-1)
    w_t = torch.exp(lse_t - top).unsqueeze(-1)
    merged = (out_g.float() * w_g + out_t.float() * w_t) / (w_g + w_t)
    return merged.to(q.dtype).transpose(1, 2).flatten(2)



def _linear(x: torch.Tensor, weight: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``x @ W.T``: bf16, or FP8 (per-token x per-channel scales, or one scale each: cuBLAS's faster path)."""
    if not isinstance(weight, tuple):
        return F.linear(x, weight)
    w8, w_scale = weight
    if w_scale.ndim == 0:
        x_scale = x.float().abs().amax().clamp_min(1e-12) / FP8_MAX
        x8 = (x.float() / x_scale).to(torch.float8_e4m3fn)
        return torch._scaled_mm(x8, w8.t(), scale_a=x_scale, scale_b=w_scale, out_dtype=x.dtype)
    x_scale = x.float().abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / FP8_MAX
    x8 = (x.float() / x_scale).to(torch.float8_e4m3fn)
    return torch._scaled_mm(x8, w8.t(), scale_a=x_scale, scale_b=w_scale, out_dtype=x.dtype)


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float, weight_fp32: bool) -> torch.Tensor:
    """RMSNorm over the last axis in float32, as the model's own norms compute it."""
    normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    if weight_fp32:  # the Nemotron (Edge) norm multiplies in float32
        return (weight.float() * normed).to(x.dtype)
    return normed.to(weight.dtype) * weight


def _residual(flat: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``flat + delta`` rounded once to the stream dtype, exactly as the reference's bf16 add.

    Spelled in float32 so the compiler fuses it into the next norm instead of folding it into the preceding
    product as ``addmm``, which would first copy the whole residual stream into the product's output.
    """
    return (flat.float() + delta.float()).to(flat.dtype)


def generation_layer(flat: torch.Tensor, pending: torch.Tensor | None, weights: tuple[torch.Tensor, ...],
                     cos: torch.Tensor, sin: torch.Tensor, attention: tuple[torch.Tensor, ...], *, batch: int,
                     heads: int, kv_heads: int, eps: float, weight_fp32: bool, gated: bool, backend: str,
                     native_gqa: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One generation-stream layer on ``flat`` ``[B * N, C]`` as a pure function (so it can be compiled once).

    ``pending`` is the previous layer's MLP output, not yet added to the residual stream (None for layer 0);
    the layer returns its own residual stream (after attention) and MLP output the same way, so each residual
    add is fused into the norm that follows it.
    ``weights`` = (input norm, q/k/v fused, q norm, k norm, out, post norm, gate/up fused or up, down);
    ``cos``/``sin`` ``[B, N, 1, D]``; ``attention`` = the text slot ``(text_k, text_v, text_bias)``:
    ``[B, Hkv, S, D]`` twice and ``[B, 1, 1, S]`` (0 / -inf).
    """
    in_norm, qkv_w, q_norm, k_norm, out_w, post_norm, up_w, down_w = weights
    if pending is not None:
        flat = _residual(flat, pending)
    tokens = flat.shape[0] // batch
    d = cos.shape[-1]
    normed = _rms(flat, in_norm, eps, weight_fp32)
    q, k, v = _linear(normed, qkv_w).split([heads * d, kv_heads * d, kv_heads * d], dim=-1)
    q = _rms(q.view(batch, tokens, heads, d), q_norm, eps, weight_fp32)
    k = _rms(k.view(batch, tokens, kv_heads, d), k_norm, eps, weight_fp32)
    q = q * cos + _rotate_half(q) * sin
    k = k * cos + _rotate_half(k) * sin
    v = v.reshape(batch, tokens, kv_heads, d)
    attended = _slot_attention(q, k, v, attention, batch=batch, heads=heads, kv_heads=kv_heads, backend=backend,
                               native_gqa=native_gqa)
    flat = _residual(flat, _linear(attended.reshape(batch * tokens, heads * d), out_w))
    return flat, _mlp(flat, post_norm, up_w, down_w, eps, weight_fp32, gated)


def _slot_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attention: tuple[torch.Tensor, ...], *,
                    batch: int, heads: int, kv_heads: int, backend: str, native_gqa: bool) -> torch.Tensor:
    """Attention over ``[text slot | own keys]`` for the slot backends; q ``[B, N, Hq, D]``, k/v ``[B, N, Hkv, D]``.

    Returns ``[B, N, Hq * D]``.
    """
    text_k, text_v, text_bias = attention
    tokens, groups = q.shape[1], heads // kv_heads
    q = q.transpose(1, 2)
    k = k.transpose(1, 2)
    v = v.transpose(1, 2)
    if not native_gqa:  # kernels without grouped-query support get the KV heads repeated
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if backend == "cudnn_zero_pad":
        # One kernel over [text slot | own keys]. Padded slot entries hold zero keys and values: each scores
        # exactly 0, adding exp(0) to the softmax denominator and nothing to the numerator, so the exact output
        # is out_padded * Z / (Z - P) with Z = exp(lse) and P padded entries per branch.
        if not native_gqa:  # k and v were expanded above; expand the slot the same way
            text_k, text_v = text_k.repeat_interleave(groups, dim=1), text_v.repeat_interleave(groups, dim=1)
        keys, values = torch.cat([text_k, k], dim=2), torch.cat([text_v, v], dim=2)
        out, lse = _partial_attention(q, keys, values, None, "cudnn")
        padded = text_bias.isinf().sum(-1, keepdim=True).float()  # [B, 1, 1, 1]
        correction = 1.0 / (1.0 - padded * torch.exp(-lse.unsqueeze(-1))).clamp_min(1e-6)
        # rescale in the [B, N, H, D] order the output projection reads (cuDNN already stores it that way), so
        # the rescale and the layout change are one pass
        return (out.transpose(1, 2).float() * correction.transpose(1, 2)).to(q.dtype).flatten(2)
    text_k, text_v = text_k.repeat_interleave(groups, dim=1), text_v.repeat_interleave(groups, dim=1)
    bias = text_bias.expand(batch, heads, tokens, text_bias.shape[-1])
    return _attention_parts(q, k, v, text_k, text_v, bias, backend)


def _mlp(flat: torch.Tensor, post_norm: torch.Tensor, up_w: object, down_w: object, eps: float, weight_fp32: bool,
         gated: bool) -> torch.Tensor:
    """Post-attention norm + MLP (SiLU-gated, or relu^2 on Edge); the residual add is left to the caller."""
    normed = _rms(flat, post_norm, eps, weight_fp32)
    if gated:
        gate, up = _linear(normed, up_w).chunk(2, dim=-1)  # type: ignore[arg-type]
        hidden = F.silu(gate) * up
    else:
        hidden = torch.relu(_linear(normed, up_w)).square()  # type: ignore[arg-type]
    return _linear(hidden, down_w)  # type: ignore[arg-type]


def cudnn_supports_gqa(device: torch.device) -> bool:
    """Whether the cuDNN attention op takes fewer KV heads than query heads (checked against SDPA)."""
    try:
        generator = torch.Generator(device=device).manual_seed(0)
        q = torch.randn(1, 4, 64, 128, device=device, dtype=torch.bfloat16, generator=generator)
        k = torch.randn(1, 1, 64, 128, device=device, dtype=torch.bfloat16, generator=generator)
        v = torch.randn(1, 1, 64, 128, device=device, dtype=torch.bfloat16, generator=generator)
        out = _partial_attention(q, k, v, None, "cudnn")[0]
        expected = F.scaled_dot_product_attention(q, k.expand(1, 4, 64, 128), v.expand(1, 4, 64, 128))
        return bool(torch.allclose(out.float(), expected.float(), atol=2e-2, rtol=2e-2))
    except RuntimeError:
        return False


@dataclass
class _StepBuffers:
    """Static inputs and outputs of one captured step (``batch`` branches)."""

    batch: int
    vision: torch.Tensor  # [1, C_lat, T, H, W]
    action: torch.Tensor  # [rows, A]
    timestep: torch.Tensor  # [1] float32
    out_vision: torch.Tensor | None = None  # [B, 1, C_lat, T, H, W]
    out_action: torch.Tensor | None = None  # [B, rows, A]
    graph: torch.cuda.CUDAGraph | None = None
    ran: bool = False


class FastGenerationTower:
    """Static-shape generation stream for one layout on CUDA, with text slots for two branches."""

    def __init__(self, model: torch.nn.Module, layout: GenerationLayout, domain_id: int, max_text_tokens: int = 256,
                 use_graphs: bool = True, compile_layers: bool = False, attention: str = "flash",
                 fp8: bool | str = False) -> None:
        fuse_generation_projections(model)
        self.model = model
        self.layout = layout
        self.use_graphs = use_graphs
        self.attention = attention
        self.native_gqa = attention.startswith("cudnn") and model.proj_in.weight.is_cuda and \
            cudnn_supports_gqa(model.proj_in.weight.device)
        self.compiled = compile_layers
        self.layer_fn = torch.compile(generation_layer, dynamic=False) if compile_layers else generation_layer
        self.fp8 = fp8
        self.layer_weights = [self._weights(layer, fp8) for layer in model.layers]
        first = model.layers[0]
        if first.self_attn.add_q_proj.bias is not None or first.mlp_moe_gen.down_proj.bias is not None:
            raise ValueError("the fast tower assumes bias-free generation projections (attention_bias=false)")
        self.weight_fp32 = first.input_layernorm_moe_gen.__class__.__name__ == "Cosmos3NemotronRMSNorm"
        self.eps = float(model.config.rms_norm_eps)
        self.gated = first._cosmos3_gate_up is not None
        self.positions = PositionConfig.from_model_config(model.config)
        weight = model.proj_in.weight
        self.device, self.dtype = weight.device, weight.dtype
        cfg = model.config
        self.heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.groups = self.heads // self.kv_heads
        tokens = layout.num_gen_tokens
        self.slot = (max_text_tokens + 15) // 16 * 16
        if attention == "cudnn_zero_pad":
            # extra zero keys cost nothing in exactness (the rescale counts them) and a key count that is a
            # multiple of 128 runs cuDNN's kernel without a partial tile: 600 -> 555 us at 3221 -> 3328 keys (H100)
            self.slot += -(self.slot + tokens) % KEY_TILE
        dev = self.device
        self.noisy_frames = layout.noisy_frames.to(dev)
        self.noisy_rows = layout.noisy_rows.to(dev)
        self.vision_read = layout.noisy_vision_token_index().to(dev)
        self.action_read = layout.noisy_action_token_index().to(dev)
        self.vision_noisy_mask = torch.zeros(layout.num_vision_tokens, 1, device=dev, dtype=self.dtype)
        self.vision_noisy_mask[self.vision_read] = 1
        self.action_noisy_mask = torch.zeros(layout.action_rows, 1, device=dev, dtype=self.dtype)
        self.action_noisy_mask[self.noisy_rows] = 1
        a_in, a_out = model.action_proj_in, model.action_proj_out
        self.action_in_w = a_in.fc.weight[domain_id].view(a_in.input_size, a_in.output_size).contiguous()
        self.action_in_b = a_in.bias.weight[domain_id].contiguous()
        self.action_out_w = a_out.fc.weight[domain_id].view(a_out.input_size, a_out.output_size).contiguous()
        self.action_out_b = a_out.bias.weight[domain_id].contiguous()
        layers = len(model.layers)
        self.text_k = torch.zeros(layers, 2, self.kv_heads, self.slot, self.head_dim, device=dev, dtype=self.dtype)
        self.text_v = torch.zeros_like(self.text_k)
        self.text_bias = torch.full((2, 1, 1, self.slot), NEG_INF, device=dev, dtype=self.dtype)
        self.cos = torch.zeros(2, tokens, 1, self.head_dim, device=dev, dtype=self.dtype)
        self.sin = torch.zeros_like(self.cos)
        self._slot_lengths: list[int | None] = [None, None]
        self._slot_texts: list[TextKV | None] = [None, None]
        self._steps: dict[int, _StepBuffers] = {}
        self.pool = torch.cuda.graph_pool_handle() if use_graphs else None
        self.capture_ms = 0.0

    @staticmethod
    def _weights(layer: torch.nn.Module, fp8: bool | str) -> tuple[object, ...]:
        """Per-layer operands of ``generation_layer``; the four matrices as FP8 (weight, scale) pairs if ``fp8``.

        Layers stored in FP8 (``Fp8Linear``) always run FP8 products, with their stored per-channel scales.
        """
        attn, mlp = layer.self_attn, layer.mlp_moe_gen
        gated = layer._cosmos3_gate_up is not None
        up = layer._cosmos3_gate_up if gated else mlp.up_proj.weight
        matrices: list[object] = [layer._cosmos3_qkv, attn.to_add_out.weight, up, mlp.down_proj.weight]
        if layer._cosmos3_qkv_scale is not None:  # FP8 storage
            up_scale = layer._cosmos3_gate_up_scale if gated else mlp.up_proj.weight_scale
            scales = [layer._cosmos3_qkv_scale, attn.to_add_out.weight_scale, up_scale, mlp.down_proj.weight_scale]
            matrices = [(m, s.view(1, -1)) for m, s in zip(matrices, scales, strict=True)]
        elif fp8:
            per_channel = fp8 != "tensor"
            cache_name = "_cosmos3_fp8" if per_channel else "_cosmos3_fp8_tensor"
            if not hasattr(layer, cache_name):
                setattr(layer, cache_name, [quantize_fp8(m, per_channel) for m in matrices])  # type: ignore[arg-type]
            matrices = getattr(layer, cache_name)
        qkv, out, up, down = matrices
        return (layer.input_layernorm_moe_gen.weight, qkv, attn.norm_added_q.weight, attn.norm_added_k.weight, out,
                layer.post_attention_layernorm_moe_gen.weight, up, down)

    def fits_length(self, length: int) -> bool:
        """Whether a prompt of ``length`` tokens fits the static text slot."""
        return length <= self.slot

    def load_text(self, slot: int, text: TextKV) -> None:
        """Put a branch's text K/V (and its generation rope) into slot 0 (cond) or 1 (uncond)."""
        if self._slot_texts[slot] is text:
            return
        length = text.length
        for index, (keys, values) in enumerate(zip(text.keys, text.values, strict=True)):
            self.text_k[index, slot, :, :length] = keys.transpose(0, 1)
            self.text_v[index, slot, :, :length] = values.transpose(0, 1)
        # padding stays exactly zero: the zero-pad attention backend relies on it
        self.text_k[:, slot, :, length:] = 0
        self.text_v[:, slot, :, length:] = 0
        self.text_bias[slot, ..., :length] = 0
        self.text_bias[slot, ..., length:] = NEG_INF
        if self._slot_lengths[slot] != length:
            cos, sin = rotary(self.model, self.layout.gen_positions(length, self.positions), self.dtype)
            self.cos[slot, :, 0] = cos
            self.sin[slot, :, 0] = sin
            self._slot_lengths[slot] = length
        self._slot_texts[slot] = text

    def _attention_inputs(self, index: int, batch: int) -> tuple[torch.Tensor, ...]:
        """The text slot of layer ``index`` for ``generation_layer`` (see its docstring)."""
        return self.text_k[index, :batch], self.text_v[index, :batch], self.text_bias[:batch]

    # ----- the step ------------------------------------------------------------------------------------------

    def _timestep_embedding(self, timestep: torch.Tensor) -> torch.Tensor:
        model = self.model
        embedder_dtype = next(model.time_embedder.parameters()).dtype
        emb = model.time_embedder(model.time_proj(timestep * model.config.timestep_scale).to(embedder_dtype))
        return emb.to(self.dtype)  # [1, C]

    def _embed(self, buffers: _StepBuffers) -> torch.Tensor:
        model = self.model
        temb = self._timestep_embedding(buffers.timestep)
        patches, _ = model._patchify_and_pack_latents([buffers.vision])
        vision = model.proj_in(patches) + self.vision_noisy_mask * temb
        action = buffers.action @ self.action_in_w + self.action_in_b + model.action_modality_embed
        action = action + self.action_noisy_mask * temb
        return torch.cat([vision, action], dim=0)

    def _layers(self, hidden: torch.Tensor, batch: int) -> torch.Tensor:
        tokens, width = hidden.shape[1], hidden.shape[2]
        cos, sin = self.cos[:batch], self.sin[:batch]
        flat, pending = hidden.reshape(batch * tokens, width), None
        for index, weights in enumerate(self.layer_weights):
            flat, pending = self.layer_fn(flat, pending, weights, cos, sin, self._attention_inputs(index, batch),
                                          batch=batch, heads=self.heads, kv_heads=self.kv_heads, eps=self.eps,
                                          weight_fp32=self.weight_fp32, gated=self.gated, backend=self.attention,
                                          native_gqa=self.native_gqa)
        return self.model.norm_moe_gen(flat + pending).view(batch, tokens, width)

    def _run(self, buffers: _StepBuffers) -> tuple[torch.Tensor, torch.Tensor]:
        model, layout = self.model, self.layout
        batch = buffers.batch
        hidden = self._embed(buffers).unsqueeze(0).expand(batch, -1, -1)
        out = self._layers(hidden, batch)
        t, h, w = layout.latent_thw
        vision = model.proj_out(out[:, self.vision_read].reshape(-1, out.shape[-1]))
        per = vision.shape[0] // batch
        velocities = [
            model._unpatchify_and_unpack_latents(vision[b * per:(b + 1) * per], token_shapes_vision=[layout.patch_grid],
                                                 noisy_frame_indexes_vision=[self.noisy_frames],
                                                 original_latent_shapes=[(t, h, w)])[0]
            for b in range(batch)
        ]
        action = torch.zeros(batch, layout.action_rows, self.action_out_w.shape[1], device=self.device,
                             dtype=self.dtype)
        action[:, self.noisy_rows] = out[:, self.action_read] @ self.action_out_w + self.action_out_b
        return torch.stack(velocities), action

    def _buffers(self, batch: int, vision: torch.Tensor, action: torch.Tensor) -> _StepBuffers:
        if batch not in self._steps:
            self._steps[batch] = _StepBuffers(
                batch=batch, vision=torch.zeros_like(vision), action=torch.zeros_like(action),
                timestep=torch.zeros(1, device=self.device, dtype=torch.float32),
            )
        return self._steps[batch]

    def _run_first(self, buffers: _StepBuffers) -> tuple[torch.Tensor, torch.Tensor]:
        """The first run compiles the layer; without a working compiler toolchain the same layer runs eagerly."""
        try:
            return self._run(buffers)
        except Exception as exc:
            if not self.compiled:
                raise
            log.warning("compiling the generation layer failed (%s); running it eagerly", exc)
            self.layer_fn, self.compiled = generation_layer, False
            return self._run(buffers)

    def _capture(self, buffers: _StepBuffers) -> None:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(torch.cuda.current_stream(self.device))
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._run_first(buffers)
            self._run(buffers)  # warm kernels and workspaces outside the graph
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # a capture stream of this tower's device: torch.cuda.graph's default one is created once per process, on
        # whichever device was current then, and a second GPU's kernels cannot be captured on it
        with torch.cuda.graph(graph, pool=self.pool, stream=torch.cuda.Stream(self.device)):
            buffers.out_vision, buffers.out_action = self._run(buffers)
        buffers.graph = graph
        end.record(torch.cuda.current_stream(self.device))
        end.synchronize()
        self.capture_ms += start.elapsed_time(end)

    @torch.no_grad()
    def __call__(self, vision: torch.Tensor, action: torch.Tensor, timestep: int, batch: int
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Velocities ``[(vision [1, C, T, H, W], action [rows, A])]`` for the first ``batch`` slots."""
        buffers = self._buffers(batch, vision, action)
        buffers.vision.copy_(vision)
        buffers.action.copy_(action)
        buffers.timestep.fill_(float(timestep))
        if not self.use_graphs:
            first = not getattr(buffers, "ran", False)
            out_vision, out_action = self._run_first(buffers) if first else self._run(buffers)
            buffers.ran = True
        else:
            if buffers.graph is None:
                self._capture(buffers)
            assert buffers.graph is not None and buffers.out_vision is not None and buffers.out_action is not None
            buffers.graph.replay()
            out_vision, out_action = buffers.out_vision, buffers.out_action
        return [(out_vision[b], out_action[b]) for b in range(batch)]
