"""Sequence layout of one request: which tokens exist, which are clean, and their mRoPE positions.

The joint sequence is ``[text | vision | action]``. Text is the causal "understanding" stream; vision and
action form the "generation" stream. Positions have three axes (t, h, w):

* text token j: ``(j, j, j)``;
* the media offset ``M = L_text + temporal_modality_margin``;
* vision latent frame f, patch (y, x): ``t = f / (fps / 4) * (base_fps / 4) + M`` (fps modulation, when the
  video has more than one latent frame), ``h = y``, ``w = x``;
* action row i: ``t = (i + start_offset) / fps * (base_fps / 4) + M``, ``h = w = 0`` — row i lines up with
  pixel frame ``i + start_offset`` (0 with a state row, 1 without).

The arithmetic order below is kept identical to the reference pipeline so float32 positions match bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TEMPORAL_COMPRESSION = 4  # Wan VAE: 4 pixel frames per latent frame (after the first)
SPATIAL_COMPRESSION = 16


def latent_frames(num_pixel_frames: int) -> int:
    """Latent frames of a causal-VAE video of ``num_pixel_frames`` (the first frame is its own latent)."""
    return (num_pixel_frames - 1) // TEMPORAL_COMPRESSION + 1


def pixel_prefix_for(latent_frame: int) -> int:
    """Pixel frames the causal VAE needs to produce latent frames ``0..latent_frame``."""
    return latent_frame * TEMPORAL_COMPRESSION + 1


@dataclass(frozen=True)
class PositionConfig:
    """The transformer config values that shape positions."""

    base_fps: float
    fps_modulation: bool
    modality_margin: int
    reset_spatial: bool

    @classmethod
    def from_model_config(cls, config: object) -> PositionConfig:
        """Read the four values from a ``Cosmos3OmniTransformer`` config."""
        return cls(
            base_fps=float(config.base_fps),  # type: ignore[attr-defined]
            fps_modulation=bool(config.enable_fps_modulation),  # type: ignore[attr-defined]
            modality_margin=int(config.unified_3d_mrope_temporal_modality_margin),  # type: ignore[attr-defined]
            reset_spatial=bool(config.unified_3d_mrope_reset_spatial_ids),  # type: ignore[attr-defined]
        )


def text_positions(length: int, cfg: PositionConfig) -> torch.Tensor:
    """``[3, L]`` positions of the text tokens."""
    dtype = torch.float32 if cfg.fps_modulation else torch.long
    return torch.arange(length, dtype=dtype).unsqueeze(0).expand(3, -1).contiguous()


def _grid_positions(
    grid: tuple[int, int, int], offset: int, fps: float | None, cfg: PositionConfig,
    compression: int, start_offset: int,
) -> torch.Tensor:
    t_len, h_len, w_len = grid
    modulated = fps is not None and cfg.fps_modulation and t_len > 1
    spatial = h_len * w_len
    if modulated:
        assert fps is not None
        ticks_per_second = fps / compression
        base_ticks_per_second = cfg.base_fps / TEMPORAL_COMPRESSION
        frames = torch.arange(t_len, dtype=torch.float32)
        t_index = ((frames + start_offset) / ticks_per_second * base_ticks_per_second + offset)
        t_index = t_index.view(-1, 1).expand(-1, spatial).flatten()
    else:
        t_index = torch.arange(t_len, dtype=torch.long).view(-1, 1).expand(-1, spatial).flatten()
        t_index = t_index + offset + start_offset
    h_index = torch.arange(h_len, dtype=torch.long).view(1, -1, 1).expand(t_len, -1, w_len).flatten()
    w_index = torch.arange(w_len, dtype=torch.long).view(1, 1, -1).expand(t_len, h_len, -1).flatten()
    if not cfg.reset_spatial:
        h_index, w_index = h_index + offset, w_index + offset
    if modulated:
        return torch.stack([t_index, h_index.to(torch.float32), w_index.to(torch.float32)], dim=0)
    return torch.stack([t_index, h_index, w_index], dim=0)


@dataclass(frozen=True)
class GenerationLayout:
    """Token bookkeeping of the generation stream, shared by the CFG branches.

    Attributes:
        latent_thw: latent frames, height and width after the crop to the image content.
        patch_grid: ``(T, H/2, W/2)`` patch tokens per latent frame (2x2 patches, zero-padded when odd).
        clean_frames / clean_rows: latent frames and action rows given as conditioning (never denoised).
        action_rows: action tokens (chunk, plus the state row when present).
        action_start_offset: pixel frame that action row 0 lines up with.
        fps: conditioning fps.

    """

    latent_thw: tuple[int, int, int]
    patch_size: int
    clean_frames: tuple[int, ...]
    action_rows: int
    clean_rows: tuple[int, ...]
    action_start_offset: int
    fps: float

    @property
    def patch_grid(self) -> tuple[int, int, int]:
        """Patch-token grid ``(T, Hp, Wp)``."""
        t, h, w = self.latent_thw
        p = self.patch_size
        return t, (h + p - 1) // p, (w + p - 1) // p

    @property
    def tokens_per_frame(self) -> int:
        """Vision tokens per latent frame."""
        _, hp, wp = self.patch_grid
        return hp * wp

    @property
    def num_vision_tokens(self) -> int:
        """Vision tokens in the sequence."""
        return self.patch_grid[0] * self.tokens_per_frame

    @property
    def num_gen_tokens(self) -> int:
        """Generation-stream tokens (vision + action)."""
        return self.num_vision_tokens + self.action_rows

    @property
    def noisy_frames(self) -> torch.Tensor:
        """Latent frames being denoised, ``[n]`` long."""
        return torch.tensor([f for f in range(self.latent_thw[0]) if f not in self.clean_frames], dtype=torch.long)

    @property
    def noisy_rows(self) -> torch.Tensor:
        """Action rows being denoised, ``[n]`` long."""
        return torch.tensor([r for r in range(self.action_rows) if r not in self.clean_rows], dtype=torch.long)

    def noisy_vision_token_index(self) -> torch.Tensor:
        """Indices (within the generation stream) of the tokens of noisy latent frames."""
        per = self.tokens_per_frame
        return torch.cat([torch.arange(f * per, (f + 1) * per) for f in self.noisy_frames.tolist()] or
                         [torch.zeros(0, dtype=torch.long)])

    def noisy_action_token_index(self) -> torch.Tensor:
        """Indices (within the generation stream) of the noisy action rows."""
        return self.noisy_rows + self.num_vision_tokens

    def vision_condition_mask(self) -> torch.Tensor:
        """``[T, 1, 1]`` float32: 1 on clean latent frames."""
        mask = torch.zeros(self.latent_thw[0], 1, 1)
        for f in self.clean_frames:
            if 0 <= f < self.latent_thw[0]:
                mask[f] = 1.0
        return mask

    def action_condition_mask(self) -> torch.Tensor:
        """``[rows, 1]`` float32: 1 on clean action rows."""
        mask = torch.zeros(self.action_rows, 1)
        for r in self.clean_rows:
            if 0 <= r < self.action_rows:
                mask[r] = 1.0
        return mask

    def gen_positions(self, text_len: int, cfg: PositionConfig) -> torch.Tensor:
        """``[3, N_gen]`` positions of vision then action tokens, for a text prefix of ``text_len`` tokens."""
        media_offset = text_len + cfg.modality_margin
        vision = _grid_positions(self.patch_grid, media_offset, self.fps, cfg, TEMPORAL_COMPRESSION, 0)
        action = _grid_positions((self.action_rows, 1, 1), media_offset, self.fps, cfg, 1, self.action_start_offset)
        return torch.cat([vision, action], dim=1)
