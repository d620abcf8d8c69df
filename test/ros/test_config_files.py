"""Every key of every config/*.yaml is a parameter of the node, with the exact ROS type rclpy will infer."""

from pathlib import Path

import pytest
import yaml

from cosmos3_ros.processing.profiles import get_profile
from cosmos3_ros.runtime.parameters import PARAMETERS, ROS_BUILTIN_PARAMETERS, resolve_parameters
from cosmos3_ros.runtime.safety import JointSafetyLimits

CONFIG = Path(__file__).resolve().parents[2] / "config"
FILES = sorted(CONFIG.glob("*.yaml"))


def parameters_of(path):
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict) and len(doc) == 1, f"{path.name}: expected one node section"
    (node, section), = doc.items()
    assert node in ("/**", "policy_node", "/**/policy_node"), f"{path.name}: section {node!r} would not reach the node"
    assert set(section) == {"ros__parameters"}, f"{path.name}: expected only ros__parameters under {node!r}"
    return section["ros__parameters"]


def test_the_three_documented_configs_exist():
    assert {p.name for p in FILES} >= {"released_droid_policy.yaml", "base_droid_lerobot.yaml",
                                       "inverse_dynamics_replay.yaml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_key_is_declared_and_typed_as_the_spec_says(path):
    values = parameters_of(path)
    unknown = sorted(set(values) - set(PARAMETERS) - set(ROS_BUILTIN_PARAMETERS))
    assert not unknown, f"{path.name}: keys {unknown} are not node parameters"
    for name, value in values.items():
        if name in PARAMETERS:
            # rclpy types [] as a byte array and 3 as an integer: both would fail to declare.
            assert value != [], f"{path.name}: {name}: [] cannot be typed by rclpy; omit the key instead"
            PARAMETERS[name].validate(value)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_configs_are_consistent_with_their_profile(path):
    values = resolve_parameters(parameters_of(path))
    profile = get_profile(values["profile"])
    assert len(values["camera_topics"]) == len(profile.cameras)
    if profile.action_space == "joint_position":
        assert len(values["joint_names"]) == profile.raw_action_dim - len(profile.gripper_dims)
        JointSafetyLimits.from_parameters(values["joint_names"], values["joint_position_min"],
                                          values["joint_position_max"], values["max_joint_step"])
    assert values["dry_run"] is True, f"{path.name}: shipped configs must not command the robot"
    if values["action_normalization"] not in ("", "none"):
        assert values["action_stats_file"] or values["action_stats_q01"], f"{path.name}: normalisation without stats"


def test_inverse_dynamics_config_buffers_enough_frames():
    values = resolve_parameters(parameters_of(CONFIG / "inverse_dynamics_replay.yaml"))
    profile = get_profile(values["profile"])
    seconds = profile.chunk / profile.fps
    assert values["mode"] == "inverse_dynamics"
    assert values["max_buffered_messages"] >= 60 * seconds  # 60 Hz cameras
