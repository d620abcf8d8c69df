"""Launch files: declared arguments (checked on the source: the launch packages come with ROS 2)."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def declared_arguments(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DeclareLaunchArgument":
            names.append(node.args[0].value)
    return names


@pytest.mark.parametrize("name, expected", [
    ("policy.launch.py", {"config", "checkpoint", "mode", "namespace", "use_sim_time", "dry_run", "log_level"}),
    ("inverse_dynamics_replay.launch.py", {"bag", "config", "checkpoint", "rate", "clock_rate", "start_delay",
                                            "start_paused", "namespace", "log_level"}),
    ("sim_fr3.launch.py", {"config", "checkpoint", "task", "dry_run", "log_level"}),
])
def test_arguments_are_declared_once_and_all_used(name, expected):
    path = REPO / "launch" / name
    names = declared_arguments(path)
    assert len(names) == len(set(names))
    assert set(names) == expected
    text = path.read_text()
    unused = [n for n in names if text.count(f'"{n}"') < 2]  # declared once, read at least once
    assert not unused, f"{name}: arguments {unused} are declared but never read"


def test_replay_runs_bag_play_with_clock_and_the_node_on_sim_time():
    text = (REPO / "launch" / "inverse_dynamics_replay.launch.py").read_text()
    assert '"ros2", "bag", "play"' in text and '"--clock"' in text
    assert '"use_sim_time": True' in text and '"dry_run": True' in text


def test_the_simulated_arm_launch_wires_the_topics_sim_loop_uses():
    from cosmos3_ros.tools import sim_loop

    tree = ast.parse((REPO / "launch" / "sim_fr3.launch.py").read_text())
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                 and node.targets[0].id in ("SIM_CAMERAS", "TRAJECTORY_TOPIC", "FINGER_TOPIC")}
    assert constants == {"SIM_CAMERAS": list(sim_loop.SIM_CAMERAS), "TRAJECTORY_TOPIC": sim_loop.TRAJECTORY_TOPIC,
                         "FINGER_TOPIC": sim_loop.FINGER_TOPIC}
    text = (REPO / "launch" / "sim_fr3.launch.py").read_text()
    assert 'executable="sim_fr3_node"' in text and 'executable="policy_node"' in text


def test_default_configs_exist():
    for config in ("released_droid_policy.yaml", "inverse_dynamics_replay.yaml"):
        assert (REPO / "config" / config).is_file()
        assert any(config in (REPO / "launch" / f).read_text() for f in ("policy.launch.py",
                                                                          "inverse_dynamics_replay.launch.py"))
