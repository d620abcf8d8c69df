"""Base-model contract: our actions equal diffusers' own Cosmos3OmniPipeline fed the same noise and settings.

The pipeline is the independent oracle. It is built from the same tiny checkpoint through diffusers' own
loaders, with a native linear-shift scheduler (use_native_flow_schedule) and the safety checker off.
Inputs are PIL images whose sides are multiples of 16 and whose bucket needs no resize, because diffusers
resizes other sizes to a multiple of 16 before the canvas (a deviation from the native server).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3_ros.processing.predictor import ActionPredictor
from cosmos3_ros.processing.request import ActionRequest

CHUNK, STEPS, GUIDANCE, SHIFT, FPS, SEED = 8, 3, 2.5, 5.0, 15.0, 7
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def pipeline(tiny_checkpoint):
    from diffusers import AutoencoderKLWan, Cosmos3OmniPipeline, Cosmos3OmniTransformer, UniPCMultistepScheduler
    from transformers import AutoTokenizer

    transformer = Cosmos3OmniTransformer.from_pretrained(tiny_checkpoint, subfolder="transformer",
                                                         torch_dtype=torch.float32)
    vae = AutoencoderKLWan.from_pretrained(tiny_checkpoint, subfolder="vae", torch_dtype=torch.float32)
    scheduler = UniPCMultistepScheduler(use_flow_sigmas=True, use_karras_sigmas=False, flow_shift=SHIFT,
                                        prediction_type="flow_prediction")
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint / "text_tokenizer")
    return Cosmos3OmniPipeline(transformer=transformer, text_tokenizer=tokenizer, vae=vae, scheduler=scheduler,
                               enable_safety_checker=False, default_use_system_prompt=False,
                               use_native_flow_schedule=True)


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    overrides = {"chunk": CHUNK, "steps": STEPS, "guidance": GUIDANCE, "flow_shift": SHIFT, "fps": FPS,
                 "resolution_tier": 256, "schedule": "native", "use_system_prompt": False}
    return ActionPredictor.load(tiny_checkpoint, "base", overrides=overrides, evaluator="reference")


def _frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(256, 320, 3), dtype=np.uint8)
    return [np.roll(base, 6 * i, axis=1) for i in range(count)]


def _run_diffusers(pipeline, mode: str, frames, actions=None):
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import CosmosActionCondition

    pil = [Image.fromarray(f) for f in frames]
    condition = CosmosActionCondition(
        mode=mode, chunk_size=CHUNK, domain_name="droid_lerobot", resolution_tier=256,
        image=pil[0] if mode != "inverse_dynamics" else None, video=pil if mode == "inverse_dynamics" else None,
        raw_actions=None if actions is None else torch.from_numpy(actions), view_point="ego_view",
    )
    return pipeline(prompt="pick up the red cube", action=condition, num_inference_steps=STEPS,
                    guidance_scale=GUIDANCE, fps=FPS, output_type="latent", enable_safety_check=False,
                    generator=torch.Generator().manual_seed(SEED))


def _run_ours(predictor, mode: str, frames, actions=None, evaluator="reference"):
    predictor.evaluator = evaluator
    request = ActionRequest(task="pick up the red cube", mode=mode, seed=SEED, actions=actions,
                            image=frames[0] if mode != "inverse_dynamics" else None,
                            video=frames if mode == "inverse_dynamics" else None)
    generation, context = predictor.generation_request(request)
    result = predictor.generator.generate(generation, evaluator=evaluator)
    return predictor.physical_actions(result, context), result.video_latents


@pytest.mark.parametrize("evaluator", ["reference", "cached"])
def test_policy_actions_match_diffusers(pipeline, predictor, evaluator):
    frames = _frames(1)
    ours, latents = _run_ours(predictor, "policy", frames, evaluator=evaluator)
    theirs = _run_diffusers(pipeline, "policy", frames)
    assert ours.shape == (CHUNK, 10)
    np.testing.assert_allclose(ours, theirs.action[0].numpy(), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(latents.numpy(), theirs.video.numpy(), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("evaluator", ["reference", "cached"])
def test_inverse_dynamics_actions_match_diffusers(pipeline, predictor, evaluator):
    frames = _frames(CHUNK + 1)
    ours, _ = _run_ours(predictor, "inverse_dynamics", frames, evaluator=evaluator)
    theirs = _run_diffusers(pipeline, "inverse_dynamics", frames)
    np.testing.assert_allclose(ours, theirs.action[0].numpy(), atol=TOLERANCE, rtol=0)
    assert np.abs(ours).max() > 0.01  # real predictions, not zeros


@pytest.mark.parametrize("evaluator", ["reference", "cached"])
def test_forward_dynamics_rollout_latents_match_diffusers(pipeline, predictor, evaluator):
    frames = _frames(1)
    known = np.linspace(-0.5, 0.5, 5 * 10, dtype=np.float32).reshape(5, 10)  # shorter than the chunk: last repeats
    ours_actions, ours_latents = _run_ours(predictor, "forward_dynamics", frames, known, evaluator=evaluator)
    theirs = _run_diffusers(pipeline, "forward_dynamics", frames, known)
    assert theirs.action is None  # diffusers returns no actions in forward dynamics
    np.testing.assert_allclose(ours_latents.numpy(), theirs.video.numpy(), atol=TOLERANCE, rtol=0)
    np.testing.assert_array_equal(ours_actions[5:], np.repeat(known[-1:], CHUNK - 5, axis=0))
