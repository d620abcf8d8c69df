"""``cosmos3-ros bag-infer``: window planning, evaluation maths, journal, and whole runs on small synthetic bags.

Bags are written per session with the ``rosbags`` writers (mcap, sqlite3, ROS 1). Model runs use the tiny
checkpoint with ``--chunk 2 --resolution-tier 256 --steps 1`` so the whole file stays well under a minute and a
half on two CPU cores.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from bag_fixtures import (
    GRIPPER_SPEED,
    JOINT_SPEED,
    LOG_DELAY_NS,
    T0_NS,
    BagSpec,
    CameraSpec,
    joint_state_at,
    read_bag,
    stamp,
    write_bag,
)

from cosmos3_ros.errors import InputError
from cosmos3_ros.labelling.bag_source import StateRule, task_for
from cosmos3_ros.labelling.evaluation import error_summary, mae_by_step
from cosmos3_ros.labelling.outputs import ChunkRecord, Journal
from cosmos3_ros.labelling.windows import grid_times, held_values, hold_indices, plan_windows
from cosmos3_ros.tools.cli import main

FAST = ["--chunk", "2", "--resolution-tier", "256", "--steps", "1"]
CAM = "/camera/image_raw"
TASK = "push the yellow square to the right"
DT = round(1e9 / 15)


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("cosmos3-ros: error:")]


def _actions(out: Path) -> dict[tuple[int, str], np.ndarray]:
    doc = json.loads((out / "actions.json").read_text())
    return {(w["window"], mode): np.asarray(w[mode]["actions"], dtype=np.float32)
            for w in doc["windows"] for mode in ("inverse_dynamics", "policy") if mode in w}


# ----- bags ---------------------------------------------------------------------------------------------------

# 15 frames at 30 Hz = 0.467 s: the 15 fps grid has ticks 0..7, so chunk-2 windows start at ticks 0, 2, 4.
SINGLE = BagSpec(cameras=[CameraSpec(CAM, 30.0, 15)], task_topic="/task", tasks=[(0.0, TASK)])


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bags")
    jpeg = BagSpec(cameras=[CameraSpec(f"{CAM}/compressed", 30.0, 11, encoding="jpeg")])
    droid = BagSpec(
        cameras=[CameraSpec("/wrist/image_raw", 15.0, 9, (90, 160)),
                 CameraSpec("/ext1/image_raw/compressed", 15.0, 9, (90, 160), encoding="jpeg"),
                 CameraSpec("/ext2/image_raw", 15.0, 9, (90, 160), encoding="bgr8")],
        joint_topic="/joint_states", joint_duration_s=0.6, command_topic="/arm/joint_trajectory")
    depth = BagSpec(cameras=[CameraSpec(CAM, 30.0, 6, encoding="32FC1")])
    corrupt = BagSpec(cameras=[CameraSpec(f"{CAM}/compressed", 30.0, 11, encoding="jpeg", corrupt=(6,))])
    return {
        "mcap": write_bag(root / "single_mcap", SINGLE, "mcap"),
        "jpeg_sqlite3": write_bag(root / "jpeg_sqlite3", jpeg, "sqlite3"),
        "ros1": write_bag(root / "single.bag", SINGLE, "rosbag1"),
        "droid": write_bag(root / "droid_sqlite3", droid, "sqlite3"),
        "depth": write_bag(root / "depth_mcap", depth, "mcap"),
        "corrupt": write_bag(root / "corrupt_mcap", corrupt, "mcap"),
    }


@pytest.fixture(scope="module")
def base_run(tiny_checkpoint, bags, tmp_path_factory) -> Path:
    """An uninterrupted base-profile run on the mcap bag (3 windows), task from the bag."""
    out = tmp_path_factory.mktemp("base_run")
    code = main([str(a) for a in ["bag-infer", bags["mcap"], "--checkpoint", tiny_checkpoint, "--profile", "base",
                                  *FAST, "--camera-topic", CAM, "--task-topic", "/task", "--out", out]])
    assert code == 0
    return out


# ----- window planning (pure) ---------------------------------------------------------------------------------


def test_grid_ticks_are_rounded_from_the_origin_and_do_not_drift():
    times = grid_times(T0_NS, 15.0, [0, 1, 2, 15, 15 * 3600])
    assert times.tolist() == [T0_NS, T0_NS + 66_666_667, T0_NS + 133_333_333, T0_NS + 1_000_000_000,
                              T0_NS + 3600 * 1_000_000_000]


def test_zero_order_hold_takes_the_newest_stamp_at_or_before_each_time():
    stamps = np.array([10, 20, 20, 30])
    assert hold_indices(stamps, np.array([5, 10, 19, 20, 35])).tolist() == [-1, 0, 0, 2, 3]
    assert hold_indices(stamps, np.array([10, 20, 31]), strict=True).tolist() == [-1, 0, 3]


def test_held_values_are_nan_where_the_hold_is_too_old():
    held = held_values(np.array([0, 100]), np.array([[1.0], [2.0]]), np.array([-1, 50, 100, 160]), max_hold_ns=50)
    assert np.isnan(held[0, 0]) and held[1, 0] == 1.0 and held[2, 0] == 2.0 and np.isnan(held[3, 0])


def test_plan_resamples_a_30hz_camera_onto_the_15fps_grid():
    stamps = np.array([stamp(T0_NS, n, 30.0) for n in range(15)])
    plan = plan_windows({CAM: stamps}, None, fps=15.0, chunk=2, stride=2, max_hold_ns=2 * DT)
    assert [w.index for w in plan.windows] == [0, 1, 2] and not plan.skipped
    assert [w.t0_ns - T0_NS for w in plan.windows] == [0, 133_333_333, 266_666_667]
    assert [list(w.frames[CAM]) for w in plan.windows] == [[0, 2, 4], [4, 6, 8], [8, 10, 12]]


def test_plan_stride_one_overlaps_windows():
    stamps = np.array([stamp(T0_NS, n, 15.0) for n in range(6)])
    plan = plan_windows({CAM: stamps}, None, fps=15.0, chunk=2, stride=1, max_hold_ns=2 * DT)
    assert [list(w.frames[CAM]) for w in plan.windows] == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]]


def test_plan_starts_when_every_topic_has_a_message_and_honours_start_and_end():
    early = np.array([stamp(T0_NS, n, 15.0) for n in range(12)])
    late = early[3:]
    plan = plan_windows({"/a": early, "/b": late}, None, fps=15.0, chunk=2, stride=2, max_hold_ns=2 * DT)
    assert plan.origin_ns == late[0] and list(plan.windows[0].frames["/a"]) == [3, 4, 5]
    plan = plan_windows({"/a": early}, None, fps=15.0, chunk=2, stride=2, max_hold_ns=2 * DT,
                        start_ns=int(early[4]), end_ns=int(early[9]))
    assert [(list(w.frames["/a"])) for w in plan.windows] == [[4, 5, 6], [6, 7, 8]]


def test_plan_skips_a_window_whose_camera_held_a_frame_too_long():
    stamps = np.array([stamp(T0_NS, n, 15.0) for n in (0, 1, 2, 3, 7, 8, 9, 10, 11, 12)])  # frames 4..6 dropped
    plan = plan_windows({CAM: stamps}, None, fps=15.0, chunk=2, stride=2, max_hold_ns=2 * DT)
    assert [w.index for w in plan.windows] == [0, 1, 4, 5]
    assert [s.index for s in plan.skipped] == [2, 3]
    assert CAM in plan.skipped[0].reason and "max hold" in plan.skipped[0].reason


def test_plan_skips_windows_before_the_state_topic_is_fresh():
    cams = np.array([stamp(T0_NS, n, 15.0) for n in range(9)])
    state = np.array([cams[0], cams[4]])  # no joint state between frames 0 and 4, then stale after 4 + 2 periods
    plan = plan_windows({CAM: cams}, state, fps=15.0, chunk=2, stride=2, max_hold_ns=DT, state_name="/joint_states")
    assert [w.index for w in plan.windows] == [0, 2] and [w.state for w in plan.windows] == [0, 1]
    assert [s.index for s in plan.skipped] == [1, 3] and "/joint_states" in plan.skipped[0].reason


# ----- robot state, task, evaluation maths (pure) -------------------------------------------------------------


def test_state_rule_default_takes_seven_joints_and_the_eighth_position_as_gripper():
    rule = StateRule(arm_joints=7)
    names = [f"j{i}" for i in range(9)]
    positions = [0.1 * i for i in range(9)]
    np.testing.assert_allclose(rule.read(names, positions, "js"), [*positions[:7], 0.7])
    np.testing.assert_allclose(rule.read([], positions[:7], "js"), [*positions[:7], 0.0])  # no gripper: open


def test_state_rule_named_joints_and_named_gripper_are_mapped_to_closure():
    rule = StateRule(arm_joints=2, joint_names=("b", "a"), gripper_joint="finger", gripper_open=0.04,
                     gripper_closed=0.0)
    np.testing.assert_allclose(rule.read(["a", "finger", "b"], [1.0, 0.01, 2.0], "js"), [2.0, 1.0, 0.75])
    with pytest.raises(InputError, match="finger"):
        rule.read(["a", "b"], [1.0, 2.0], "js")


def test_task_in_force_is_the_newest_before_the_frame_else_the_first():
    tasks = [(100, "first"), (200, "second")]
    assert [task_for(tasks, t) for t in (50, 100, 199, 250)] == ["first", "first", "first", "second"]


def test_error_summary_reports_mae_rmse_and_max_per_dimension_and_over_the_arm():
    pred = np.array([[1.0, 0.0, 1.0], [3.0, 0.0, 1.0], [9.0, 9.0, 9.0]])
    ref = np.array([[0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [np.nan, 0.0, 0.0]])  # last row unknown: left out
    summary = error_summary(pred, ref, ["j1", "j2", "gripper"], arm_columns=[0, 1])
    assert summary["steps"] == 2
    assert summary["per_dimension"]["j1"] == {"mae": 2.0, "rmse": pytest.approx(np.sqrt(5.0)), "max_abs": 3.0}
    assert summary["overall"]["arm_mae"] == pytest.approx((1 + 3 + 0 + 2) / 4)
    assert summary["overall"]["mae"] == pytest.approx((1 + 3 + 0 + 2 + 1 + 1) / 6)
    assert mae_by_step(pred[None, :2], ref[None, :2], [0]) == [1.0, 3.0]


# ----- journal ------------------------------------------------------------------------------------------------


def _record(window: int) -> ChunkRecord:
    return ChunkRecord(window=window, mode="inverse_dynamics", t0_ns=window, start_ns=window + 1, stamp_ns=window,
                       log_ns=window, seed=window, task="t", actions=np.full((2, 3), 0.1 * window, np.float32),
                       model_s=0.5, frame_stamps_ns={CAM: [window]})


def test_journal_resume_keeps_whole_lines_and_drops_a_cut_off_one(tmp_path):
    journal = Journal.open(tmp_path, {"seed": 0}, resume=False)
    journal.append(_record(0))
    journal.append(_record(1))
    journal.close()
    with journal.path.open("a") as f:
        f.write('{"kind": "chunk", "window": 2, "mo')  # a crash mid-line
    resumed = Journal.open(tmp_path, {"seed": 0}, resume=True)
    assert resumed.done() == {(0, "inverse_dynamics"), (1, "inverse_dynamics")}
    np.testing.assert_array_equal(resumed.records[1].actions, _record(1).actions)
    assert journal.path.read_text().endswith("}\n")


def test_journal_refuses_other_settings_or_an_existing_journal_without_resume(tmp_path):
    Journal.open(tmp_path, {"seed": 0, "stride": 2}, resume=False).close()
    with pytest.raises(InputError, match="stride"):
        Journal.open(tmp_path, {"seed": 0, "stride": 1}, resume=True)
    with pytest.raises(InputError, match="--resume"):
        Journal.open(tmp_path, {"seed": 0, "stride": 2}, resume=False)


# ----- whole runs ---------------------------------------------------------------------------------------------


def test_base_run_writes_one_chunk_per_window_with_source_stamps(base_run):
    doc = json.loads((base_run / "actions.json").read_text())
    assert doc["complete"] and doc["windows_done"] == 3 and doc["skipped"] == []
    assert doc["storage"] == "mcap" and doc["chunk"] == 2 and doc["dimension_names"][0] == "dx"
    windows = doc["windows"]
    assert [w["t0_ns"] - T0_NS for w in windows] == [0, 133_333_333, 266_666_667]
    assert [w["seed"] for w in windows] == [0, 1, 2] and {w["task"] for w in windows} == {TASK}
    for k, w in enumerate(windows):
        frames = w["inverse_dynamics"]["frame_stamps_ns"][CAM]
        assert frames == [stamp(T0_NS, 4 * k + 2 * i, 30.0) for i in range(3)]  # every other 30 Hz frame
        assert w["inverse_dynamics"]["stamp_ns"] == frames[-1]  # the newest source stamp
        assert np.asarray(w["inverse_dynamics"]["actions"]).shape == (2, 10)
        assert "policy" not in w
    assert "not done" in doc["evaluation"] and not (base_run / "eval.json").exists()


def test_base_run_action_bag_holds_action_chunks_at_the_source_times(base_run):
    messages = read_bag(base_run / "actions")
    assert [topic for topic, _, _ in messages] == ["/cosmos3/action_chunk"] * 3
    doc = json.loads((base_run / "actions.json").read_text())
    for k, (_, log_ns, msg) in enumerate(messages):
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        start_ns = msg.start_time.sec * 10**9 + msg.start_time.nanosec
        window = doc["windows"][k]
        assert stamp_ns == window["inverse_dynamics"]["stamp_ns"] and log_ns == stamp_ns + LOG_DELAY_NS
        assert start_ns == T0_NS + round((2 * k + 1) * 1e9 / 15)  # t0 + 1/fps: the grid tick after t0
        assert (msg.mode, msg.profile, msg.chunk_length, msg.action_dim, msg.sequence_number) == (
            "inverse_dynamics", "base", 2, 10, k + 1)
        assert msg.dt == pytest.approx(1 / 15) and list(msg.dimension_names)[-1] == "gripper"
        np.testing.assert_array_equal(np.asarray(msg.data).reshape(2, 10),
                                      np.asarray(window["inverse_dynamics"]["actions"], np.float32))


def test_base_run_csv_has_one_row_per_action_step(base_run):
    rows = list(csv.DictReader((base_run / "actions.csv").open()))
    assert len(rows) == 3 * 2
    assert [int(r["window"]) for r in rows] == [0, 0, 1, 1, 2, 2] and [int(r["step"]) for r in rows[:2]] == [0, 1]
    assert int(rows[3]["time_ns"]) == T0_NS + 266_666_667  # row k applies at t0 + (k + 1) / fps: grid tick 4
    actions = _actions(base_run)
    assert float(rows[3]["dx"]) == float(actions[(1, "inverse_dynamics")][1, 0])


def test_interrupted_run_leaves_valid_partial_output_and_resume_matches_a_full_run(
        tiny_checkpoint, bags, base_run, tmp_path, capsys, monkeypatch):
    from cosmos3_ros.processing.predictor import ActionPredictor

    original = ActionPredictor.predict
    calls: list[int] = []
    stop_at = {"call": 2}

    def stop_on_second_call(self, request, *args, **kwargs):
        calls.append(request.seed)
        if len(calls) == stop_at["call"]:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a model call
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(ActionPredictor, "predict", stop_on_second_call)
    argv = ["bag-infer", bags["mcap"], "--checkpoint", tiny_checkpoint, "--profile", "base", *FAST,
            "--camera-topic", CAM, "--task-topic", "/task", "--out", tmp_path]
    code, err = _run(argv, capsys)
    assert code == 130 and "interrupted" in err
    partial = json.loads((tmp_path / "actions.json").read_text())
    assert not partial["complete"] and [w["window"] for w in partial["windows"]] == [0]
    assert len(read_bag(tmp_path / "actions")) == 1

    calls.clear()
    stop_at["call"] = 0
    code, err = _run([*argv, "--resume"], capsys)
    assert code == 0, err
    assert calls == [1, 2]  # only the unfinished windows ran, with their own seeds
    resumed, full = _actions(tmp_path), _actions(base_run)
    assert resumed.keys() == full.keys()
    for key in full:  # same seed -> the same actions, whether resumed or not
        np.testing.assert_array_equal(resumed[key], full[key])
    assert json.loads((tmp_path / "actions.json").read_text())["complete"]


def test_compressed_sqlite3_bag_with_seed_and_range_writes_sqlite3_output(tiny_checkpoint, bags, tmp_path, capsys):
    code, err = _run(["bag-infer", bags["jpeg_sqlite3"], "--checkpoint", tiny_checkpoint, "--profile", "base", *FAST,
                      "--camera-topic", f"{CAM}/compressed", "--task", TASK, "--seed", "7", "--start", "0.1",
                      "--storage", "sqlite3", "--out", tmp_path], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "actions.json").read_text())
    # 11 frames at 30 Hz end at 0.333 s; from 0.1 s (frame 3) one chunk-2 window fits: ticks at 0.1, 0.167, 0.233 s.
    assert [w["t0_ns"] for w in doc["windows"]] == [stamp(T0_NS, 3, 30.0)]
    assert [w["seed"] for w in doc["windows"]] == [7]
    assert doc["storage"] == "sqlite3" and any(p.suffix == ".db3" for p in (tmp_path / "actions").iterdir())
    assert len(read_bag(tmp_path / "actions")) == 1
    assert "windows/s" in err and "ETA" in err


def test_ros1_bag_is_read_and_inputs_can_be_copied(tiny_checkpoint, bags, base_run, tmp_path, capsys):
    code, err = _run(["bag-infer", bags["ros1"], "--checkpoint", tiny_checkpoint, "--profile", "base", *FAST,
                      "--camera-topic", CAM, "--task-topic", "/task", "--end", "0.2", "--copy-input-topics",
                      "--out", tmp_path], capsys)
    assert code == 0, err
    topics = [topic for topic, _, _ in read_bag(tmp_path / "actions")]
    assert topics.count("/cosmos3/action_chunk") == 1 and topics.count(CAM) == 15 and topics.count("/task") == 1
    np.testing.assert_array_equal(_actions(tmp_path)[(0, "inverse_dynamics")],
                                  _actions(base_run)[(0, "inverse_dynamics")])  # same frames, same seed


def test_released_profile_composes_three_cameras_and_evaluates_against_joint_states(
        tiny_checkpoint, bags, tmp_path, capsys):
    # chunk 4: five frames = two latent frames, so inverse dynamics sees more than the policy's first frame.
    chunk4 = ["--chunk", "4", "--resolution-tier", "256", "--steps", "1"]
    code, err = _run(["bag-infer", bags["droid"], "--checkpoint", tiny_checkpoint, *chunk4, "--mode", "policy",
                      "--camera-topic", "/wrist/image_raw", "--camera-topic", "/ext1/image_raw/compressed",
                      "--camera-topic", "/ext2/image_raw", "--joint-topic", "/joint_states", "--task", TASK,
                      "--command-topic", "/arm/joint_trajectory",
                      "--out", tmp_path], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "actions.json").read_text())
    assert doc["profile"] == "released_droid_policy" and doc["windows_done"] == 2
    for k, window in enumerate(doc["windows"]):
        t0_s = (window["t0_ns"] - T0_NS) / 1e9
        np.testing.assert_allclose(window["state"], joint_state_at(t0_s), atol=1e-9)  # the state row at t0
        inverse, policy = (np.asarray(window[m]["actions"]) for m in ("inverse_dynamics", "policy"))
        assert inverse.shape == policy.shape == (4, 8) and not np.array_equal(inverse, policy)
        assert window["policy"]["stamp_ns"] == stamp(T0_NS, 4 * k, 15.0)  # frame 0 (and the state) only
        assert window["inverse_dynamics"]["stamp_ns"] == stamp(T0_NS, 4 * k + 4, 15.0)
    assert {t for t, _, _ in read_bag(tmp_path / "actions")} == {"/cosmos3/action_chunk",
                                                                  "/cosmos3/policy/action_chunk"}

    report = json.loads((tmp_path / "eval.json").read_text())
    joints = report["references"]["joint_states"]
    assert set(joints) == {"inverse_dynamics", "policy", "hold_baseline"} and report["windows"] == 2
    for entry in joints.values():
        assert entry["steps"] == 8 and len(entry["arm_mae_by_step"]) == 4
        assert set(entry["per_dimension"]) == {*(f"joint_{i}" for i in range(1, 8)), "gripper"}
        assert set(entry["per_dimension"]["joint_1"]) == {"mae", "rmse", "max_abs"}
    # Holding the pose is off by |speed| x (k + 1) / fps at row k: the mean over rows 0..3 is |speed| x 2.5 / 15.
    baseline = joints["hold_baseline"]
    assert baseline["overall"]["arm_mae"] == pytest.approx(np.mean(np.abs(JOINT_SPEED)) * 2.5 / 15, rel=1e-6)
    assert baseline["per_dimension"]["gripper"]["max_abs"] == pytest.approx(GRIPPER_SPEED * 4 / 15, rel=1e-6)
    assert baseline["arm_mae_by_step"] == pytest.approx([np.mean(np.abs(JOINT_SPEED)) * (k + 1) / 15
                                                         for k in range(4)], rel=1e-6)
    # The command stamped at frame k targets frame k + 1: the same reference as the joint state there.
    commands = report["references"]["commands"]
    assert commands["hold_baseline"]["overall"] == pytest.approx(baseline["overall"], rel=1e-6)
    assert commands["inverse_dynamics"]["overall"] == pytest.approx(joints["inverse_dynamics"]["overall"], rel=1e-6)
    for name in report["plots"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(report["plots"]) == ["eval_inverse_dynamics.png", "eval_policy.png"]
    assert (tmp_path / "eval_policy.png").stat().st_size > 10_000


def test_batches_go_to_predict_batch_when_the_predictor_has_it(tiny_checkpoint, bags, base_run, tmp_path, capsys,
                                                              monkeypatch):
    from cosmos3_ros.processing.predictor import ActionPredictor

    sizes: list[int] = []

    def predict_batch(self, requests):
        sizes.append(len(requests))
        return [self.predict(r) for r in requests]

    monkeypatch.setattr(ActionPredictor, "predict_batch", predict_batch, raising=False)
    code, err = _run(["bag-infer", bags["mcap"], "--checkpoint", tiny_checkpoint, "--profile", "base", *FAST,
                      "--camera-topic", CAM, "--task-topic", "/task", "--batch", "2", "--out", tmp_path], capsys)
    assert code == 0, err
    assert sizes == [2, 1]
    batched, full = _actions(tmp_path), _actions(base_run)
    assert batched.keys() == full.keys() and all(np.array_equal(batched[k], full[k]) for k in full)


def test_a_corrupt_frame_skips_its_window_and_the_run_goes_on(tiny_checkpoint, bags, tmp_path, capsys):
    code, err = _run(["bag-infer", bags["corrupt"], "--checkpoint", tiny_checkpoint, "--profile", "base", *FAST,
                      "--camera-topic", f"{CAM}/compressed", "--task", TASK, "--out", tmp_path], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "actions.json").read_text())
    assert [w["window"] for w in doc["windows"]] == [0] and doc["complete"]  # window 1 holds frame 6
    assert [s["window"] for s in doc["skipped"]] == [1]
    assert f"{CAM}/compressed" in doc["skipped"][0]["reason"] and "corrupt" in doc["skipped"][0]["reason"]


# ----- bad input: exit 2, one line naming the topic or file ---------------------------------------------------


@pytest.mark.parametrize(("case", "needle"), [
    ("missing_topic", "/no/such/topic"),
    ("no_frames_in_range", CAM),
    ("depth_encoding", "32FC1"),
    ("missing_bag", "no_such_bag"),
    ("garbage_bag", "garbage"),
    ("missing_joint_topic", "--joint-topic"),
])
def test_bad_input_exits_2_with_one_line_naming_the_topic_or_file(case, needle, tiny_checkpoint, bags, tmp_path,
                                                                 capsys):
    bag, extra, profile = bags["mcap"], [], ["--profile", "base"]
    camera = CAM
    if case == "missing_topic":
        camera = "/no/such/topic"
    elif case == "no_frames_in_range":
        extra = ["--start", "100"]
    elif case == "depth_encoding":
        bag = bags["depth"]
    elif case == "missing_bag":
        bag = tmp_path / "no_such_bag"
    elif case == "garbage_bag":
        bag = tmp_path / "garbage"
        bag.mkdir()
        (bag / "metadata.yaml").write_text("not: [a bag")
    elif case == "missing_joint_topic":
        profile = ["--camera-topic", "/a", "--camera-topic", "/b"]
    out = tmp_path / "out"
    code, err = _run(["bag-infer", bag, "--checkpoint", tiny_checkpoint, *profile, *FAST, "--camera-topic", camera,
                      "--task", TASK, *extra, "--out", out], capsys)
    assert code == 2
    errors = _errors(err)
    assert len(errors) == 1 and needle in errors[0], err
    assert not (out / "actions.json").exists()


def test_resume_with_other_settings_exits_2_naming_the_setting(tiny_checkpoint, bags, base_run, capsys):
    code, err = _run(["bag-infer", bags["mcap"], "--checkpoint", tiny_checkpoint, "--profile", "base", *FAST,
                      "--camera-topic", CAM, "--task-topic", "/task", "--stride", "1", "--resume", "--out", base_run],
                     capsys)
    assert code == 2 and "stride" in _errors(err)[0]
