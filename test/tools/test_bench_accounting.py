"""The bench's bookkeeping that runs without a GPU: the kernel profile table, the ceiling choice, the FLOP counts
and the streaming FP8 build (the same random weights as the bf16 build, quantised tensor by tensor)."""

from __future__ import annotations

import pytest
import torch
from diffusers import Cosmos3OmniTransformer

from cosmos3_ros.engine.fp8 import Fp8Linear, quantize_fp8
from cosmos3_ros.engine.tiny_checkpoint import TINY_TRANSFORMER_CONFIG
from cosmos3_ros.tools.bench import (
    NANO,
    _random_fill,
    _stream_fp8_transformer,
    choose_ceiling,
    kernel_kind,
    kernel_table,
    linear_flops,
    transformer_flops,
)


def test_kernel_table_counts_each_kernel_once():
    kernels = [("sm90_xmma_gemm_bf16bf16_bf16f32", 100.0), ("sm90_xmma_gemm_bf16bf16_bf16f32", 100.0),
               ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop", 50.0), ("triton_red_fused_add_rms_0", 30.0),
               ("Memset (Device)", 20.0)]
    table = kernel_table(kernels)
    assert table["total_ms"] == pytest.approx(0.3)
    assert sum(row["share"] for row in table["kernels"]) == pytest.approx(1.0)
    assert table["kernels"][0] == {"name": "sm90_xmma_gemm_bf16bf16_bf16f32", "kind": "gemm", "calls": 2,
                                   "cuda_ms": pytest.approx(0.2), "share": pytest.approx(2 / 3)}
    assert table["kinds_ms"] == pytest.approx({"gemm": 0.2, "attention": 0.05,
                                               "compiled elementwise (Triton)": 0.03, "other": 0.02})
    assert kernel_kind("nvjet_tst_256x128_64x4_1x2_h_bz_coopA_TNT") == "gemm"
    assert kernel_kind("triton_red_fused__scaled_mm__to_copy_abs_amax_clamp_min_div_mul_silu_split_t_10") == \
        "compiled elementwise (Triton)"


def test_ceiling_is_the_highest_measured_rate():
    # the H200 case of the issue: a power-capped bare 8192^3 product below the model's own GEMMs
    assert choose_ceiling({"matmul_8192": 612.0, "model_gemm_shapes_sustained": 700.0,
                           "in_model_gemm_rate_from_profile": 729.0}) == (729.0, "in_model_gemm_rate_from_profile")


def test_gemm_flops_are_the_linear_part_of_the_request():
    tokens, steps = 3093, 4
    total = transformer_flops(NANO, tokens, [0, 0], steps, 0, [])["denoise"]  # no text: attention over own keys
    attention = steps * 2 * NANO["num_hidden_layers"] * 4 * tokens * tokens * NANO["num_attention_heads"] * \
        NANO["head_dim"]
    assert linear_flops(NANO, tokens, 2 * steps) == pytest.approx(total - attention)


def _meta_model() -> torch.nn.Module:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta"):
            model = Cosmos3OmniTransformer(**TINY_TRANSFORMER_CONFIG)
    finally:
        torch.set_default_dtype(previous)
    del model.lm_head
    return model


def test_streaming_fp8_build_quantises_the_same_weights_as_the_bf16_build():
    dense = _meta_model()
    dense.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in dense.named_parameters():
            _random_fill(name, param, generator)
    streamed = _meta_model()
    with torch.no_grad():
        _stream_fp8_transformer(streamed, torch.device("cpu"), torch.Generator().manual_seed(0))
    dense_modules = dict(dense.named_modules())
    quantised = 0
    for name, module in streamed.named_modules():
        if isinstance(module, Fp8Linear):
            weight8, scale = quantize_fp8(dense_modules[name].weight)
            assert torch.equal(module.weight.view(torch.uint8), weight8.view(torch.uint8))
            assert torch.equal(module.weight_scale, scale.view(-1))
            quantised += 1
    assert quantised == 7 * len(streamed.layers) * 2  # q/k/v/out + gate/up/down, text and generation streams
    # everything else is the bf16 build's tensor, bit for bit
    for name, tensor in streamed.state_dict().items():
        if not name.endswith(("weight_scale",)) and tensor.dtype != torch.float8_e4m3fn:
            assert torch.equal(tensor, dense.state_dict()[name]), name
