"""The two towers of the Cosmos3 mixture-of-transformers, run separately.

Text ("understanding") tokens attend causally among themselves only, so their per-layer keys and values do
not depend on the denoising step: ``TextTower`` computes them once per prompt. Vision and action
("generation") tokens attend to ``[text K/V | generation K/V]``: ``GenerationTower`` runs only those tokens
each step. Both reuse the diffusers ``Cosmos3OmniTransformer`` modules (weights, norms, MLPs) and perform
the same operations in the same order as its full forward, so results equal the uncached forward.

Shapes: ``L`` text tokens, ``N`` generation tokens, ``B`` CFG branches, ``Hq``/``Hkv`` query/key heads,
``D`` head dim, ``C`` hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_cosmos3 import _rotate_half

from .layout import GenerationLayout, PositionConfig, text_positions


@dataclass
class TextKV:
    """Per-layer text keys (normed, rotated, as the generation stream sees them) and values.

    Attributes:
        keys / values: one ``[L, Hkv, D]`` tensor per layer.
        length: L, the number of text tokens (it also sets the generation stream's position offset).

    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int

    def nbytes(self) -> int:
        """Memory held, in bytes."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


def rotary(model: torch.nn.Module, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin ``[N, D]`` for ``[3, N]`` mRoPE positions (computed in float32, cast to ``dtype``)."""
    device = model.proj_in.weight.device
    cos, sin = model.rotary_emb(position_ids=positions.to(device).unsqueeze(1), device=device, dtype=dtype)
    return cos.squeeze(0), sin.squeeze(0)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin


class TextTower:
    """Runs the causal text stream and returns its per-layer K/V (``lm_head`` and the final norm are never used)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.positions = PositionConfig.from_model_config(model.config)

    @torch.no_grad()
    def __call__(self, token_ids: tuple[int, ...] | list[int]) -> TextKV:
        """K/V of every layer for ``token_ids`` ``[L]``."""
        model = self.model
        device = model.proj_in.weight.device
        ids = torch.tensor(list(token_ids), dtype=torch.long, device=device)
        hidden = model.embed_tokens(ids)
        cos, sin = rotary(model, text_positions(len(ids), self.positions), hidden.dtype)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        last = len(model.layers) - 1
        for index, layer in enumerate(model.layers):
            attn = layer.self_attn
            normed = layer.input_layernorm(hidden)
            q = attn.to_q(normed).view(-1, attn.num_attention_heads, attn.head_dim)
            k = attn.to_k(normed).view(-1, attn.num_key_value_heads, attn.head_dim)
            v = attn.to_v(normed).view(-1, attn.num_key_value_heads, attn.head_dim)
            q, k = attn.norm_q(q), attn.norm_k(k)
            k_for_gen = attn.k_norm_und_for_gen(k) if attn.k_norm_und_for_gen is not None else k
            keys.append(_rope(k_for_gen, cos, sin))
            values.append(v)
            if index == last:
                break  # the last layer's text output feeds nothing the generation stream reads
            q, k = _rope(q, cos, sin), _rope(k, cos, sin)
            out = dispatch_attention_fn(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), is_causal=True,
                                        enable_gqa=True, backend=attn.processor._attention_backend)
            hidden = hidden + attn.to_out(out.squeeze(0).flatten(-2, -1))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return TextKV(keys=keys, values=values, length=len(ids))


@dataclass
class GenerationInputs:
    """Generation-stream inputs of one step for B branches (the same latents, different text).

    Attributes:
        vision_latents: ``[1, C_lat, T, H, W]`` in the model dtype.
        action_latents: ``[rows, A]`` in the model dtype.
        timestep: the integer diffusion timestep of this step (same for every noisy token).

    """

    vision_latents: torch.Tensor
    action_latents: torch.Tensor
    timestep: int


class GenerationTower:
    """Embeds vision/action tokens and runs the generation stream against cached text K/V."""

    def __init__(self, model: torch.nn.Module, layout: GenerationLayout, domain_id: int) -> None:
        self.model = model
        self.layout = layout
        self.positions = PositionConfig.from_model_config(model.config)
        device = model.proj_in.weight.device
        self.device = device
        self.noisy_frames = layout.noisy_frames.to(device)
        self.noisy_rows = layout.noisy_rows.to(device)
        self.vision_read_index = layout.noisy_vision_token_index().to(device)
        self.action_read_index = layout.noisy_action_token_index().to(device)
        self.domain_ids = torch.full((layout.action_rows,), domain_id, dtype=torch.long, device=device)
        self.noisy_domain_ids = torch.full((len(self.noisy_rows),), domain_id, dtype=torch.long, device=device)
        self._rope_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def rope_for(self, text_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin ``[N, D]`` of the generation tokens behind a text prefix of ``text_len`` tokens (memoised)."""
        if text_len not in self._rope_cache:
            self._rope_cache[text_len] = rotary(self.model, self.layout.gen_positions(text_len, self.positions), dtype)
        return self._rope_cache[text_len]

    def _timestep_embedding(self, timestep: int, count: int, dtype: torch.dtype) -> torch.Tensor:
        model = self.model
        ts = torch.full((count,), timestep, device=self.device) * model.config.timestep_scale
        embedder_dtype = next(model.time_embedder.parameters()).dtype
        return model.time_embedder(model.time_proj(ts).to(embedder_dtype)).to(dtype)

    def embed(self, inputs: GenerationInputs) -> torch.Tensor:
        """``[N, C]`` generation-stream input: patch projection + modality embeddings + timestep on noisy tokens."""
        model = self.model
        dtype = model.proj_in.weight.dtype
        patches, _ = model._patchify_and_pack_latents([inputs.vision_latents])
        vision = model.proj_in(patches)
        if len(self.vision_read_index):
            emb = self._timestep_embedding(inputs.timestep, len(self.vision_read_index), dtype)
            vision = vision.index_add(0, self.vision_read_index, emb)
        action = model.action_proj_in(inputs.action_latents.to(dtype), self.domain_ids) + model.action_modality_embed
        if len(self.noisy_rows):
            emb = self._timestep_embedding(inputs.timestep, len(self.noisy_rows), dtype)
            action = action.index_add(0, self.noisy_rows, emb)
        return torch.cat([vision, action], dim=0)

    def forward(self, hidden: torch.Tensor, texts: list[TextKV], ropes: list[tuple[torch.Tensor, torch.Tensor]]
                ) -> torch.Tensor:
        """Run all layers: ``hidden`` ``[B, N, C]`` with one text K/V and rope per branch -> normed ``[B, N, C]``."""
        model = self.model
        batch, tokens, width = hidden.shape
        cos = torch.stack([c for c, _ in ropes]).unsqueeze(2)  # [B, N, 1, D]
        sin = torch.stack([s for _, s in ropes]).unsqueeze(2)
        for index, layer in enumerate(model.layers):
            attn = layer.self_attn
            flat = hidden.reshape(batch * tokens, width)
            normed = layer.input_layernorm_moe_gen(flat)
            q = attn.norm_added_q(attn.add_q_proj(normed).view(batch, tokens, attn.num_attention_heads, attn.head_dim))
            k = attn.norm_added_k(attn.add_k_proj(normed).view(batch, tokens, attn.num_key_value_heads, attn.head_dim))
            v = attn.add_v_proj(normed).view(batch, tokens, attn.num_key_value_heads, attn.head_dim)
            q, k = _rope(q, cos, sin), _rope(k, cos, sin)
            outs = []
            for b in range(batch):  # per-branch attention: the text prefixes differ in length
                keys = torch.cat([texts[b].keys[index], k[b]], dim=0)
                values = torch.cat([texts[b].values[index], v[b]], dim=0)
                out = dispatch_attention_fn(q[b].unsqueeze(0), keys.unsqueeze(0), values.unsqueeze(0), is_causal=False,
                                            enable_gqa=True, backend=attn.processor._attention_backend)
                outs.append(out.squeeze(0).flatten(-2, -1))
            attended = torch.cat(outs, dim=0) if batch > 1 else outs[0]
            flat = flat + attn.to_add_out(attended)
            flat = flat + layer.mlp_moe_gen(layer.post_attention_layernorm_moe_gen(flat))
            hidden = flat.view(batch, tokens, width)
        return model.norm_moe_gen(hidden)

    def read_out(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocities of one branch from its ``[N, C]`` output: vision ``[1, C_lat, T, H, W]``, action ``[rows, A]``."""
        model, layout = self.model, self.layout
        vision = model.proj_out(hidden[self.vision_read_index])
        t, h, w = layout.latent_thw
        (velocity_vision,) = model._unpatchify_and_unpack_latents(
            vision, token_shapes_vision=[layout.patch_grid], noisy_frame_indexes_vision=[self.noisy_frames],
            original_latent_shapes=[(t, h, w)],
        )
        velocity_action = torch.zeros(layout.action_rows, model.action_dim, device=hidden.device, dtype=hidden.dtype)
        if len(self.noisy_rows):
            velocity_action[self.noisy_rows] = model.action_proj_out(hidden[self.action_read_index],
                                                                     self.noisy_domain_ids)
        return velocity_vision, velocity_action
