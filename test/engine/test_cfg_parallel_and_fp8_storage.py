"""CFG-parallel (two devices, one branch each) and FP8 weight storage, checked on CPU against the one-device engine.

On CPU the two "devices" are both the CPU, but every step still runs the two branches through two towers over
two separate copies of the weights and combines them as on two GPUs, so the arithmetic and the bookkeeping
(slots, replicas, views, copies back) are the ones the GPUs run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cosmos_test_inputs import DROID_STATE

from cosmos3_ros.engine.cfg_parallel import parse_devices, replicate
from cosmos3_ros.engine.fp8 import Fp8Linear, storage_bytes
from cosmos3_ros.errors import InputError
from cosmos3_ros.processing.predictor import ActionPredictor
from cosmos3_ros.processing.request import ActionRequest


def _fast_eager(predictor: ActionPredictor) -> None:
    generator = predictor.generator
    generator.fast, generator.cuda_graphs, generator.compile_layers = True, False, False  # CUDA path, eager, CPU


@pytest.mark.parametrize("guidance_steps", [None, 1])
def test_cfg_parallel_equals_one_device(tiny_checkpoint, droid_cameras, guidance_steps):
    overrides = {"chunk": 8, "steps": 3, "guidance": 3.0}
    if guidance_steps is not None:
        overrides["guidance_steps"] = guidance_steps
    predictor = ActionPredictor.load(tiny_checkpoint, "released_droid_policy", overrides=overrides)
    _fast_eager(predictor)
    generator = predictor.generator
    generation, _ = predictor.generation_request(ActionRequest(task="stack the cups", cameras=droid_cameras,
                                                               state=DROID_STATE))
    single = generator.generate(generation)
    generator.enable_cfg_parallel("cpu")
    assert generator._cfg_replica is not None and generator._cfg_replica is not generator.transformer
    parallel = generator.generate(generation)
    assert {key[2] for key in generator._fast_towers} == {False, True}  # both towers were used
    # batch 2 vs two batches of 1: float32 products may block differently, so rounding-level tolerance
    np.testing.assert_allclose(parallel.action_latents.numpy(), single.action_latents.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(parallel.video_latents.numpy(), single.video_latents.numpy(), atol=1e-5, rtol=0)
    generator.enable_cfg_parallel(None)
    again = generator.generate(generation)
    np.testing.assert_allclose(again.action_latents.numpy(), single.action_latents.numpy(), atol=1e-6, rtol=0)


def test_replica_is_a_separate_copy_that_keeps_fused_views(tiny_checkpoint, droid_cameras):
    predictor = ActionPredictor.load(tiny_checkpoint, "released_droid_policy", overrides={"chunk": 8, "steps": 1})
    _fast_eager(predictor)
    predictor.predict(ActionRequest(task="wipe", cameras=droid_cameras, state=DROID_STATE))  # fuses projections
    model = predictor.generator.transformer
    copy = replicate(model, "cpu")
    for original, replica in zip(model.layers, copy.layers, strict=True):
        assert replica._cosmos3_qkv.data_ptr() != original._cosmos3_qkv.data_ptr()
        torch.testing.assert_close(replica._cosmos3_qkv, original._cosmos3_qkv, rtol=0, atol=0)
        # the module weights are views of the replica's own fused tensor, as in the original
        assert replica.self_attn.add_q_proj.weight.data_ptr() == replica._cosmos3_qkv.data_ptr()
        assert replica.mlp_moe_gen.up_proj.weight.untyped_storage().data_ptr() == \
            replica._cosmos3_gate_up.untyped_storage().data_ptr()
    original_bytes = sum(t.untyped_storage().nbytes() for t in {p.untyped_storage().data_ptr(): p
                                                                for p in model.parameters()}.values())
    replica_bytes = sum(t.untyped_storage().nbytes() for t in {p.untyped_storage().data_ptr(): p
                                                               for p in copy.parameters()}.values())
    assert replica_bytes == original_bytes


def test_devices_setting_loads_a_replica_for_the_second_branch(tiny_checkpoint):
    predictor = ActionPredictor.load(tiny_checkpoint, "released_droid_policy", devices="cpu,cpu")
    generator = predictor.generator
    assert generator.device == torch.device("cpu") and generator.cfg_device == torch.device("cpu")
    assert generator._cfg_replica is not None
    first = next(generator._cfg_replica.parameters())
    assert first.data_ptr() != next(generator.transformer.parameters()).data_ptr()


def test_parse_devices():
    assert parse_devices("cuda:0, cuda:1") == [torch.device("cuda:0"), torch.device("cuda:1")]
    assert parse_devices("cpu") == [torch.device("cpu")]
    for bad in ("", "cuda:0,cuda:1,cuda:2", "cuda:0,cuda:0", "cuda:0,cpu", "gpu0"):
        with pytest.raises(InputError, match="devices"):
            parse_devices(bad)


def test_fp8_storage_loads_quantised_and_stays_close(tiny_checkpoint, droid_cameras):
    overrides = {"chunk": 8, "steps": 2, "guidance": 3.0}
    full = ActionPredictor.load(tiny_checkpoint, "released_droid_policy", overrides=overrides)
    small = ActionPredictor.load(tiny_checkpoint, "released_droid_policy", overrides=overrides, weights="fp8")
    model = small.generator.transformer
    linears = [m for m in model.layers.modules() if isinstance(m, torch.nn.Linear | Fp8Linear)]
    assert linears and all(isinstance(m, Fp8Linear) for m in linears)
    assert all(m.weight.dtype == torch.float8_e4m3fn and m.weight_scale.shape == (m.out_features,) for m in linears)
    assert model.embed_tokens.weight.dtype == torch.float32  # embeddings keep the serving dtype
    held = storage_bytes(model)
    assert held["float8_e4m3fn"] > 0
    request = ActionRequest(task="put the cup on the plate", cameras=droid_cameras, state=DROID_STATE)
    reference = full.predict(request).actions
    # the dequantising module path (text tower, plain generation tower)
    quantised = small.predict(request).actions
    drift = np.linalg.norm(quantised - reference) / np.linalg.norm(reference)
    # e4m3 keeps 3 mantissa bits: ~2-3% relative error per weight, averaged down over each dot product
    assert 0 < drift < 0.05, drift
    # the fast tower multiplies FP8 x FP8 with the stored per-channel scales (fused q/k/v, gate/up)
    _fast_eager(small)
    fast = small.predict(request).actions
    fast_drift = np.linalg.norm(fast - reference) / np.linalg.norm(reference)
    assert 0 < fast_drift < 0.08, fast_drift
    layer = model.layers[0]
    assert layer._cosmos3_qkv.dtype == torch.float8_e4m3fn
    assert layer._cosmos3_qkv_scale.shape == (layer._cosmos3_qkv.shape[0],)


def test_unknown_weight_format_is_refused(tiny_checkpoint):
    with pytest.raises(InputError, match="weights 'int4'"):
        ActionPredictor.load(tiny_checkpoint, "released_droid_policy", weights="int4")
