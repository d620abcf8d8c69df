"""Prefix conditioning: action rows given as clean rows in policy mode come back as given; the rest is generated.

Runs the real processing and engine on the tiny random checkpoint (CPU).
"""

from __future__ import annotations

import numpy as np
import pytest

from cosmos3_ros.errors import InputError
from cosmos3_ros.processing.predictor import ActionPredictor
from cosmos3_ros.processing.request import ActionRequest

STATE = [0.1, -0.6, 0.05, -2.2, 0.0, 1.6, 0.8, 0.25]


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    return ActionPredictor.load(tiny_checkpoint, "released_droid_policy")


def _prefix(rows: int) -> np.ndarray:
    k = np.arange(1, rows + 1, dtype=np.float32)[:, None]
    arm = np.asarray(STATE[:7], dtype=np.float32)[None, :] + 0.01 * k
    gripper = np.full((rows, 1), 0.75, dtype=np.float32)
    return np.concatenate([arm, gripper], axis=1)


def test_prefix_rows_are_clean_rows_after_the_state_row(predictor, droid_cameras):
    generation, _ = predictor.generation_request(
        ActionRequest(task="t", cameras=droid_cameras, state=STATE, action_prefix=_prefix(5)))
    assert generation.clean_rows == (0, 1, 2, 3, 4, 5)
    # model space: the gripper column is flipped (1 - g), the rest in physical units
    np.testing.assert_allclose(generation.clean_actions[1:6, :7].numpy(), _prefix(5)[:, :7], atol=1e-7)
    np.testing.assert_allclose(generation.clean_actions[1:6, 7].numpy(), 0.25, atol=1e-7)


def test_prediction_returns_the_prefix_and_generates_the_rest(predictor, droid_cameras):
    prefix = _prefix(6)
    with_prefix = predictor.predict(ActionRequest(task="t", cameras=droid_cameras, state=STATE, action_prefix=prefix,
                                                  seed=3))
    without = predictor.predict(ActionRequest(task="t", cameras=droid_cameras, state=STATE, seed=3))
    assert with_prefix.actions.shape == (32, 8)
    # float32 round trip through the gripper flip (1 - (1 - g)): equal up to one rounding step
    np.testing.assert_allclose(with_prefix.actions[:6], prefix, atol=1e-6)
    rest = with_prefix.actions[6:]
    assert np.all(np.isfinite(rest))
    # the generated rows are not copies of the prefix, and the conditioning changed them (same noise seed)
    assert np.abs(rest - prefix[-1]).max() > 1e-3
    assert np.abs(rest - without.actions[6:]).max() > 1e-4


def test_prefix_is_refused_outside_policy_mode_or_when_too_long(predictor, droid_cameras):
    with pytest.raises(InputError, match="fewer than the chunk"):
        predictor.generation_request(ActionRequest(task="t", cameras=droid_cameras, state=STATE,
                                                   action_prefix=np.zeros((32, 8))))
    with pytest.raises(InputError, match="action_prefix: 7 columns; expected 8"):
        predictor.generation_request(ActionRequest(task="t", cameras=droid_cameras, state=STATE,
                                                   action_prefix=np.zeros((4, 7))))
    with pytest.raises(InputError, match="only taken in policy mode"):
        predictor.generation_request(ActionRequest(task="t", mode="forward_dynamics", cameras=droid_cameras,
                                                   state=STATE, actions=np.zeros((32, 8)),
                                                   action_prefix=np.zeros((4, 8))))
