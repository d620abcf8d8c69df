"""rclpy wiring inside the node process: callback groups (issue 10 bug 4) and the ROS-install skip logic (bug 5).

The callback-group test builds ``PolicyNode`` in this process (tiny checkpoint on CPU) to look at the rclpy
objects it made; everything else about the node is tested over DDS with the node as its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ros_graph import (
    REPO,
    ros_env_fixture,  # noqa: F401 (pytest fixtures)
    ros_missing_reason,
)

HERE = Path(__file__).resolve().parent


def run_graph_module_without_messages(tmp_path, ci):
    """Run test_node_graph.py (+ a ROS-free module) in a fresh pytest where cosmos3_ros_msgs cannot be imported."""
    shadow = tmp_path / "shadow" / "cosmos3_ros_msgs"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('cosmos3_ros_msgs is not built here')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(shadow.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(HERE / "test_node_graph.py"),
         str(HERE / "test_docs.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_rclpy_tests_skip_with_the_reason_when_the_message_package_is_missing(tmp_path):
    result = run_graph_module_without_messages(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed, 1 skipped in" in result.stdout and " error" not in result.stdout.splitlines()[-1], result.stdout
    assert "cosmos3_ros_msgs" in result.stdout and "scripts/setup_ros.sh" in result.stdout


def test_rclpy_tests_fail_under_ci_when_ros_is_missing(tmp_path):
    result = run_graph_module_without_messages(tmp_path, ci=True)
    assert result.returncode != 0
    assert "CI=true but ROS 2 is not usable" in result.stdout, result.stdout


@pytest.mark.rclpy
def test_timers_and_services_share_the_parameter_services_group(ros_env, tiny_checkpoint):
    if ros_missing_reason() is not None:
        pytest.skip(ros_missing_reason())
    import rclpy
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from cosmos3_ros.ros.policy_node import PolicyNode

    context = Context()
    rclpy.init(context=context)
    node = PolicyNode(context=context, namespace="/wiring", parameter_overrides=[
        Parameter("checkpoint", value=str(tiny_checkpoint)), Parameter("device", value="cpu")])
    try:
        group = node.default_callback_group
        assert isinstance(group, MutuallyExclusiveCallbackGroup)
        names = {service.srv_name for service in node.services}
        assert {"policy_node/set_parameters", "~/pause"} <= names, names
        # rclpy's parameter services, our pause / resume / clear services and the snapshot and diagnostics timers:
        # one exclusive group. The e-stop / release services and the execution timer are the safety group's, by
        # design: they must never wait behind a snapshot or a parameter change.
        safety = node._safety_group
        assert isinstance(safety, MutuallyExclusiveCallbackGroup) and safety is not group
        safety_services = {"~/estop", "~/release"}

        def check() -> None:
            for service in node.services:
                expected = safety if service.srv_name in safety_services else group
                assert service.callback_group is expected, service.srv_name
            assert {timer.callback_group for timer in node.timers} <= {group, safety}
            in_group = [timer for timer in node.timers if timer.callback_group is group]
            assert len(in_group) == 2, in_group

        check()
        # input buffers run in parallel (reentrant); the e-stop and heartbeat inputs are the safety group's
        assert all(isinstance(sub.callback_group, ReentrantCallbackGroup) or sub.callback_group is safety
                   for sub in node.subscriptions)
        # A rate change recreates the snapshot timer: in the same group.
        assert node.set_parameters([Parameter("inference_rate", value=3.0)])[0].successful
        check()
    finally:
        assert node.shutdown()
        node.destroy_node()
        context.try_shutdown()
