"""Start policy_node with a parameter file; launch arguments override a few of its values.

    ros2 launch cosmos3_ros policy.launch.py checkpoint:=/models/Cosmos3-Nano-Policy-DROID
    ros2 launch cosmos3_ros policy.launch.py config:=/path/to/my.yaml mode:=forward_dynamics namespace:=arm
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

TRUE_WORDS = ("true", "1", "yes", "on")


def _as_bool(text):
    return text.strip().lower() in TRUE_WORDS


def _policy_node(context):
    # Empty checkpoint / mode arguments keep the parameter file's values, so they are added only when given.
    overrides = {
        "use_sim_time": _as_bool(LaunchConfiguration("use_sim_time").perform(context)),
        "dry_run": _as_bool(LaunchConfiguration("dry_run").perform(context)),
    }
    for name in ("checkpoint", "mode"):
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            overrides[name] = value
    return [
        Node(
            package="cosmos3_ros",
            executable="policy_node",
            name="policy_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("config"), overrides],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    default_config = PathJoinSubstitution([FindPackageShare("cosmos3_ros"), "config", "released_droid_policy.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config,
                              description="parameter file (see config/*.yaml)"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="checkpoint folder; empty = the parameter file's"),
        DeclareLaunchArgument("mode", default_value="",
                              description="policy | forward_dynamics | inverse_dynamics; empty = the parameter file's"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
        DeclareLaunchArgument("dry_run", default_value="true",
                              description="true: publish ActionChunk only, never a JointTrajectory"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug | info | warn | error"),
        OpaqueFunction(function=_policy_node),
    ])
