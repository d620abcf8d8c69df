"""``predict_batch`` (bag windows): parallel preprocessing, one VAE call, same results as ``predict``."""

from __future__ import annotations

import numpy as np
import pytest

from cosmos3_ros.processing.predictor import ActionPredictor
from cosmos3_ros.processing.request import ActionRequest

RNG = np.random.default_rng(5)


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    return ActionPredictor.load(tiny_checkpoint, "base", overrides={"chunk": 8, "steps": 2, "resolution_tier": 256,
                                                                    "guidance": 2.0})


def _window(offset: int) -> ActionRequest:
    base = RNG.integers(0, 256, size=(128, 160, 3), dtype=np.uint8)
    frames = [np.roll(base, 3 * (i + offset), axis=1) for i in range(9)]
    return ActionRequest(task="wipe the table", mode="inverse_dynamics", video=frames, seed=11 + offset)


def test_batch_equals_one_by_one(predictor):
    windows = [_window(k) for k in range(3)]
    batched = predictor.predict_batch(windows)
    single = [predictor.predict(w) for w in windows]
    assert len(batched) == 3
    for b, s in zip(batched, single, strict=True):
        np.testing.assert_allclose(b.actions, s.actions, atol=1e-5, rtol=0)
        assert b.seed == s.seed and b.actions.shape == (8, 10)
        assert b.timings_ms["vae_encode"] > 0 and b.timings_ms["total"] >= b.timings_ms["denoise"]
    assert not np.allclose(batched[0].actions, batched[1].actions)


def test_empty_batch(predictor):
    assert predictor.predict_batch([]) == []
