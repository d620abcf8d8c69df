"""Output messages built with the rosbags factory and decoded from CDR bytes."""

from pathlib import Path

import numpy as np
import pytest
from ros_messages import FACTORY, action_chunk_msg, joint_trajectory_msg, through_cdr

from cosmos3_ros.errors import InputError
from cosmos3_ros.runtime.action_chunk import (
    ACTION_CHUNK_TYPE,
    ActionChunkData,
    action_chunk_definition,
    action_chunk_to_array,
    build_action_chunk,
    build_joint_trajectory,
    build_rollout_images,
    joint_trajectory_to_array,
)

REPO = Path(__file__).resolve().parents[2]
STAMP = 1_700_000_000_123_456_789


def chunk_data(actions):
    return ActionChunkData(
        actions=actions, stamp_ns=STAMP, start_ns=STAMP + 66_666_667, dt_s=1 / 15, frame_id="fr3_link0",
        mode="policy", profile="released_droid_policy", action_space="joint_position", domain_name="droid_lerobot",
        domain_id=8, dimension_names=(*(f"joint_{i}" for i in range(1, 8)), "gripper"), sequence_number=7,
        model_latency_s=0.25,
    )


def test_the_definition_is_the_single_msg_file():
    assert action_chunk_definition() == (REPO / "msg" / "ActionChunk.msg").read_text()
    fields = [name for name, _ in FACTORY.typestore.fielddefs[ACTION_CHUNK_TYPE][1]]
    assert fields == ["header", "mode", "profile", "action_space", "domain_name", "domain_id", "dimension_names",
                      "chunk_length", "action_dim", "dt", "start_time", "data", "sequence_number", "model_latency"]


def test_action_chunk_round_trips_through_cdr_with_exact_stamps():
    actions = np.arange(32 * 8, dtype=np.float32).reshape(32, 8) / 7
    msg = through_cdr(build_action_chunk(chunk_data(actions), FACTORY))
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert (msg.start_time.sec, msg.start_time.nanosec) == (1_700_000_000, 190_123_456)
    assert msg.header.frame_id == "fr3_link0"
    assert (msg.chunk_length, msg.action_dim, msg.sequence_number, msg.domain_id) == (32, 8, 7, 8)
    assert msg.dimension_names[-1] == "gripper" and msg.dt == pytest.approx(1 / 15)
    assert msg.model_latency == pytest.approx(0.25)
    np.testing.assert_array_equal(action_chunk_to_array(msg), actions)


def test_joint_trajectory_points_carry_time_from_start():
    positions = np.linspace(0, 1, 3 * 7).reshape(3, 7)
    msg = through_cdr(build_joint_trajectory(FACTORY, stamp_ns=STAMP, frame_id="base", joint_names=["a"] * 7,
                                             positions=positions, dt_s=1 / 15))
    assert len(msg.points) == 3
    times = [p.time_from_start.sec + p.time_from_start.nanosec / 1e9 for p in msg.points]
    np.testing.assert_allclose(times, [1 / 15, 2 / 15, 3 / 15], atol=1e-9)
    np.testing.assert_allclose(np.stack([p.positions for p in msg.points]), positions)
    assert msg.header.stamp.nanosec == 123_456_789


def test_rollout_frames_are_rgb8_images_stamped_at_future_times():
    frames = np.zeros((3, 4, 5, 3), np.float32)
    frames[1] = 1.0
    msgs = [through_cdr(m) for m in build_rollout_images(FACTORY, frames, first_stamp_ns=STAMP, dt_s=0.5,
                                                          frame_id="cam")]
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec - STAMP for m in msgs] == [0, 500_000_000, 10**9]
    assert all((m.encoding, m.height, m.width, m.step) == ("rgb8", 4, 5, 15) for m in msgs)
    assert msgs[1].data.tolist() == [255] * 60 and msgs[0].data.tolist() == [0] * 60


def test_action_chunk_with_inconsistent_length_is_rejected():
    msg = action_chunk_msg(np.zeros((2, 3)), 1, ("a", "b", "c"))
    msg.chunk_length = 4
    with pytest.raises(InputError, match=r"data has 6 values; expected chunk_length x action_dim = 4 x 3 = 12"):
        action_chunk_to_array(msg)


def test_joint_trajectory_to_array_reorders_by_name():
    msg = joint_trajectory_msg(["b", "a"], np.array([[2.0, 1.0], [4.0, 3.0]]), 1)
    np.testing.assert_array_equal(joint_trajectory_to_array(msg, ["a", "b"]), [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(InputError, match=r"lacks joints \['c'\]"):
        joint_trajectory_to_array(msg, ["a", "c"])
