"""The README's ROS 2 workspace, built with colcon and run from its install tree.

The workspace is laid out as the README says (the repository as ``src/cosmos3_ros``, the message package linked
next to it as ``src/cosmos3_ros_msgs``) and built with ``python -m colcon build --symlink-install`` against the
ROS 2 Jazzy wheels (colcon from PyPI, installed by scripts/setup_ros.sh). Then, in a shell that sourced
``install/setup.bash``, as on a robot computer: the package index finds both packages, the message imports from
the workspace and serialises, and ``policy_node`` starts from ``lib/cosmos3_ros/`` (where ``ros2 run`` looks)
with the parameter file the launch files use and joins the graph. The launch files themselves cannot run here
(no wheel carries ``launch``); test_launch_files.py checks their source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ros_graph import (  # noqa: F401 (pytest fixtures)
    REPO,
    ROS_MODULES,
    NodeProcess,
    require_ros,
    ros_env_fixture,
    ros_peer_fixture,
    wait_for,
    write_params,
)

require_ros((*ROS_MODULES, "colcon_core", "colcon_ros", "colcon_cmake", "colcon_bash"))

pytestmark = pytest.mark.rclpy

PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"
# What a checkout holds that is not part of the package sources (and would make the copy slow: the venv).
NOT_SOURCES = shutil.ignore_patterns(".*", "build", "install", "log", "__pycache__", "out", "demo_out", "*.egg-info")


def bash(command: str, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``command`` in bash (with ``install/setup.bash`` sourced if the command says so), output captured."""
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, ros_env):
    """``<tmp>/cosmos_ws`` built with colcon; returns (workspace, environment after sourcing setup.bash)."""
    ws = tmp_path_factory.mktemp("colcon") / "cosmos_ws"
    (ws / "src").mkdir(parents=True)
    shutil.copytree(REPO, ws / "src" / "cosmos3_ros", ignore=NOT_SOURCES, symlinks=True)
    (ws / "src" / "cosmos3_ros_msgs").symlink_to(Path("cosmos3_ros") / "msg")  # README: ln -s cosmos3_ros/msg ...
    venv = Path(sys.prefix)
    env = {**os.environ, **ros_env, "CMAKE_PREFIX_PATH": str(venv)}
    built = bash(f"{sys.executable} -m colcon build --symlink-install", ws, env)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "2 packages finished" in built.stdout, built.stdout
    sourced = bash("source install/setup.bash && env -0", ws, env, timeout=60)
    assert sourced.returncode == 0, sourced.stderr
    ws_env = dict(item.split("=", 1) for item in sourced.stdout.split("\0") if "=" in item)
    return ws, ws_env


def test_the_install_tree_holds_what_ros2_run_and_ros2_launch_look_for(workspace):
    ws, _ = workspace
    install = ws / "install"
    share = install / "cosmos3_ros" / "share" / "cosmos3_ros"
    for script in ("policy_node", "sim_fr3_node", "cosmos3-ros"):
        path = install / "cosmos3_ros" / "lib" / "cosmos3_ros" / script
        assert os.access(path, os.X_OK), path
        # `python -m colcon build` (README) makes the scripts start the venv's interpreter, which sees torch.
        assert path.read_text().splitlines()[0] == f"#!{sys.executable}", path
    assert sorted(p.name for p in (share / "launch").iterdir()) == sorted(p.name for p in (REPO / "launch").iterdir())
    assert {p.name for p in (REPO / "config").iterdir()} <= {p.name for p in (share / "config").iterdir()}
    assert (share / "package.xml").read_text() == (REPO / "package.xml").read_text()
    for package in ("cosmos3_ros", "cosmos3_ros_msgs"):
        assert (install / package / "share" / "ament_index" / "resource_index" / "packages" / package).is_file()
    assert (install / "cosmos3_ros_msgs" / "share" / "cosmos3_ros_msgs" / "msg" / "ActionChunk.msg").is_file()


def test_a_sourced_shell_finds_both_packages_in_the_workspace(workspace):
    ws, ws_env = workspace
    probe = (
        "from ament_index_python.packages import get_package_share_directory as share\n"
        "from rclpy.serialization import deserialize_message, serialize_message\n"
        "import cosmos3_ros, cosmos3_ros_msgs.msg as m\n"
        "chunk = m.ActionChunk(chunk_length=2, action_dim=1, data=[0.25, -0.5], dimension_names=['x'])\n"
        "back = deserialize_message(serialize_message(chunk), m.ActionChunk)\n"
        "assert list(back.data) == [0.25, -0.5] and list(back.dimension_names) == ['x']\n"
        "print(share('cosmos3_ros')); print(share('cosmos3_ros_msgs'))\n"
        "print(cosmos3_ros.__file__); print(m.__file__)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ws, env=ws_env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    share_py, share_msgs, package_file, msgs_file = result.stdout.split()
    install = ws / "install"
    assert Path(share_py) == install / "cosmos3_ros" / "share" / "cosmos3_ros"
    assert Path(share_msgs) == install / "cosmos3_ros_msgs" / "share" / "cosmos3_ros_msgs"
    # The workspace's sources and messages, not the venv's editable install of this checkout.
    assert Path(package_file).resolve().is_relative_to(ws / "src" / "cosmos3_ros"), package_file
    assert Path(msgs_file).is_relative_to(install / "cosmos3_ros_msgs" / "lib" / PYTHON), msgs_file


def test_policy_node_runs_from_the_install_tree(workspace, ros_peer, tiny_checkpoint, tmp_path):
    ws, ws_env = workspace
    share = ws / "install" / "cosmos3_ros" / "share" / "cosmos3_ros"
    namespace = "/colcon_ws"
    # The launch files' default parameter file, from the install tree, with the test's checkpoint and device.
    params = write_params(tmp_path / "params.yaml", {"checkpoint": str(tiny_checkpoint), "device": "cpu"},
                          base=share / "config" / "released_droid_policy.yaml")
    process = NodeProcess(params, tmp_path / "node.log", ws_env, ros_args=("-r", f"__ns:={namespace}"),
                          executable=str(ws / "install" / "cosmos3_ros" / "lib" / "cosmos3_ros" / "policy_node"))
    try:
        process.wait_for_log(r"policy with profile released_droid_policy", timeout=240)
        assert wait_for(lambda: ("policy_node", namespace) in ros_peer.node.get_node_names_and_namespaces(),
                        timeout=30), process.log()
        topic = f"{namespace}/policy_node/action_chunk"
        assert wait_for(lambda: dict(ros_peer.node.get_topic_names_and_types()).get(topic)
                        == ["cosmos3_ros_msgs/msg/ActionChunk"], timeout=30)
    finally:
        code, seconds = process.stop()
    assert code == 0 and seconds < 5, process.log()
    assert "Traceback" not in process.log()
