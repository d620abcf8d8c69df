"""Inverse dynamics on a recorded bag: ``ros2 bag play --clock`` plus policy_node with ``use_sim_time:=true``.

    ros2 launch cosmos3_ros inverse_dynamics_replay.launch.py bag:=/data/episode_0001 \
        checkpoint:=/models/Cosmos3-Nano-Policy-DROID

The bag starts after ``start_delay`` seconds so the model has loaded before the first frame (raise it for the
full-size checkpoint, or use ``start_paused:=true`` and resume the player with
``ros2 service call /rosbag2_player/resume rosbag2_interfaces/srv/Resume``).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, TimerAction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

TRUE_WORDS = ("true", "1", "yes", "on")


def _replay(context):
    overrides = {"use_sim_time": True, "dry_run": True, "mode": "inverse_dynamics"}
    checkpoint = LaunchConfiguration("checkpoint").perform(context).strip()
    if checkpoint:
        overrides["checkpoint"] = checkpoint
    play = ["ros2", "bag", "play", LaunchConfiguration("bag").perform(context),
            "--clock", LaunchConfiguration("clock_rate").perform(context),
            "--rate", LaunchConfiguration("rate").perform(context)]
    if LaunchConfiguration("start_paused").perform(context).strip().lower() in TRUE_WORDS:
        play.append("--start-paused")
    delay = float(LaunchConfiguration("start_delay").perform(context))
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
        ),
        TimerAction(period=delay, actions=[ExecuteProcess(cmd=play, output="screen")]),
    ]


def generate_launch_description():
    default_config = PathJoinSubstitution([FindPackageShare("cosmos3_ros"), "config", "inverse_dynamics_replay.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="bag folder or file (mcap / sqlite3) to replay"),
        DeclareLaunchArgument("config", default_value=default_config, description="parameter file"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="checkpoint folder; empty = the parameter file's"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate (slower if the GPU lags)"),
        DeclareLaunchArgument("clock_rate", default_value="100", description="/clock messages per second"),
        DeclareLaunchArgument("start_delay", default_value="20.0",
                              description="seconds between starting the node and playing the bag"),
        DeclareLaunchArgument("start_paused", default_value="false", description="start the player paused"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug | info | warn | error"),
        OpaqueFunction(function=_replay),
    ])
