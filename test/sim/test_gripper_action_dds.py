"""The node's gripper commands as ``GripperCommand`` action goals, against the simulated FR3's action server.

``control_msgs`` has no pip wheel: the action type here is the TEST-ONLY stand-in ``cosmos3_test_gripper_msgs``
built from the same definition (gripper_stand_in.py). With ``gripper_output: auto`` the node takes the action
path whenever the configured action type imports, as it does with control_msgs on a ROS install.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ros_graph import require_ros, ros_session, wait_for

require_ros()

from gripper_stand_in import build_stand_in  # noqa: E402

from cosmos3_ros.execution.gripper import GripperCommand  # noqa: E402
from cosmos3_ros.sim.loop import LoopConfig  # noqa: E402
from cosmos3_ros.tools.sim_loop import SIM_CAMERAS, _ros_parameters, policy_parameters  # noqa: E402

pytestmark = pytest.mark.rclpy


@pytest.fixture(scope="module")
def graph():
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from cosmos3_ros.ros.policy_node import PolicyNode
    from cosmos3_ros.ros.sim_fr3_node import SimFr3Node
    from cosmos3_ros.ros.spinning import Spinner, make_executor
    from cosmos3_ros.sim.scripted_policy import ScriptedActionModel, ScriptedPolicy

    action_type = build_stand_in()
    with ros_session():
        context = Context()
        rclpy.init(context=context)
        sim = SimFr3Node(context=context, parameter_overrides=[
            Parameter("gripper_action_type", value=action_type), Parameter("camera_topics", value=list(SIM_CAMERAS))])
        values = policy_parameters(LoopConfig(scenarios=False))
        values.update({"gripper_output": "auto", "gripper_action_type": action_type})
        node = PolicyNode(model=ScriptedActionModel(ScriptedPolicy()), context=context,
                          parameter_overrides=_ros_parameters(values))
        executor = make_executor(context)  # as policy_node spins
        executor.add_node(sim)
        executor.add_node(node)
        spinner = Spinner(executor, "gripper-test-spin")
        try:
            yield sim, node
        finally:
            spinner.stop()  # first: no callback runs while the node tears down
            node.shutdown(10.0)
            sim.destroy_node()
            node.destroy_node()
            context.try_shutdown()


def test_auto_takes_the_action_path_and_goals_reach_the_server(graph):
    sim, node = graph
    assert node._gripper_client is not None  # auto: the action type imports
    assert node._gripper_client.wait_for_server(timeout_sec=15.0)
    for closed, position in ((True, 0.0), (False, 0.04)):
        node.execution._publish("gripper", GripperCommand(closed, position, 20.0, 0.0, 0.9 if closed else 0.1))
        assert wait_for(lambda c=closed: sim.sim.gripper_closed_cmd is c, timeout=10.0)
        assert sim.sim.finger_target == pytest.approx(position)
    assert sim.sim.metrics.gripper_commands == 2 and sim.sim.metrics.gripper_toggles == 1
