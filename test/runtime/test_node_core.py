"""PolicyNodeCore driven like the rclpy node drives it: CDR-decoded messages in, CDR-decoded messages out."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest
from ros_messages import (
    FACTORY,
    FakeClock,
    FakeModel,
    Recorder,
    action_chunk_msg,
    compressed_msg,
    encode,
    image_msg,
    joint_state_msg,
    joint_trajectory_msg,
    small_profile,
    stamp_ns_of,
    string_msg,
)

from cosmos3_ros.processing.profiles import BASE, RELEASED_DROID_POLICY
from cosmos3_ros.runtime.action_chunk import action_chunk_to_array
from cosmos3_ros.runtime.node_core import PolicyNodeCore

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
CAMERAS = ("wrist", "exterior_1", "exterior_2")
TOPICS = {"wrist": "/camera/wrist/image_raw", "exterior_1": "/camera/exterior_1/image_raw",
          "exterior_2": "/camera/exterior_2/image_raw"}
Q = [0.1, -0.2, 0.3, -1.5, 0.05, 1.8, 0.7]
RNG = np.random.default_rng(1)
IMAGES = {name: RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8) for name in (*CAMERAS, "image")}
DT_NS = round(1e9 / 15)


class Harness:
    """A core with a fake clock, a recording publisher and helpers that deliver messages by topic."""

    def __init__(self, profile=RELEASED_DROID_POLICY, model=None, **params):
        self.clock = FakeClock(100.0)
        self.publish = Recorder()
        self.model = model or FakeModel(profile)
        self.periods: list[float] = []
        self.wakeups = 0  # request_snapshot calls (the rclpy layer triggers a guard condition)
        # Timer snapshots unless a test asks for events: most tests here tick on_timer by hand.
        values = {"checkpoint": "/fake", "task": "put the cup in the sink", "snapshot_trigger": "timer", **params}
        self.core = PolicyNodeCore(self.model, values, clock=self.clock, publish=self.publish, factory=FACTORY,
                                   set_timer_period=self.periods.append, request_snapshot=self._wake)

    def _wake(self):
        self.wakeups += 1

    def deliver(self, topic, msg):
        matches = [s for s in self.core.subscriptions if s.topic == topic]
        assert len(matches) == 1, f"no subscription on {topic}"
        matches[0].callback(msg)

    def observe(self, t, gripper=0.25, images=None, encoding="rgb8", q=Q, cameras=None):
        """All inputs stamped at ``t`` seconds; the clock reads t + 10 ms."""
        stamp = round(t * 1e9)
        self.clock.now = t + 0.01
        for name in cameras or self.core.cameras:
            rgb = (images or IMAGES)[name]
            self.deliver(self.core.camera_topics[name], image_msg(rgb, stamp, encoding))
        if self.core.uses_state:
            finger = 0.04 * (1 - gripper)
            self.deliver("/joint_states", joint_state_msg([*ARM, "fr3_finger_joint1"], [*q, finger], stamp))
        return stamp

    def tick_and_wait(self, key="action_chunk", count=None):
        assert self.core.on_timer() == "submitted"
        done = len(self.publish.messages[key]) + 1 if count is None else count
        return self.publish.wait_for(key, done)[-1]

    def diagnostics(self):
        array = FACTORY.deserialize(FACTORY.serialize(self.core.diagnostics_message()),
                                    "diagnostic_msgs/msg/DiagnosticArray")
        status = array.status[0]
        return status, {kv.key: kv.value for kv in status.values}

    def close(self):
        assert self.core.shutdown(timeout=10)


@pytest.fixture
def harness():
    made = []

    def make(*args, **kwargs):
        h = Harness(*args, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


# ----- wiring -----------------------------------------------------------------------------------------------

def test_released_profile_subscribes_three_cameras_joint_states_and_a_latched_task(harness):
    core = harness().core
    subs = {(s.topic, s.type_name, s.qos) for s in core.subscriptions}
    assert subs == {
        ("/camera/wrist/image_raw", "sensor_msgs/msg/Image", "sensor_data"),
        ("/camera/exterior_1/image_raw", "sensor_msgs/msg/Image", "sensor_data"),
        ("/camera/exterior_2/image_raw", "sensor_msgs/msg/Image", "sensor_data"),
        ("/joint_states", "sensor_msgs/msg/JointState", "state"),
        ("task", "std_msgs/msg/String", "latched"),
    }
    pubs = {(p.key, p.topic, p.type_name) for p in core.publications}
    assert pubs == {
        ("action_chunk", "~/action_chunk", "cosmos3_ros_msgs/msg/ActionChunk"),
        ("joint_trajectory", "~/joint_trajectory", "trajectory_msgs/msg/JointTrajectory"),
        ("diagnostics", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray"),
    }


def test_compressed_topics_and_a_separate_gripper_topic(harness):
    topics = ["/w/compressed", "/e1/image_raw", "/e2/compressed"]
    core = harness(camera_topics=topics, gripper_joint_state_topic="/fr3_gripper/joint_states").core
    types = {s.topic: s.type_name for s in core.subscriptions}
    assert types["/w/compressed"] == "sensor_msgs/msg/CompressedImage"
    assert types["/e1/image_raw"] == "sensor_msgs/msg/Image"
    assert types["/fr3_gripper/joint_states"] == "sensor_msgs/msg/JointState"


def test_base_profile_has_one_camera_no_state_and_no_trajectory(harness):
    core = harness(BASE, camera_topics=["/cam/image_raw"]).core
    assert [s.topic for s in core.subscriptions] == ["/cam/image_raw", "task"]
    assert "joint_trajectory" not in {p.key for p in core.publications}


def test_camera_topic_count_must_match_the_profile(harness):
    with pytest.raises(Exception, match=r"'camera_topics' has 1 topics; profile 'released_droid_policy' needs 3"):
        harness(camera_topics=["/one"])


# ----- policy -----------------------------------------------------------------------------------------------

def test_policy_chunk_is_stamped_with_the_newest_observation_and_holds_the_model_output(harness):
    h = harness(frame_id="fr3_link0")
    stamp = h.observe(50.0, gripper=0.25)
    msg = h.tick_and_wait()
    assert stamp_ns_of(msg) == stamp and msg.header.frame_id == "fr3_link0"
    assert msg.start_time.sec * 10**9 + msg.start_time.nanosec == stamp + DT_NS
    assert (msg.mode, msg.profile, msg.action_space, msg.domain_name, msg.domain_id) == (
        "policy", "released_droid_policy", "joint_position", "droid_lerobot", 8)
    assert list(msg.dimension_names) == [*(f"joint_{i}" for i in range(1, 8)), "gripper"]
    assert (msg.chunk_length, msg.action_dim, msg.sequence_number) == (32, 8, 1)
    assert msg.dt == pytest.approx(1 / 15)
    state = np.array([*Q, 0.25], np.float32)
    expected = np.arange(32, dtype=np.float32)[:, None] + 0.01 * np.arange(8, dtype=np.float32) + state
    np.testing.assert_allclose(action_chunk_to_array(msg), expected, rtol=1e-6)
    request = h.model.requests[-1]
    assert request.task == "put the cup in the sink" and request.mode == "policy"
    for name in CAMERAS:
        np.testing.assert_array_equal(request.cameras[name], IMAGES[name])
    np.testing.assert_allclose(request.state, state, rtol=1e-6)


def test_dry_run_default_publishes_no_joint_trajectory(harness):
    h = harness()
    h.observe(1.0)
    h.tick_and_wait()
    assert h.core.worker.wait_idle(5)
    assert h.publish.messages["joint_trajectory"] == []


def test_joint_trajectory_when_dry_run_is_off(harness):
    h = harness(dry_run=False, execution_horizon=8)
    stamp = h.observe(2.0)
    traj = h.tick_and_wait("joint_trajectory")
    chunk = h.publish.messages["action_chunk"][-1]
    assert stamp_ns_of(traj) == stamp and list(traj.joint_names) == ARM
    assert len(traj.points) == 8
    np.testing.assert_allclose(np.stack([p.positions for p in traj.points]),
                               action_chunk_to_array(chunk)[:8, :7], rtol=1e-6)
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in traj.points]
    np.testing.assert_allclose(times, np.arange(1, 9) / 15, atol=1e-9)


def test_safety_limits_shape_the_trajectory_but_not_the_action_chunk(harness):
    h = harness(dry_run=False, max_joint_step=0.05, joint_position_min=[-3.0] * 7, joint_position_max=[2.0] * 7)
    h.observe(3.0)
    traj = h.tick_and_wait("joint_trajectory")
    positions = np.stack([p.positions for p in traj.points])
    assert positions.max() <= 2.0
    steps = np.abs(np.diff(np.vstack([Q, positions]), axis=0))
    assert steps.max() <= 0.05 + 1e-9
    chunk = action_chunk_to_array(h.publish.messages["action_chunk"][-1])
    assert chunk[:, :7].max() > 30  # the prediction itself is untouched
    _, values = h.diagnostics()
    assert int(values["trajectory values clamped"]) > 0 and int(values["trajectory values rate limited"]) > 0


def test_gripper_from_a_separate_joint_state_topic(harness):
    h = harness(gripper_joint_state_topic="/fr3_gripper/joint_states")
    stamp = round(4.0 * 1e9)
    h.clock.now = 4.01
    for name in CAMERAS:
        h.deliver(TOPICS[name], image_msg(IMAGES[name], stamp))
    h.deliver("/joint_states", joint_state_msg(ARM, Q, stamp))
    h.deliver("/fr3_gripper/joint_states", joint_state_msg(["fr3_finger_joint1"], [0.0], stamp + 1000))
    h.tick_and_wait()
    assert h.model.requests[-1].state[-1] == pytest.approx(1.0)


def test_compressed_cameras_are_decoded_on_the_worker(harness):
    h = harness(camera_topics=["/w/compressed", "/e1/compressed", "/e2/compressed"])
    stamp = round(5.0 * 1e9)
    h.clock.now = 5.01
    for name, topic in zip(CAMERAS, ["/w/compressed", "/e1/compressed", "/e2/compressed"], strict=True):
        h.deliver(topic, compressed_msg(IMAGES[name], stamp, "png"))
    h.deliver("/joint_states", joint_state_msg([*ARM, "fr3_finger_joint1"], [*Q, 0.04], stamp))
    h.tick_and_wait()
    for name in CAMERAS:
        np.testing.assert_array_equal(h.model.requests[-1].cameras[name], IMAGES[name])


def test_base_profile_sends_one_image_and_no_state(harness):
    h = harness(BASE, camera_topics=["/cam/image_raw"])
    stamp = h.observe(6.0)
    msg = h.tick_and_wait()
    assert stamp_ns_of(msg) == stamp and (msg.chunk_length, msg.action_dim) == (16, 10)
    request = h.model.requests[-1]
    np.testing.assert_array_equal(request.image, IMAGES["image"])
    assert request.cameras is None and request.state is None


# ----- snapshots that are skipped --------------------------------------------------------------------------

def skip_counts(values):
    return {k.removeprefix("skipped: "): int(v) for k, v in values.items() if k.startswith("skipped: ")}


def test_no_task_is_skipped_until_one_arrives_on_the_topic(harness):
    h = harness(task="")
    h.observe(1.0)
    assert h.core.on_timer() == "no_task"
    h.deliver("task", string_msg("  stack the blocks  "))
    assert h.core.task == "  stack the blocks"  # trailing whitespace only, as the CLI and NVIDIA's server
    assert h.core.on_timer() == "submitted"


def test_incomplete_stale_unsynchronised_and_repeated_snapshots_are_skipped_and_counted(harness):
    h = harness(max_observation_age=0.2, sync_tolerance=0.02)
    h.clock.now = 10.0
    h.deliver(TOPICS["wrist"], image_msg(IMAGES["wrist"], 10 * 10**9))
    assert h.core.on_timer() == "incomplete"
    h.observe(10.0)
    h.clock.now = 10.5
    assert h.core.on_timer() == "stale"
    h.observe(11.0)
    h.deliver(TOPICS["wrist"], image_msg(IMAGES["wrist"], 11_100_000_000))
    h.deliver(TOPICS["wrist"], image_msg(IMAGES["wrist"], 11_200_000_000))
    h.clock.now = 11.1
    assert h.core.on_timer() == "submitted"  # the wrist frame at 11.0 s still pairs with the others
    assert h.core.on_timer() == "no_new_observation"
    h.core.buffer.clear()
    for name in CAMERAS:
        h.deliver(TOPICS[name], image_msg(IMAGES[name], 12_000_000_000 + CAMERAS.index(name) * 50_000_000))
    h.deliver("/joint_states", joint_state_msg([*ARM, "fr3_finger_joint1"], [*Q, 0.0], 12_000_000_000))
    h.clock.now = 12.1
    assert h.core.on_timer() == "unsynchronised"
    status, values = h.diagnostics()
    counts = skip_counts(values)
    assert counts["incomplete"] == 1 and counts["stale"] == 1
    assert counts["no_new_observation"] == 1 and counts["unsynchronised"] == 1
    assert status.level == 1 and status.message.startswith("skipped 4 snapshots")


def test_zero_header_stamps_get_a_hint(harness):
    h = harness()
    h.observe(0.0)
    h.clock.now = 100.0
    assert h.core.on_timer() == "stale"
    status, _ = h.diagnostics()
    assert "header stamp 0" in status.message


def test_pause_resume_and_clear_buffers(harness):
    h = harness()
    h.observe(1.0)
    assert h.core.pause() == (True, "paused: no new snapshots until resume")
    assert h.core.on_timer() == "paused"
    status, values = h.diagnostics()
    assert values["paused"] == "True" and status.message.startswith("paused")
    h.core.resume()
    ok, message = h.core.clear_buffers()
    assert ok and message == "cleared 4 buffered messages"
    assert h.core.on_timer() == "incomplete"
    h.observe(2.0)
    assert h.core.on_timer() == "submitted"


# ----- bad input: a clear error, counted on diagnostics, and the node carries on -----------------------------

def corrupt_jpeg(h, t):
    data = encode(IMAGES["wrist"], "jpeg")[:60]
    h.deliver(TOPICS["wrist"], compressed_msg(None, round(t * 1e9), "jpeg", data=data))


BAD_WORKER_INPUTS = {
    "unknown encoding": (lambda h, t: h.observe(t, encoding="yuv422"), r"unsupported encoding 'yuv422'"),
    "short data": (
        lambda h, t: (h.observe(t), h.deliver(TOPICS["wrist"], image_msg(
            IMAGES["wrist"], round(t * 1e9), data=IMAGES["wrist"].tobytes()[:-8], step=24)))[0],
        r"camera 'wrist' on '/camera/wrist/image_raw': data holds 136 bytes; expected step x height = 24 x 6 = 144",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_WORKER_INPUTS))
def test_bad_images_are_reported_and_the_next_snapshot_still_runs(harness, case):
    feed, message = BAD_WORKER_INPUTS[case]
    h = harness()
    feed(h, 1.0)
    assert h.core.on_timer() == "submitted"
    assert h.core.worker.wait_idle(5)
    status, values = h.diagnostics()
    assert values["input errors"] == "1"
    assert re_search(message, values["last error"]) and re_search(message, status.message)
    assert h.publish.messages["action_chunk"] == []
    h.observe(2.0)
    h.tick_and_wait()
    assert h.core.worker.alive


def test_corrupt_jpeg_is_reported_and_the_node_carries_on(harness):
    h = harness(camera_topics=["/camera/wrist/compressed", TOPICS["exterior_1"], TOPICS["exterior_2"]])
    TOPICS_C = {**TOPICS, "wrist": "/camera/wrist/compressed"}
    h.observe(1.0, cameras=("exterior_1", "exterior_2"))
    h.deliver(TOPICS_C["wrist"], compressed_msg(None, 10**9, "jpeg", data=encode(IMAGES["wrist"], "jpeg")[:60]))
    assert h.core.on_timer() == "submitted"
    assert h.core.worker.wait_idle(5)
    _, values = h.diagnostics()
    assert values["input errors"] == "1" and "corrupt jpeg data in CompressedImage (60 bytes)" in values["last error"]
    h.observe(2.0, cameras=("exterior_1", "exterior_2"))
    h.deliver(TOPICS_C["wrist"], compressed_msg(IMAGES["wrist"], 2 * 10**9, "png"))
    h.tick_and_wait()


def re_search(pattern, text):
    import re

    return re.search(pattern, text) is not None


CALLBACK_BAD_INPUTS = {
    "nan joint state": (
        lambda h: h.deliver("/joint_states", joint_state_msg([*ARM, "fr3_finger_joint1"], [math.nan, *Q[1:], 0.0], 1)),
        r"joint state on '/joint_states': non-finite position for joints \['fr3_joint1'\]",
    ),
    "wrong number of joints": (
        lambda h: h.deliver("/joint_states", joint_state_msg([], Q[:6], 1)),
        r"joint state on '/joint_states': 6 positions and no names; expected 7",
    ),
    "missing gripper joint": (
        lambda h: h.deliver("/joint_states", joint_state_msg(ARM, Q, 1)),
        r"lacks the gripper joint 'fr3_finger_joint1'",
    ),
    "empty task": (
        lambda h: h.deliver("task", string_msg("   ")),
        r"task on 'task': empty string; expected a task sentence \(the previous task stays\)",
    ),
}


@pytest.mark.parametrize("case", sorted(CALLBACK_BAD_INPUTS))
def test_bad_callback_inputs_are_dropped_counted_and_named(harness, case):
    feed, message = CALLBACK_BAD_INPUTS[case]
    h = harness()
    feed(h)
    status, values = h.diagnostics()
    assert values["input errors"] == "1" and re_search(message, values["last error"])
    assert status.level == 1 and re_search(message, status.message)
    assert h.core.task == "put the cup in the sink"
    h.observe(3.0)
    h.tick_and_wait()


def test_stats_of_the_wrong_width_are_rejected_at_runtime_and_counted(harness):
    h = harness(BASE, camera_topics=["/cam/image_raw"])
    ok, reason = h.core.on_parameters({"action_normalization": "quantile_rot", "action_stats_q01": [-1.0] * 9,
                                       "action_stats_q99": [1.0] * 9})
    assert not ok
    assert "'q01' has 9 values; expected 10 (raw_action_dim)" in reason
    _, values = h.diagnostics()
    assert values["input errors"] == "1"
    assert h.core.profile.normalization is None
    h.observe(1.0)
    h.tick_and_wait()


def test_unused_statistics_of_the_wrong_width_are_rejected_too(harness):
    h = harness()
    ok, reason = h.core.on_parameters({"action_stats_mean": [0.0] * 7})
    assert not ok and "'mean' has 7 values; expected 8 (raw_action_dim)" in reason


def test_model_failure_is_reported_as_error_and_the_worker_continues(harness):
    model = FakeModel(RELEASED_DROID_POLICY, fail_with=RuntimeError("CUDA out of memory"))
    h = harness(model=model)
    h.observe(1.0)
    h.core.on_timer()
    assert h.core.worker.wait_idle(5)
    status, values = h.diagnostics()
    assert status.level == 2 and "RuntimeError: CUDA out of memory" in status.message
    assert values["inference errors"] == "1"
    model.fail_with = None
    h.observe(2.0)
    h.tick_and_wait()
    status, _ = h.diagnostics()
    assert status.level == 0


def test_non_finite_model_output_is_not_published(harness):
    class NanModel(FakeModel):
        def predict(self, request):
            prediction = super().predict(request)
            prediction.actions[3, 2] = np.nan
            return prediction

    h = harness(model=NanModel(RELEASED_DROID_POLICY), dry_run=False)
    h.observe(1.0)
    h.core.on_timer()
    assert h.core.worker.wait_idle(5)
    _, values = h.diagnostics()
    assert "model output: 1 non-finite values (first at row 3, column 2)" in values["last error"]
    assert h.publish.messages["action_chunk"] == [] and h.publish.messages["joint_trajectory"] == []


# ----- runtime parameters -----------------------------------------------------------------------------------

def test_inference_rate_change_resets_the_timer(harness):
    h = harness()
    assert h.core.on_parameters({"inference_rate": 5.0}) == (True, "")
    assert h.periods == [pytest.approx(0.2)]


def test_read_only_parameters_are_refused(harness):
    h = harness()
    ok, reason = h.core.on_parameters({"checkpoint": "/other"})
    assert not ok and reason.startswith("parameter 'checkpoint' is read-only")


def test_invalid_values_are_refused_all_or_nothing(harness):
    h = harness()
    ok, reason = h.core.on_parameters({"dry_run": False, "inference_rate": 1000.0})
    assert not ok and "out of range" in reason
    assert h.core.dry_run is True


def test_guidance_change_serves_a_new_profile_on_the_same_model(harness):
    h = harness()
    assert h.core.on_parameters({"guidance": 1.5}) == (True, "")
    assert h.core.profile.guidance == 1.5
    assert h.core.on_parameters({"guidance": -1.0}) == (True, "")
    assert h.core.profile.guidance == RELEASED_DROID_POLICY.guidance


def test_statistics_can_be_set_at_runtime(harness, tmp_path):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"global_raw": {"q01": [-0.5] * 10, "q99": [0.5] * 10}}))
    h = harness(BASE, camera_topics=["/cam/image_raw"])
    ok, reason = h.core.on_parameters({"action_normalization": "quantile_rot", "action_stats_file": str(stats)})
    assert ok, reason
    assert h.core.profile.normalization == "quantile_rot"
    np.testing.assert_allclose(h.core.profile.stats.q99, [0.5] * 10)


def test_task_parameter_sets_the_task_and_rejects_empty(harness):
    h = harness()
    assert h.core.on_parameters({"task": "open the drawer"}) == (True, "")
    assert h.core.task == "open the drawer"
    assert h.core.on_parameters({"task": " "})[0] is False
    assert h.core.task == "open the drawer"


# ----- inverse and forward dynamics -------------------------------------------------------------------------

def coded_image(k):
    return np.full((6, 8, 3), k % 256, np.uint8)


def test_inverse_dynamics_gets_chunk_plus_one_frames_on_the_model_grid(harness):
    profile = small_profile(RELEASED_DROID_POLICY, chunk=8)
    h = harness(profile, mode="inverse_dynamics", dry_run=False, max_observation_age=1.0)
    base_t = 20.0
    for k in range(40):  # 30 Hz for 1.33 s
        t = base_t + k / 30
        h.observe(t, images={name: coded_image(k) for name in CAMERAS})
    msg = h.tick_and_wait()
    request = h.model.requests[-1]
    assert request.mode == "inverse_dynamics" and len(request.video) == 9
    newest = 39
    expected = []
    for j in range(9):  # grid t_end - (8 - j) / 15, zero-order hold on 30 Hz frames
        grid = (newest / 30) - (8 - j) / 15
        expected.append(max(k for k in range(40) if k / 30 <= grid + 0.05 + 1e-9))
    got = [int(frame["wrist"][0, 0, 0]) for frame in request.video]
    assert got == expected
    assert stamp_ns_of(msg) == round((base_t + newest / 30) * 1e9)
    t0 = round((base_t + newest / 30) * 1e9) - 8 * DT_NS
    assert msg.start_time.sec * 10**9 + msg.start_time.nanosec == t0 + DT_NS
    assert msg.mode == "inverse_dynamics"
    assert h.core.worker.wait_idle(5) and h.publish.messages["joint_trajectory"] == []


def test_inverse_dynamics_keeps_every_camera_frame_and_counts_the_ones_it_holds(harness):
    h = harness(small_profile(RELEASED_DROID_POLICY, chunk=8), mode="inverse_dynamics", max_observation_age=1.0)
    # Every frame of the window is used, so cameras are queued deeper than the policy's keep-last-1.
    assert {s.qos for s in h.core.subscriptions if s.topic in TOPICS.values()} == {"video"}
    for k in range(12):  # cameras at the model's 15 fps; frame 8 of the wrist camera is lost
        stamp = round((20.0 + k / 15) * 1e9)
        h.clock.now = 20.0 + k / 15 + 0.01
        for name in CAMERAS if k != 8 else ("exterior_1", "exterior_2"):
            h.deliver(TOPICS[name], image_msg(coded_image(k), stamp, "rgb8"))
        h.deliver("/joint_states", joint_state_msg([*ARM, "fr3_finger_joint1"], [*Q, 0.03], stamp))
    h.tick_and_wait()
    got = [int(frame["wrist"][0, 0, 0]) for frame in h.model.requests[-1].video]
    assert got == [3, 4, 5, 6, 7, 7, 9, 10, 11]  # the lost frame's step holds the one before
    assert h.diagnostics()[1]["video frames held"] == "1"


def test_inverse_dynamics_waits_for_enough_history(harness):
    h = harness(small_profile(RELEASED_DROID_POLICY, chunk=8), mode="inverse_dynamics")
    h.observe(1.0)
    assert h.core.on_timer() == "insufficient_history"


def test_forward_dynamics_uses_known_actions_from_an_action_chunk_topic(harness):
    h = harness(mode="forward_dynamics", actions_topic="/plan")
    h.observe(1.0)
    assert h.core.on_timer() == "no_known_actions"
    known = np.linspace(0, 1, 32 * 8, dtype=np.float32).reshape(32, 8)
    h.deliver("/plan", action_chunk_msg(known, 1, RELEASED_DROID_POLICY.dimension_names))
    msg = h.tick_and_wait()
    np.testing.assert_array_equal(h.model.requests[-1].actions, known)
    np.testing.assert_array_equal(action_chunk_to_array(msg), known)


def test_forward_dynamics_from_a_joint_trajectory_topic(harness):
    h = harness(mode="forward_dynamics", actions_topic="/plan", actions_topic_type="JointTrajectory")
    rows = np.arange(4 * 8, dtype=np.float64).reshape(4, 8)
    h.deliver("/plan", joint_trajectory_msg([*reversed(ARM), "gripper"], np.hstack([rows[:, 6::-1], rows[:, 7:]]), 1))
    h.observe(1.0)
    h.tick_and_wait()
    np.testing.assert_array_equal(h.model.requests[-1].actions, rows.astype(np.float32))


def test_forward_dynamics_from_a_file_and_wrong_width_messages_are_rejected(harness, tmp_path):
    path = tmp_path / "actions.json"
    path.write_text(json.dumps({"shape": [2, 8], "dtype": "float32", "data": [[0.5] * 8, [0.25] * 8]}))
    h = harness(mode="forward_dynamics", actions_file=str(path), actions_topic="/plan")
    h.deliver("/plan", action_chunk_msg(np.zeros((4, 7)), 1, tuple("abcdefg")))
    _, values = h.diagnostics()
    assert "known actions on '/plan': 7 columns; expected 8 (raw_action_dim)" in values["last error"]
    h.observe(1.0)
    h.tick_and_wait()
    np.testing.assert_array_equal(h.model.requests[-1].actions, [[0.5] * 8, [0.25] * 8])


# ----- rollout, diagnostics, shutdown ----------------------------------------------------------------------

def test_rollout_frames_are_published_at_future_stamps_and_saved_as_mp4(harness, tmp_path):
    model = FakeModel(RELEASED_DROID_POLICY, rollout_frames=4)
    h = harness(model=model, publish_rollout=True, rollout_dir=str(tmp_path))
    stamp = h.observe(7.0)
    h.tick_and_wait()
    frames = h.publish.wait_for("rollout_image", 4)
    assert [stamp_ns_of(f) - stamp for f in frames] == [k * DT_NS for k in range(4)]
    assert all(f.encoding == "rgb8" and (f.height, f.width) == (8, 12) for f in frames)
    assert h.core.wait_idle(10)
    video = tmp_path / "last_rollout.mp4"
    assert video.is_file() and video.stat().st_size > 0
    _, values = h.diagnostics()
    assert values["last rollout video"] == str(video)
    assert values["rollout videos written"] == "1"


def test_the_rollout_mp4_is_written_off_the_inference_thread(harness, tmp_path, monkeypatch):
    """Bug 7 of issue 10: the encode ran on the inference thread, delaying the next chunk."""
    from cosmos3_ros.processing import video_io

    writers = []
    real_write = video_io.write_mp4

    def recording_write(*args, **kwargs):
        writers.append(threading.current_thread().name)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(video_io, "write_mp4", recording_write)
    h = harness(model=FakeModel(RELEASED_DROID_POLICY, rollout_frames=4), publish_rollout=True,
                rollout_dir=str(tmp_path))
    for t in (1.0, 2.0):
        h.observe(t)
        h.tick_and_wait()
    assert h.core.wait_idle(10)
    _, values = h.diagnostics()
    assert int(values["rollout videos written"]) + int(values["rollout videos skipped"]) == 2
    assert writers and set(writers) == {"cosmos3-rollout-mp4"}


def wait_for_true(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_event_snapshots_start_the_model_on_the_newest_set_as_soon_as_it_is_free(harness):
    h = harness(model=FakeModel(RELEASED_DROID_POLICY, delay_s=0.3), snapshot_trigger="event", inference_rate=10.0)
    first = h.observe(1.0)
    assert h.wakeups == 3  # one per camera frame
    assert h.core.on_event() == "submitted"
    assert wait_for_true(lambda: h.core.worker.busy)
    h.observe(1.1)
    assert h.core.on_event() is None  # the model is running: nothing is taken or counted
    assert h.core.on_timer() == "model_running"
    newest = h.observe(1.2)
    woken = h.wakeups
    assert h.core.worker.wait_idle(10)
    assert wait_for_true(lambda: h.wakeups == woken + 1)  # the worker asks as soon as it is idle
    assert stamp_ns_of(h.publish.messages["action_chunk"][-1]) == first
    assert h.core.on_event() == "submitted"  # the newest set (1.2), not the one of the tick at 1.1
    assert h.core.worker.wait_idle(10)
    assert stamp_ns_of(h.publish.messages["action_chunk"][-1]) == newest
    assert h.core.on_event() is None  # nothing newer than the last snapshot
    # each event snapshot restarted the snapshot timer (period 1 / inference_rate from then): its next tick
    # comes when the rate cap expires
    assert h.periods == [pytest.approx(0.1)] * 2
    h.observe(1.22)
    assert h.core.on_event() is None  # 20 ms after the last snapshot: inference_rate 10 Hz caps the rate
    h.clock.now = 1.32
    assert h.core.on_event() == "submitted"
    _, values = h.diagnostics()
    assert values["snapshots submitted"] == "3" and values["snapshots skipped"] == "0"


def test_an_event_waiting_for_the_joint_state_is_completed_by_it(harness):
    h = harness(snapshot_trigger="event")
    stamp = round(2.0 * 1e9)
    h.clock.now = 2.01
    for name in CAMERAS:  # the cameras first: the set is incomplete until the joint state arrives
        h.deliver(TOPICS[name], image_msg(IMAGES[name], stamp, "rgb8"))
    assert h.core.on_event() is None
    woken = h.wakeups
    h.deliver("/joint_states", joint_state_msg([*ARM, "fr3_finger_joint1"], [*Q, 0.03], stamp))
    assert h.wakeups == woken + 1  # the state completes a waiting set: it wakes the snapshot
    assert h.core.on_event() == "submitted"
    assert wait_for_true(lambda: h.wakeups == woken + 2)  # the worker went idle
    h.deliver("/joint_states", joint_state_msg([*ARM, "fr3_finger_joint1"], [*Q, 0.03], stamp + 10**6))
    assert h.wakeups == woken + 2  # a state with no set waiting wakes nothing


def test_the_next_set_is_completed_by_its_joint_state_too(harness):
    h = harness(snapshot_trigger="event", inference_rate=10.0)
    h.observe(1.0)
    before = h.wakeups
    assert h.core.on_event() == "submitted"
    assert h.core.worker.wait_idle(10)
    assert wait_for_true(lambda: h.wakeups == before + 1)  # the worker went idle
    stamp = round(1.2 * 1e9)
    h.clock.now = 1.21
    for name in CAMERAS:  # the next set's frames; the previous set is still the newest complete one
        h.deliver(TOPICS[name], image_msg(IMAGES[name], stamp, "rgb8"))
    assert h.core.on_event() is None
    woken = h.wakeups
    h.deliver("/joint_states", joint_state_msg([*ARM, "fr3_finger_joint1"], [*Q, 0.03], stamp))
    assert h.wakeups == woken + 1  # the state completes the new set: it wakes the snapshot at once
    assert h.core.on_event() == "submitted"
    assert h.core.worker.wait_idle(10)
    assert wait_for_true(lambda: h.wakeups == woken + 2)  # the worker went idle
    assert stamp_ns_of(h.publish.messages["action_chunk"][-1]) == stamp
    h.deliver("/joint_states", joint_state_msg([*ARM, "fr3_finger_joint1"], [*Q, 0.03], stamp + 10**6))
    assert h.core.on_event() is None
    woken = h.wakeups
    h.deliver("/joint_states", joint_state_msg([*ARM, "fr3_finger_joint1"], [*Q, 0.03], stamp + 2 * 10**6))
    assert h.wakeups == woken  # no newer frame: states alone wake nothing


def test_event_snapshots_are_off_with_the_timer_trigger(harness):
    h = harness(snapshot_trigger="timer")
    h.observe(1.0)
    assert h.wakeups == 0 and h.core.on_event() is None
    assert h.core.on_timer() == "submitted"


def test_diagnostics_report_rates_latency_and_counts(harness):
    h = harness()
    for k in range(10):
        h.observe(1.0 + k / 30)
    h.tick_and_wait()
    assert h.core.worker.wait_idle(5)
    status, values = h.diagnostics()
    assert status.level == 0 and status.name == "cosmos3_ros: policy_node" and status.hardware_id == "cuda"
    assert float(values["input rate wrist (Hz)"]) == pytest.approx(30.0, rel=0.01)
    assert float(values["input rate joint_state (Hz)"]) == pytest.approx(30.0, rel=0.01)
    for key in ("inference latency last (s)", "ros overhead p99 (ms)", "observation age at snapshot (s)"):
        assert float(values[key]) >= 0
    assert values["chunks published"] == "1" and values["snapshots skipped"] == "0"
    assert values["dry_run"] == "True" and values["mode"] == "policy"


def test_shutdown_waits_for_a_running_inference_and_joins_the_thread(harness):
    h = Harness(model=FakeModel(RELEASED_DROID_POLICY, delay_s=0.3))
    h.observe(1.0)
    h.core.on_timer()
    deadline = time.monotonic() + 5
    while not h.core.worker.busy and time.monotonic() < deadline:
        time.sleep(0.001)
    h.observe(2.0)
    h.core.on_timer()  # pending behind the running one: dropped at shutdown
    assert h.core.shutdown(timeout=5)
    assert not h.core.worker.alive
    assert len(h.publish.messages["action_chunk"]) == 1
    assert h.core.on_timer() == "paused"


# ----- time: stamps ahead of the clock, backward clock jumps (issue 9 section 7, issue 10 bug 6) ------------

def test_an_input_stamped_far_ahead_of_the_clock_is_dropped_and_counted(harness):
    h = harness()
    h.observe(1.0)
    # One camera frame an hour ahead: kept, it would be the newest wrist frame until the clock caught up.
    h.deliver(TOPICS["wrist"], image_msg(IMAGES["wrist"], round(3601.0 * 1e9)))
    _, values = h.diagnostics()
    assert values["future stamps dropped"] == "1"
    assert "3599.990 s ahead of the node clock (1.010 s)" in values["last error"]
    assert "max_future_stamp=1.0 s" in values["last error"]
    h.tick_and_wait()
    h.observe(2.0)
    h.tick_and_wait()  # later ticks are not stuck as "unsynchronised"
    assert h.core.diagnostics.skips["unsynchronised"] == 0


def test_an_input_within_max_future_stamp_is_kept(harness):
    h = harness(max_future_stamp=0.5)
    stamp = h.observe(1.0)
    h.clock.now = 1.0 - 0.4  # the inputs are now 0.4 s ahead: within the limit
    assert h.core.buffer.latest("wrist").stamp_ns == stamp
    h.deliver(TOPICS["wrist"], image_msg(IMAGES["wrist"], round(1.7 * 1e9)))  # 1.1 s ahead of 0.6 s
    assert h.core.buffer.latest("wrist").stamp_ns == stamp
    assert h.core.diagnostics.counts["future_stamps_dropped"] == 1


def test_a_backward_clock_jump_flushes_the_buffers_and_is_reported(harness):
    h = harness()
    for k in range(5):
        h.observe(40.0 + k / 10)
    h.tick_and_wait()
    # The bag loops: the clock goes back 30 s and the inputs start again from 10 s.
    h.clock.now = 10.0
    assert h.core.on_timer() == "clock_jumped_back"
    assert sum(h.core.buffer.sizes().values()) == 0
    status, values = h.diagnostics()
    assert values["clock jumps backward"] == "1"
    assert values["last clock jump"].startswith("back 30.")
    assert "node clock jumped back 30." in status.message and status.level == 1
    for k in range(5):
        h.observe(10.0 + k / 10)
    # Rates restart from the new time instead of dividing by a negative or tiny span.
    assert float(values["input rate wrist (Hz)"]) < 100
    assert float(h.diagnostics()[1]["input rate wrist (Hz)"]) == pytest.approx(10.0, rel=0.01)
    h.tick_and_wait()  # the next tick serves the new inputs


def test_the_clock_standing_still_is_not_a_jump(harness):
    h = harness()
    h.observe(1.0)
    h.tick_and_wait()
    assert h.core.on_timer() == "no_new_observation"
    assert h.core.diagnostics.counts["clock_jumps_backward"] == 0


def test_stamps_are_not_judged_before_sim_time_starts(harness):
    h = harness()
    h.clock.now = 0.0  # use_sim_time before the first /clock message
    h.deliver(TOPICS["wrist"], image_msg(IMAGES["wrist"], round(1700000000.0 * 1e9)))
    assert h.core.buffer.latest("wrist") is not None
    assert h.core.diagnostics.counts["future_stamps_dropped"] == 0
