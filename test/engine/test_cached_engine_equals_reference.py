"""The cached engine (text K/V cache, generation-only steps, batched CFG) equals the uncached reference loop.

The cached path performs the same operations on the same operands, only fewer of them, and on the CPUs tried the
two are bit-identical in float32. That is not guaranteed by construction: the matmuls have other shapes (CFG as
a batch of two, generation rows only), and a BLAS may pick another kernel, with another summation order, per
shape. So the tolerance is 1e-5, far below any difference a wrong cache would make (a stale or misplaced K/V
changes the latents by order 1e-1 on the tiny model).
"""

from __future__ import annotations

import numpy as np
import pytest
from cosmos_test_inputs import DROID_STATE

from cosmos3_ros.processing.predictor import ActionPredictor
from cosmos3_ros.processing.request import ActionRequest

SMALL = {"chunk": 8, "steps": 2}


@pytest.fixture(scope="module")
def released(tiny_checkpoint):
    return ActionPredictor.load(tiny_checkpoint, "released_droid_policy", overrides=SMALL)


def _both(predictor: ActionPredictor, request: ActionRequest):
    generation, _ = predictor.generation_request(request)
    cached = predictor.generator.generate(generation, evaluator="cached")
    reference = predictor.generator.generate(generation, evaluator="reference")
    return cached, reference


def _assert_identical(cached, reference):
    np.testing.assert_allclose(cached.action_latents.numpy(), reference.action_latents.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(cached.video_latents.numpy(), reference.video_latents.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["policy", "inverse_dynamics", "forward_dynamics"])
def test_all_modes_match(released, droid_cameras, mode):
    frames = [dict(droid_cameras)] * 9 if mode == "inverse_dynamics" else None
    known = np.tile(np.array(DROID_STATE, dtype=np.float32), (8, 1)) if mode == "forward_dynamics" else None
    request = ActionRequest(task="stack the cups", mode=mode, state=DROID_STATE, actions=known,
                            cameras=None if frames else droid_cameras, video=frames)
    _assert_identical(*_both(released, request))


def test_without_cfg_matches(released, droid_cameras):
    predictor = released.with_profile(released.profile.with_overrides(guidance=1.0))
    _assert_identical(*_both(predictor, ActionRequest(task="t", cameras=droid_cameras, state=DROID_STATE)))


def test_cfg_on_first_step_only_matches(released, droid_cameras):
    predictor = released.with_profile(released.profile.with_overrides(guidance_steps=1, steps=3))
    _assert_identical(*_both(predictor, ActionRequest(task="t", cameras=droid_cameras, state=DROID_STATE)))


def test_cache_hit_and_prompt_change(released, droid_cameras):
    cache = released.generator.text_cache
    cache.clear()
    first = ActionRequest(task="open the drawer", cameras=droid_cameras, state=DROID_STATE)
    cached, reference = _both(released, first)  # miss: prompt and empty prompt encoded
    _assert_identical(cached, reference)
    assert (cache.hits, cache.misses) == (0, 2)
    again, _ = _both(released, first)  # hit: both prompts from the cache
    _assert_identical(again, reference)
    assert (cache.hits, cache.misses) == (2, 2)
    changed = ActionRequest(task="close the drawer", cameras=droid_cameras, state=DROID_STATE)
    cached, reference = _both(released, changed)  # prompt change: one miss, empty prompt still pinned
    _assert_identical(cached, reference)
    assert (cache.hits, cache.misses) == (3, 3)
    assert not np.array_equal(cached.action_latents.numpy(), again.action_latents.numpy())


def test_lru_evicts_oldest_prompt_but_keeps_the_unconditional_one(tiny_checkpoint, droid_cameras):
    predictor = ActionPredictor.load(tiny_checkpoint, "released_droid_policy", overrides=SMALL, text_cache_size=1)
    cache = predictor.generator.text_cache
    for task in ("a", "b", "a"):
        generation, _ = predictor.generation_request(ActionRequest(task=task, cameras=droid_cameras,
                                                                   state=DROID_STATE))
        predictor.generator.generate(generation)
    assert (cache.hits, cache.misses) == (2, 4)  # "a" evicted by "b"; "" pinned
    assert len(cache) == 2
