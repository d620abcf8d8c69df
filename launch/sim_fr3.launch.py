"""policy_node driving the simulated FR3 (sim_fr3_node) in closed loop: what ``cosmos3-ros sim-loop`` runs, under
ros2 launch, to try a checkpoint and the execution parameters before a real arm.

    ros2 launch cosmos3_ros sim_fr3.launch.py checkpoint:=/models/Cosmos3-Nano-Policy-DROID
    ros2 topic pub --once --qos-durability transient_local /estop std_msgs/Bool "data: true"    # stop

The simulated arm publishes /joint_states (arm and fingers) and three rendered cameras under /sim_fr3/, follows
/policy_node/joint_trajectory like joint_trajectory_controller and takes finger commands on /fr3_gripper/command.
The node reads config/released_droid_policy.yaml (FR3 limits) with the simulator's topics on top; commands are on
(dry_run false) because the arm is simulated.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

TRUE_WORDS = ("true", "1", "yes", "on")
# the same topics as cosmos3_ros.tools.sim_loop (test/ros/test_launch_files.py checks they agree)
SIM_CAMERAS = ["/sim_fr3/wrist/image_raw", "/sim_fr3/exterior_1/image_raw", "/sim_fr3/exterior_2/image_raw"]
TRAJECTORY_TOPIC = "/policy_node/joint_trajectory"
FINGER_TOPIC = "/fr3_gripper/command"


def _nodes(context):
    policy = {
        "camera_topics": SIM_CAMERAS,
        "joint_state_topic": "/joint_states",
        "gripper_source": "joint_state",
        "gripper_joint": "fr3_finger_joint1",
        "gripper_output": "topic",
        "gripper_command_topic": FINGER_TOPIC,
        "frame_id": "fr3_link0",
        "dry_run": LaunchConfiguration("dry_run").perform(context).strip().lower() in TRUE_WORDS,
    }
    checkpoint = LaunchConfiguration("checkpoint").perform(context).strip()
    if checkpoint:
        policy["checkpoint"] = checkpoint
    task = LaunchConfiguration("task").perform(context).strip()
    if task:
        policy["task"] = task
    log_level = ["--ros-args", "--log-level", LaunchConfiguration("log_level")]
    return [
        Node(package="cosmos3_ros", executable="sim_fr3_node", name="sim_fr3",
             parameters=[{"trajectory_topic": TRAJECTORY_TOPIC, "camera_topics": SIM_CAMERAS,
                          "gripper_command_topic": FINGER_TOPIC}],
             arguments=log_level, output="screen"),
        Node(package="cosmos3_ros", executable="policy_node", name="policy_node",
             parameters=[LaunchConfiguration("config"), policy], arguments=log_level, output="screen",
             emulate_tty=True),
    ]


def generate_launch_description():
    default_config = PathJoinSubstitution([FindPackageShare("cosmos3_ros"), "config", "released_droid_policy.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config,
                              description="policy_node parameter file (the simulator's topics go on top)"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="checkpoint folder; empty = the parameter file's"),
        DeclareLaunchArgument("task", default_value="", description="task sentence; empty = wait for /task"),
        DeclareLaunchArgument("dry_run", default_value="false",
                              description="false: command the simulated arm; true: ActionChunk only"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug | info | warn | error"),
        OpaqueFunction(function=_nodes),
    ])
