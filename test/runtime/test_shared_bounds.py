"""The library and the node refuse out-of-bounds settings with the CLI's messages, before any weight is read.

The checkpoint here has every config file and no weight file: a check that came after the weights would fail with
a missing-shard error instead of the expected one.
"""

from __future__ import annotations

import shutil

import pytest

from cosmos3_ros.errors import Cosmos3Error
from cosmos3_ros.processing.predictor import ActionPredictor
from cosmos3_ros.runtime.node_core import load_action_model
from cosmos3_ros.runtime.parameters import resolve_parameters


@pytest.fixture(scope="module")
def configs_only(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("configs_only") / "ckpt"
    shutil.copytree(tiny_checkpoint, root, ignore=shutil.ignore_patterns("*.safetensors"))
    return root


@pytest.mark.parametrize(("overrides", "message"), [
    ({"chunk": 100000}, r"chunk=100000; expected an integer in \[1, 128\]"),
    ({"steps": 100000}, r"steps=100000; expected an integer in \[1, 1000\]"),
    ({"fps": float("inf")}, r"fps=inf; expected a finite number in \(0, 120\]"),
    ({"guidance": 1e30}, r"guidance=1e\+30; expected a finite number in \[0, 100\]"),
    ({"flow_shift": float("nan")}, r"flow_shift=nan; expected a finite number in \(0, 100\]"),
    ({"noise_rng": "dice"}, r"noise_rng='dice'; expected one of \['torch', 'numpy'\]"),
])
def test_library_checks_bounds_before_weights(configs_only, overrides, message):
    with pytest.raises(Cosmos3Error, match=message):
        ActionPredictor.load(configs_only, "released_droid_policy", overrides=overrides)


def test_library_checks_the_device_before_weights(configs_only):
    with pytest.raises(Cosmos3Error, match="device 'banana'; expected cpu, cuda or cuda:N"):
        ActionPredictor.load(configs_only, "released_droid_policy", device="banana")


def test_node_refuses_a_bad_device_before_weights(configs_only):
    values = resolve_parameters({"checkpoint": str(configs_only), "device": "banana"})
    with pytest.raises(Cosmos3Error, match="device 'banana'"):
        load_action_model(values)


def test_node_parameter_ranges_are_the_shared_bounds():
    from cosmos3_ros.processing import limits
    from cosmos3_ros.runtime.parameters import PARAMETERS

    assert PARAMETERS["steps"].range == (0, limits.MAX_STEPS)
    assert PARAMETERS["guidance"].range == (-1.0, limits.MAX_GUIDANCE)
    with pytest.raises(Cosmos3Error, match="out of range"):
        resolve_parameters({"guidance": 1e30})
