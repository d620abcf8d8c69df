"""Action statistics, (de-)normalisation, gripper handling and action files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosmos3_ros.errors import InputError, ProfileError
from cosmos3_ros.processing.actions import (
    ActionStats,
    as_action_array,
    denormalize,
    fit_to_length,
    load_action_file,
    normalize,
    to_model_space,
    to_physical,
)

RNG = np.random.default_rng(0)
STATS = ActionStats.from_mapping({
    "mean": [0.1, -0.2, 0.3], "std": [0.5, 2.0, 1.0], "min": [-1.0, -3.0, 0.0], "max": [1.0, 5.0, 2.0],
    "q01": [-0.9, -2.5, 0.1], "q99": [0.9, 4.0, 1.9],
})


@pytest.mark.parametrize("method", ["meanstd", "minmax", "quantile", "quantile_rot"])
def test_denormalize_inverts_normalize_inside_the_range(method):
    physical = np.array([[0.2, 0.5, 1.0], [-0.5, -1.0, 0.5]], dtype=np.float32)
    model = normalize(physical, method, STATS)
    np.testing.assert_allclose(denormalize(model, method, STATS), physical, atol=1e-6)


def test_quantile_formula_and_clamp():
    model = normalize(np.array([[0.9, 10.0, 0.1]], dtype=np.float32), "quantile_rot", STATS)
    np.testing.assert_allclose(model, [[1.0, 1.0, -1.0]], atol=1e-6)  # q99 -> 1, beyond q99 clamps, q01 -> -1
    np.testing.assert_allclose(denormalize(np.zeros((1, 3), np.float32), "quantile", STATS), [[0.0, 0.75, 1.0]],
                               atol=1e-6)


def test_meanstd_and_minmax_formulas():
    np.testing.assert_allclose(denormalize(np.ones((1, 3), np.float32), "meanstd", STATS), [[0.6, 1.8, 1.3]],
                               atol=1e-6)
    np.testing.assert_allclose(denormalize(-np.ones((1, 3), np.float32), "minmax", STATS), [[-1.0, -3.0, 0.0]],
                               atol=1e-6)


def test_stats_file_prefers_global_raw_then_global_then_top_level(tmp_path):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"global_raw": {"q01": [0.0], "q99": [1.0]}, "global": {"q01": [5.0], "q99": [6.0]},
                                "q01": [7.0], "q99": [8.0]}))
    assert ActionStats.from_file(path, "quantile_rot").q01.tolist() == [0.0]
    assert ActionStats.from_file(path, "quantile").q01.tolist() == [5.0]
    path.write_text(json.dumps({"mean": [1.0, 2.0], "std": [3.0, 4.0]}))
    assert ActionStats.from_file(path, "meanstd").std.tolist() == [3.0, 4.0]


def test_stats_of_the_wrong_width_are_refused():
    with pytest.raises(ProfileError, match=r"'q01' has 3 values; expected 10"):
        STATS.check("quantile", 10)


def test_stats_missing_what_the_method_needs_are_refused():
    with pytest.raises(ProfileError, match="needs 'mean'"):
        ActionStats.from_mapping({"q01": [0.0], "q99": [1.0]}).check("meanstd", 1)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object"), ('{"foo": [1]}', "none of the keys"),
    ('{"mean": [1, NaN]}', "non-finite"),
])
def test_bad_stats_files(tmp_path, content, message):
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        ActionStats.from_file(path)


def test_both_action_file_formats(tmp_path):
    rows = RNG.normal(size=(3, 10)).round(4).tolist()
    (tmp_path / "a.json").write_text(json.dumps({"shape": [3, 10], "dtype": "float32", "data": rows}))
    (tmp_path / "b.json").write_text(json.dumps({"action_chunks": [rows[:2], rows[2:]]}))
    np.testing.assert_allclose(load_action_file(tmp_path / "a.json"), rows, atol=1e-6)
    np.testing.assert_allclose(load_action_file(tmp_path / "b.json"), rows, atol=1e-6)


def test_action_file_shape_mismatch_is_named(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"shape": [2, 10], "data": [[0.0] * 10]}))
    with pytest.raises(InputError, match=r"shape \[1, 10\] but 'shape' says \[2, 10\]"):
        load_action_file(tmp_path / "a.json")


def test_short_sequences_repeat_the_last_step_and_long_ones_are_truncated():
    actions = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(fit_to_length(actions, 5), [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    np.testing.assert_array_equal(fit_to_length(actions, 2), [[0, 1], [2, 3]])


def test_wrong_action_width_is_an_error():
    with pytest.raises(InputError, match="actions: 9 columns; expected 10"):
        as_action_array(np.zeros((4, 9)), 10, "actions")


def test_model_space_pads_to_64_and_back():
    physical = RNG.uniform(-0.5, 0.5, size=(4, 3)).astype(np.float32)
    physical[:, 2] += 0.5  # the gripper column lives in [0, 1]
    model = to_model_space(physical, gripper_dims=(2,), normalization="meanstd", stats=STATS, model_width=64)
    assert model.shape == (4, 64) and not model[:, 3:].any()
    back = to_physical(model, raw_action_dim=3, gripper_dims=(2,), normalization="meanstd", stats=STATS,
                       binarize_gripper=False)
    np.testing.assert_allclose(back, physical, atol=1e-6)


def test_gripper_output_is_clamped_to_its_documented_range():
    model = np.zeros((3, 64), dtype=np.float32)
    model[:, 7] = [1.3, 0.4, -0.2]  # model space holds 1 - g: g = -0.3, 0.6, 1.2 before the clamp
    out = to_physical(model, raw_action_dim=8, gripper_dims=(7,), normalization=None, stats=None,
                      binarize_gripper=False)
    np.testing.assert_allclose(out[:, 7], [0.0, 0.6, 1.0], atol=1e-7)


@pytest.mark.parametrize(("value", "message"), [
    ([[1, 2], [3]], "rows of different lengths"), ([["a", "b"]], "not a numeric"),
    ([[1e30, 0.0]], "expected \\|x\\| <= 10000"), ([[float("nan"), 0.0]], "expected finite numbers"),
])
def test_bad_action_values_are_named(value, message):
    with pytest.raises(InputError, match=message):
        as_action_array(value, 2, "actions")
