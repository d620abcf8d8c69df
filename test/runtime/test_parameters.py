"""PARAMETER_SPEC: the one source of truth for the node's parameters."""

import pytest

from cosmos3_ros.errors import InputError
from cosmos3_ros.runtime.parameters import (
    PARAMETER_SPEC,
    PARAMETER_TYPES,
    PARAMETERS,
    markdown_table,
    resolve_parameters,
)


def test_every_default_is_valid_for_its_own_spec():
    for spec in PARAMETER_SPEC:
        assert spec.type in PARAMETER_TYPES, spec.name
        spec.validate(spec.default)
        assert spec.description and spec.group


def test_names_are_unique():
    assert len(PARAMETERS) == len(PARAMETER_SPEC)


def test_runtime_changeable_parameters_are_exactly_rate_task_guidance_dry_run_and_statistics():
    runtime = {spec.name for spec in PARAMETER_SPEC if spec.runtime}
    assert runtime == {
        "inference_rate", "snapshot_trigger", "task", "guidance", "dry_run", "action_normalization",
        "action_stats_file", "action_stats_mean", "action_stats_std", "action_stats_min", "action_stats_max",
        "action_stats_q01", "action_stats_q99",
    }
    assert all(spec.read_only for spec in PARAMETER_SPEC if not spec.runtime)


def test_dry_run_defaults_to_true():
    assert PARAMETERS["dry_run"].default is True


def test_an_integer_for_a_double_is_rejected_with_a_hint():
    expected = r"parameter 'inference_rate': 3 is a int; expected a double \(write 1.0, not 1\)"
    with pytest.raises(InputError, match=expected):
        PARAMETERS["inference_rate"].validate(3)


def test_a_bool_is_not_an_integer():
    with pytest.raises(InputError, match="expected a integer"):
        PARAMETERS["steps"].validate(True)


def test_out_of_range_values_are_rejected():
    with pytest.raises(InputError, match=r"parameter 'inference_rate': 0.0 is out of range; expected \[0.01, 100.0\]"):
        PARAMETERS["inference_rate"].validate(0.0)


def test_choices_are_enforced():
    with pytest.raises(InputError, match=r"parameter 'mode': 'plan' is not allowed; expected one of"):
        PARAMETERS["mode"].validate("plan")


def test_double_arrays_need_floats():
    with pytest.raises(InputError, match=r"elements \[1, 2\] are not floats \(write 1.0, not 1\)"):
        PARAMETERS["action_stats_q01"].validate([1, 2])
    assert PARAMETERS["action_stats_q01"].validate([1.0, 2.0]) == (1.0, 2.0)


def test_non_empty_lists():
    with pytest.raises(InputError, match="parameter 'camera_topics': is empty"):
        PARAMETERS["camera_topics"].validate([])


def test_resolve_fills_defaults_and_rejects_unknown_names():
    values = resolve_parameters({"checkpoint": "/ck", "use_sim_time": True})
    assert values["checkpoint"] == "/ck" and values["inference_rate"] == 2.0
    assert values["joint_names"] == tuple(f"fr3_joint{i}" for i in range(1, 8))
    with pytest.raises(InputError, match=r"unknown parameter\(s\) \['infrence_rate'\]"):
        resolve_parameters({"infrence_rate": 1.0})


def test_markdown_table_lists_every_parameter():
    table = markdown_table()
    for spec in PARAMETER_SPEC:
        assert f"| `{spec.name}` |" in table
