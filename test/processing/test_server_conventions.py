"""The released contract as NVIDIA's policy server computes it: the values pinned here are the server's (facts read
from its public code, recomputed here independently), where this project earlier differed by an ulp or a grey level.

Resize truncation is pinned in ``test_images.py``; the caption and the whitespace rule in
``test_released_contract.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cosmos_test_inputs import DROID_STATE

from cosmos3_ros.engine.sampler import NATIVE_SIGMA_MAX, SamplingSettings, native_sigmas, schedule_table
from cosmos3_ros.errors import InputError, ProfileError
from cosmos3_ros.processing.predictor import ActionPredictor
from cosmos3_ros.processing.profiles import RELEASED_DROID_POLICY
from cosmos3_ros.processing.prompt import IMAGE_SYSTEM_PROMPT
from cosmos3_ros.processing.request import ActionRequest


def test_native_schedule_starts_from_the_float32_sigma_max():
    assert NATIVE_SIGMA_MAX == float(np.float32(0.999)) == pytest.approx(0.9990000128746033, abs=1e-16)
    assert native_sigmas(4)[0] == NATIVE_SIGMA_MAX
    sigmas, timesteps = schedule_table(SamplingSettings(steps=4, guidance=3.0, schedule="native", flow_shift=5.0))
    # the server's last sigma; from the float64 0.999 it would be 0.62468731 (1 ulp of float32 lower)
    assert np.float32(sigmas[-1]) == np.float32(0.62468737)
    assert timesteps == [999, 937, 833, 624]


def test_guidance_interval_is_strict_at_both_ends():
    settings = SamplingSettings(steps=4, guidance=3.0, guidance_interval=(937, 999))
    assert [settings.uses_cfg(0, t) for t in (999, 998, 938, 937)] == [False, True, True, False]


@pytest.fixture(scope="module")
def small(tiny_checkpoint):
    return ActionPredictor.load(tiny_checkpoint, "released_droid_policy",
                                overrides={"chunk": 4, "steps": 1, "noise_rng": "numpy", "seed": 11})


def test_numpy_noise_is_randomstate_reseeded_per_modality(small, droid_cameras):
    generation, _ = small.generation_request(ActionRequest(task="t", cameras=droid_cameras, state=DROID_STATE))
    layout = small.generator.layout_for(generation)
    video, action = small.generator.initial_noise(generation, layout)
    expected_video = np.random.RandomState(11).standard_normal(tuple(video.shape)).astype(np.float32)
    expected_action = np.random.RandomState(11).standard_normal(tuple(action.shape)).astype(np.float32)
    np.testing.assert_array_equal(video.numpy(), expected_video)  # a copy of numpy's values: exact by construction
    np.testing.assert_array_equal(action.numpy(), expected_action)
    assert action.numpy().ravel()[0] == video.numpy().ravel()[0]  # both streams start again from the seed


def test_torch_noise_stays_the_default_and_is_one_stream():
    assert RELEASED_DROID_POLICY.noise_rng == "torch"


def test_numpy_noise_changes_the_chunk_and_is_deterministic(small, droid_cameras):
    request = ActionRequest(task="t", cameras=droid_cameras, state=DROID_STATE)
    first, second = small.predict(request).actions, small.predict(request).actions
    np.testing.assert_array_equal(first, second)  # same process, same inputs, same kernels: identical
    torch_predictor = small.with_profile(small.profile.with_overrides(noise_rng="torch"))
    assert np.abs(torch_predictor.predict(request).actions - first).max() > 1e-3


def test_a_system_prompt_on_the_released_path_is_the_image_one(small):
    assert small.profile.system_prompt_kind == "image"
    ids = small.tokenizer.encode("t", True, small.profile.system_prompt_kind)
    assert IMAGE_SYSTEM_PROMPT in small.tokenizer._tok.decode(list(ids))


def test_fractional_fps_is_refused_for_the_state_row_contract():
    with pytest.raises(ProfileError, match=r"fps=7\.5; expected a whole number"):
        RELEASED_DROID_POLICY.with_overrides(fps=7.5)
    assert RELEASED_DROID_POLICY.with_overrides(fps=10).fps == 10


def test_numpy_noise_needs_a_32_bit_seed(small, droid_cameras):
    request = ActionRequest(task="t", cameras=droid_cameras, state=DROID_STATE, seed=2**33)
    with pytest.raises(InputError, match=r"seed 8589934592 with numpy noise; expected an integer in \[0, 2\*\*32\)"):
        small.predict(request)


def test_initial_noise_shapes_are_the_modalities_clean_latent_shapes(small, droid_cameras):
    generation, _ = small.generation_request(ActionRequest(task="t", cameras=droid_cameras, state=DROID_STATE))
    layout = small.generator.layout_for(generation)
    video, action = small.generator.initial_noise(generation, layout)
    assert tuple(video.shape) == (1, 48, *layout.latent_thw) and video.dtype == torch.float32
    assert tuple(action.shape) == (layout.action_rows, 64)
