"""README.md documents every parameter (the table generated from PARAMETER_SPEC) and every topic."""

from pathlib import Path

from cosmos3_ros.runtime.parameters import markdown_table

DOC = Path(__file__).resolve().parents[2] / "README.md"


def test_the_parameter_table_is_the_generated_one():
    assert markdown_table() in DOC.read_text(), (
        "README.md is out of date: paste the output of `python -m cosmos3_ros.runtime.parameters`"
    )


def test_every_output_topic_and_service_is_documented():
    text = DOC.read_text()
    for name in ("~/action_chunk", "~/joint_trajectory", "~/rollout/image", "/diagnostics", "~/pause", "~/resume",
                 "~/clear_buffers", "camera_topics", "joint_state_topic", "task_topic", "actions_topic"):
        assert f"`{name}" in text, name


def test_launch_commands_are_documented():
    text = DOC.read_text()
    assert "ros2 launch cosmos3_ros policy.launch.py" in text
    assert "ros2 launch cosmos3_ros inverse_dynamics_replay.launch.py" in text
    assert "colcon build" in text and "ln -s cosmos3_ros/msg" in text
