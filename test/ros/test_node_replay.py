"""Replay: a recorded bag played into policy_node in inverse_dynamics under sim time; its chunk equals bag-infer's.

``ros2 bag play`` has no wheel, so a small player (rosbags reader -> rclpy publishers of the recorded CDR bytes,
plus /clock at the log times) stands in for it. The bag holds exactly one window (33 frames at 15 Hz of three
jpeg cameras and the joints), so the node can only answer with the window bag-infer computes as window 0.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from ros_graph import (  # noqa: F401 (pytest fixtures)
    REPO,
    BagPlayer,
    DiagnosticsListener,
    droid_params,
    require_ros,
    ros_env_fixture,
    ros_peer_fixture,
    start_node_fixture,
    wait_for,
)

require_ros()

from cosmos3_ros_msgs.msg import ActionChunk  # noqa: E402

sys.path.insert(0, str(REPO / "test" / "tools"))
from bag_fixtures import JOINT_NAMES, BagSpec, CameraSpec, write_bag  # noqa: E402

pytestmark = pytest.mark.rclpy

NS = "/replay"
TASK = "push the yellow square to the right"
CAMERAS = ("/wrist/image_raw/compressed", "/ext1/image_raw/compressed", "/ext2/image_raw/compressed")


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    frames = 33  # chunk + 1 frames at 15 Hz: one inverse-dynamics window
    spec = BagSpec(cameras=[CameraSpec(topic, 15.0, frames, encoding="jpeg") for topic in CAMERAS],
                   joint_topic="/joint_states", joint_rate_hz=15.0, joint_duration_s=(frames - 1) / 15)
    return write_bag(tmp_path_factory.mktemp("replay") / "episode", spec, "mcap")


def test_replayed_bag_gives_the_bag_infer_chunk(bag, start_node, tiny_checkpoint, ros_peer, tmp_path):
    params = droid_params(
        NS, tiny_checkpoint, mode="inverse_dynamics", use_sim_time=True, steps=1, task=TASK,
        camera_topics=[NS + topic for topic in CAMERAS], joint_state_topic=f"{NS}/joint_states",
        gripper_joint_state_topic="", gripper_joint=JOINT_NAMES[7], gripper_open_position=0.0,
        gripper_closed_position=1.0, inference_rate=4.0, max_observation_age=2.0, max_buffered_messages=128)
    process = start_node(params, name="replay", base=REPO / "config/inverse_dynamics_replay.yaml",
                         ros_args=("-r", f"__ns:={NS}"))
    chunks = []
    lock = threading.Lock()

    def keep(msg):
        with lock:
            chunks.append(msg)

    sub = ros_peer.node.create_subscription(ActionChunk, f"{NS}/policy_node/action_chunk", keep, 10)
    diagnostics = DiagnosticsListener(ros_peer, f"{NS}/policy_node")
    player = BagPlayer(ros_peer, bag, prefix=NS)
    try:
        process.wait_for_log(r"inverse_dynamics with profile", timeout=240)
        assert player.wait_connected(), process.log()
        player.play()
        assert wait_for(lambda: chunks, timeout=300, period=0.1), process.log()
        assert wait_for(lambda: diagnostics.values().get("chunks published") == "1", timeout=30), process.log()
        # Every frame of the window reached the node (cameras at the model's 15 fps: no step repeats a frame).
        # Before the inverse-dynamics camera queue was deepened, a frame the executor had not taken yet was
        # overwritten on a busy machine and the window held the one before: 1.6e-3 off bag-infer.
        assert diagnostics.values()["video frames held"] == "0", diagnostics.values()
    finally:
        diagnostics.close()
        player.close()
        ros_peer.node.destroy_subscription(sub)
        code, _ = process.stop()
    assert code == 0, process.log()
    assert len(chunks) == 1, [c.header.stamp for c in chunks]

    from cosmos3_ros.tools.cli import main

    out = tmp_path / "labels"
    argv = ["bag-infer", str(bag), "--checkpoint", str(tiny_checkpoint), "--profile", "released_droid_policy",
            "--device", "cpu", "--steps", "1", "--task", TASK, "--joint-topic", "/joint_states", "--no-plots",
            "--out", str(out)]
    for topic in CAMERAS:
        argv += ["--camera-topic", topic]
    assert main(argv) == 0
    doc = json.loads(Path(out / "actions.json").read_text())
    assert doc["windows_done"] == 1, doc.get("skipped")
    window = doc["windows"][0]["inverse_dynamics"]
    chunk = chunks[0]
    assert chunk.header.stamp.sec * 10**9 + chunk.header.stamp.nanosec == window["stamp_ns"]
    assert chunk.mode == "inverse_dynamics" and (chunk.chunk_length, chunk.action_dim) == (32, 8)
    # Same frames, state, task, seed and weights in two processes: allow float32 rounding of thread splits.
    np.testing.assert_allclose(np.asarray(chunk.data, np.float32).reshape(32, 8),
                               np.asarray(window["actions"], np.float32), rtol=0, atol=1e-5)
