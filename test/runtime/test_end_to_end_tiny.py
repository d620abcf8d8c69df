"""The node runtime end to end on CPU with a tiny random checkpoint, through real CDR bytes.

Image (rgb8 and bgr8), CompressedImage (png), JointState and String messages go in as CDR; ActionChunk and
JointTrajectory come out as CDR; the actions must equal what ``cosmos3-ros run`` computes for the same input.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from ros_messages import FACTORY, Recorder, compressed_msg, image_msg, joint_state_msg, stamp_ns_of, string_msg

from cosmos3_ros.runtime.action_chunk import action_chunk_to_array
from cosmos3_ros.runtime.node_core import PolicyNodeCore, load_action_model
from cosmos3_ros.runtime.parameters import resolve_parameters

pytestmark = pytest.mark.slow

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
Q = [0.0, -0.4, 0.1, -2.2, 0.05, 1.9, 0.8]
FINGER = 0.03  # open 0.04 .. closed 0.0 -> gripper 0.25
TASK = "put the marker in the cup"
STEPS = 1  # one denoising step keeps the CPU run short; the CLI gets the same setting


class NodeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    """The session's tiny random checkpoint (test/conftest.py), written once."""
    return tiny_checkpoint


@pytest.fixture(scope="module")
def cameras():
    rng = np.random.default_rng(7)
    return {name: rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
            for name in ("wrist", "exterior_1", "exterior_2")}


@pytest.fixture(scope="module")
def node_outputs(checkpoint, cameras):
    """Run one snapshot through PolicyNodeCore with the real predictor; return the decoded outputs."""
    params = {
        "checkpoint": str(checkpoint), "device": "cpu", "steps": STEPS, "dry_run": False, "frame_id": "fr3_link0",
        "camera_topics": ["/wrist/image_raw", "/ext1/image_raw", "/ext2/compressed"], "execution_horizon": 16,
    }
    model = load_action_model(resolve_parameters(params))
    clock, publish = NodeClock(), Recorder()
    core = PolicyNodeCore(model, params, clock=clock, publish=publish, factory=FACTORY)
    callbacks = {s.topic: s.callback for s in core.subscriptions}
    try:
        stamp = 1_700_000_000_250_000_000
        clock.now = stamp / 1e9 + 0.02
        callbacks["task"](string_msg(TASK))
        callbacks["/wrist/image_raw"](image_msg(cameras["wrist"], stamp, "rgb8"))
        callbacks["/ext1/image_raw"](image_msg(cameras["exterior_1"], stamp + 3_000_000, "bgr8", row_padding=64))
        callbacks["/ext2/compressed"](compressed_msg(cameras["exterior_2"], stamp + 5_000_000, "rgb8; png compressed"))
        callbacks["/joint_states"](joint_state_msg([*ARM, "fr3_finger_joint1"], [*Q, FINGER], stamp + 1_000_000))
        assert core.on_timer() == "submitted"
        chunk = publish.wait_for("action_chunk", 1, timeout=300)[0]
        trajectory = publish.wait_for("joint_trajectory", 1, timeout=30)[0]
        assert core.worker.wait_idle(30)
        diagnostics = FACTORY.deserialize(FACTORY.serialize(core.diagnostics_message()),
                                          "diagnostic_msgs/msg/DiagnosticArray")
        return {"stamp": stamp, "chunk": chunk, "trajectory": trajectory, "diagnostics": diagnostics,
                "raw_sizes": dict(publish.raw_sizes)}
    finally:
        assert core.shutdown(60)


def test_action_chunk_bytes_carry_stamps_shapes_and_names(node_outputs):
    chunk = node_outputs["chunk"]
    newest = node_outputs["stamp"] + 5_000_000
    assert stamp_ns_of(chunk) == newest and chunk.header.frame_id == "fr3_link0"
    assert chunk.start_time.sec * 10**9 + chunk.start_time.nanosec == newest + round(1e9 / 15)
    assert (chunk.chunk_length, chunk.action_dim, chunk.sequence_number) == (32, 8, 1)
    assert list(chunk.dimension_names) == [*(f"joint_{i}" for i in range(1, 8)), "gripper"]
    assert (chunk.mode, chunk.profile, chunk.action_space) == ("policy", "released_droid_policy", "joint_position")
    assert (chunk.domain_name, chunk.domain_id) == ("droid_lerobot", 8)
    assert chunk.model_latency > 0 and np.all(np.isfinite(action_chunk_to_array(chunk)))
    assert node_outputs["raw_sizes"]["action_chunk"][0] > 32 * 8 * 4


def test_joint_trajectory_holds_the_first_execution_horizon_rows(node_outputs):
    trajectory, chunk = node_outputs["trajectory"], node_outputs["chunk"]
    assert list(trajectory.joint_names) == ARM and len(trajectory.points) == 16
    assert stamp_ns_of(trajectory) == stamp_ns_of(chunk)
    np.testing.assert_allclose(np.stack([p.positions for p in trajectory.points]),
                               action_chunk_to_array(chunk)[:16, :7], rtol=1e-6)
    assert trajectory.points[-1].time_from_start.sec == 1  # 16 / 15 s


def test_actions_equal_the_cli_result_for_the_same_input(node_outputs, checkpoint, cameras, tmp_path):
    from cosmos3_ros.tools.cli import main

    args = ["run", "--checkpoint", str(checkpoint), "--profile", "released_droid_policy", "--device", "cpu",
            "--steps", str(STEPS), "--prompt", TASK, "--no-video", "--out", str(tmp_path / "cli")]
    for name, rgb in cameras.items():
        path = tmp_path / f"{name}.png"
        Image.fromarray(rgb).save(path)
        args += ["--camera", f"{name}={path}"]
    gripper = (FINGER - 0.04) / (0.0 - 0.04)
    state = np.asarray([*Q, gripper], dtype=np.float32)
    args += ["--state", json.dumps([float(v) for v in state])]
    assert main(args) == 0
    cli = json.loads((tmp_path / "cli_action.json").read_text())
    expected = np.asarray(cli["data"], dtype=np.float32)
    assert cli["shape"] == [32, 8]
    np.testing.assert_array_equal(action_chunk_to_array(node_outputs["chunk"]), expected)


def test_diagnostics_after_the_run(node_outputs):
    status = node_outputs["diagnostics"].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == 0, status.message
    assert values["chunks published"] == "1" and values["trajectories published"] == "1"
    assert values["input errors"] == "0" and values["inference errors"] == "0"
    assert float(values["inference latency last (s)"]) > 0
