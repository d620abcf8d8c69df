"""The 2-D form of the VAE's causal convs for a lone first frame gives the 3-D result."""

import torch
from diffusers import AutoencoderKLWan

from cosmos3_ros.engine.vae_encode import GraphedEncoder, use_single_frame_conv2d
from cosmos3_ros.tools.bench import WAN22_VAE


def test_single_frame_conv2d_encode_equals_conv3d_encode():
    torch.manual_seed(0)
    config = {**WAN22_VAE, "base_dim": 16, "decoder_base_dim": 16, "z_dim": 8, "latents_mean": [0.0] * 8,
              "latents_std": [1.0] * 8}
    vae = AutoencoderKLWan(**config).eval()
    one, five = torch.randn(1, 3, 1, 64, 96), torch.randn(1, 3, 5, 64, 96)
    with torch.no_grad():
        expected = [vae.encode(x).latent_dist.mode() for x in (one, five)]
        assert use_single_frame_conv2d(vae) == sum(1 for m in vae.encoder.modules() if hasattr(m, "_padding"))
        assert use_single_frame_conv2d(vae) == 0  # idempotent
        got = [vae.encode(x).latent_dist.mode() for x in (one, five)]
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_graphed_encoder_is_the_plain_encode_off_cuda():
    torch.manual_seed(1)
    config = {**WAN22_VAE, "base_dim": 16, "decoder_base_dim": 16, "z_dim": 8, "latents_mean": [0.0] * 8,
              "latents_std": [1.0] * 8}
    vae = AutoencoderKLWan(**config).eval()
    x = torch.randn(1, 3, 1, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(GraphedEncoder(vae)(x), vae.encode(x).latent_dist.mode(), rtol=0, atol=0)
