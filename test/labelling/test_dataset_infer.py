"""``cosmos3-ros dataset-infer`` on small LeRobot v2.1 and v3.0 datasets written at test time.

The datasets (``cosmos3_ros.labelling.synthetic_dataset``) hold three AV1 cameras at 128x96 whose square moves
4 px per frame, a state moving at known joint speeds and the recorded action one frame ahead. The model is the
tiny checkpoint with ``--chunk 4 --resolution-tier 256 --steps 1`` (five frames = two latent frames).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("av")

import pyarrow.parquet as pq

from cosmos3_ros.labelling.dataset_labelling import planner_stamps
from cosmos3_ros.labelling.lerobot_source import LeRobotDataset, parse_episodes
from cosmos3_ros.labelling.synthetic_dataset import (
    DROID_CAMERAS,
    GRIPPER_SPEED,
    JOINT_SPEED,
    frame_rgb,
    write_lerobot_dataset,
)
from cosmos3_ros.labelling.windows import grid_times
from cosmos3_ros.tools.cli import main

FAST = ["--chunk", "4", "--resolution-tier", "256", "--steps", "1"]
NAMES = [*(f"joint_{i}" for i in range(1, 8)), "gripper"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lerobot")
    return {
        # Episodes of 9, 5 and 9 frames at 15 fps: 2, 1 and 2 windows of 5 frames (stride 4).
        "v3.0": write_lerobot_dataset(root / "v30", version="v3.0", lengths=[9, 5, 9],
                                      tasks=("push the square", "slide the square")),
        # Episode 1 lost its wrist video; episode 2 is too short for one window.
        "v2.1": write_lerobot_dataset(root / "v21", version="v2.1", lengths=[9, 9, 4],
                                      drop={"video": (1, DROID_CAMERAS[0])}),
    }


def _run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _argv(dataset: Path, checkpoint: Path, out: Path, *extra) -> list:
    return ["dataset-infer", dataset, "--checkpoint", checkpoint, *FAST, "--out", out, *extra]


def _actions(out: Path) -> dict[tuple[int, int, int], np.ndarray]:
    table = pq.read_table(out / "actions.parquet").to_pydict()
    rows = zip(table["episode_index"], table["window_index"], table["step"], strict=True)
    return {key: np.array([table[n][i] for n in NAMES], dtype=np.float32) for i, key in enumerate(rows)}


@pytest.fixture(scope="module")
def v30_run(tiny_checkpoint, datasets, tmp_path_factory) -> Path:
    """An uninterrupted in-process run on the v3.0 dataset (5 windows)."""
    out = tmp_path_factory.mktemp("v30_run")
    assert main([str(a) for a in _argv(datasets["v3.0"], tiny_checkpoint, out)]) == 0
    return out


# ----- reading the dataset ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_frames_decode_at_their_timestamps_within_each_episode(datasets, version):
    dataset = LeRobotDataset.open(datasets[version])
    assert dataset.version == version and dataset.fps == 15.0 and dataset.video_keys() == list(DROID_CAMERAS)
    episode = dataset.episodes[2 if version == "v3.0" else 0]
    data = dataset.read_episode(episode, {"state": ("observation.state",)})
    assert list(data.frame_index) == list(range(episode.length))
    for camera, key in enumerate(DROID_CAMERAS[:2]):
        frames = dataset.decode(episode, key, [float(data.timestamps_s[i]) for i in (0, 3, 8)])
        for (t, image), n in zip(frames.items(), (0, 3, 8), strict=True):
            # AV1 is lossy, so find the square instead of comparing pixels: frame n has it at columns 8 + 4n ..
            # 8 + 4n + 15; a frame off by one would put its centre 4 px away.
            colour = frame_rgb(n, (96, 128), camera)[32, 8 + 4 * n]
            near = np.abs(image.astype(int) - colour.astype(int)).sum(axis=2) < 90
            centre = np.nonzero(near)[1].mean()
            assert abs(centre - (8 + 4 * n + 7.5)) < 1.0, (version, key, t, centre)


def test_float32_timestamps_snap_to_the_grid_so_the_hold_takes_the_frame_of_each_tick():
    ts = (np.arange(10) / 15.0).astype(np.float32)  # what LeRobot stores: 0.06666667 is after 1/15 s
    stamps = planner_stamps(ts, 15.0)
    np.testing.assert_array_equal(stamps, grid_times(0, 15.0, range(10)))
    jitter = planner_stamps(np.array([0.0, 0.5 / 15.0]), 15.0)  # half a period off the grid: kept as it is
    assert jitter[1] == round(0.5 / 15.0 * 1e9)


def test_writing_an_av1_video_keeps_the_thread_on_its_scheduling_policy(tmp_path):
    import os

    from cosmos3_ros.labelling.synthetic_dataset import keep_thread_scheduling

    before = (os.sched_getscheduler(0), os.sched_getparam(0))
    write_lerobot_dataset(tmp_path / "ds", version="v3.0", lengths=[4], codec="libsvtav1")
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before
    if os.geteuid() == 0:  # as root the encoder does switch the thread; the guard is what puts it back
        import av

        with av.open(str(tmp_path / "raw.mp4"), "w") as container:
            stream = container.add_stream("libsvtav1", rate=15)
            stream.height, stream.width, stream.pix_fmt = 64, 64, "yuv420p"
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            with keep_thread_scheduling():
                list(stream.encode(frame))
                list(stream.encode())
                switched = os.sched_getscheduler(0)
        assert switched == os.SCHED_FIFO  # what SVT-AV1 does to the thread as root (why the guard exists)
        assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before


def test_episode_spec_selects_ranges_and_names_an_unknown_episode():
    assert parse_episodes("0-2,5,8-", list(range(10))) == [0, 1, 2, 5, 8, 9]
    assert parse_episodes(None, [3, 1]) == [1, 3]
    with pytest.raises(Exception, match="episode 12 is not in the dataset"):
        parse_episodes("12", list(range(10)))


# ----- whole runs -------------------------------------------------------------------------------------------


def test_v30_run_writes_named_columns_one_row_per_action_step_and_never_crosses_episodes(v30_run):
    table = pq.read_table(v30_run / "actions.parquet")
    assert table.column_names == ["episode_index", "frame_index", "timestamp", "window_index", "mode", "step",
                                  *NAMES]
    rows = table.to_pydict()
    keys = sorted({(e, w) for e, w in zip(rows["episode_index"], rows["window_index"], strict=True)})
    assert keys == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)] and table.num_rows == 5 * 4
    for i in range(table.num_rows):  # row k of window w applies to frame 4w + k + 1 of its own episode
        expected = 4 * rows["window_index"][i] + rows["step"][i] + 1
        assert rows["frame_index"][i] == expected
        assert rows["timestamp"][i] == pytest.approx(expected / 15.0, abs=1e-9)
    doc = json.loads((v30_run / "actions.json").read_text())
    assert doc["complete"] and doc["windows_done"] == 5 and doc["skipped"] == []
    assert doc["lerobot_version"] == "v3.0" and doc["dimension_names"] == NAMES
    journal = [json.loads(line) for line in (v30_run / "windows.jsonl").read_text().splitlines()[1:]]
    tasks = {(j["episode"], j["window"]): j["task"] for j in journal if j["kind"] == "chunk"}
    assert tasks[(0, 0)] == "push the square" and tasks[(1, 0)] == "slide the square"  # the dataset's task_index
    assert {j["seed"] for j in journal if j["kind"] == "chunk" and j["episode"] == 2} == {20000, 20001}


def test_v30_evaluation_against_recorded_action_and_state_with_the_hold_baseline(v30_run):
    report = json.loads((v30_run / "eval.json").read_text())
    assert set(report["references"]) == {"recorded_action", "recorded_state"} and report["windows"] == 5
    state = report["references"]["recorded_state"]
    assert set(state) == {"inverse_dynamics", "hold_baseline"}
    # Holding the pose is off by |speed| x (k + 1) / fps at row k: over rows 0..3 the mean is |speed| x 2.5 / 15.
    baseline = state["hold_baseline"]
    assert baseline["overall"]["arm_mae"] == pytest.approx(np.mean(np.abs(JOINT_SPEED)) * 2.5 / 15, rel=1e-5)
    assert baseline["arm_mae_by_step"] == pytest.approx([np.mean(np.abs(JOINT_SPEED)) * (k + 1) / 15
                                                         for k in range(4)], rel=1e-5)
    # The action recorded at frame j is the state at j + 1: against it the baseline errs exactly as much.
    action = report["references"]["recorded_action"]["hold_baseline"]
    assert action["overall"] == pytest.approx(baseline["overall"], rel=1e-5)
    assert action["per_dimension"]["gripper"]["max_abs"] == pytest.approx(GRIPPER_SPEED * 4 / 15, rel=1e-5)
    assert sorted(report["plots"]) == [f"eval_inverse_dynamics_episode_{e}.png" for e in (0, 1, 2)]
    assert (v30_run / report["plots"][0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_v21_bad_episodes_are_skipped_with_a_reason_naming_them(tiny_checkpoint, datasets, tmp_path, capsys):
    code, err = _run(_argv(datasets["v2.1"], tiny_checkpoint, tmp_path, "--no-plots"), capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "actions.json").read_text())
    assert doc["complete"] and doc["windows_done"] == 2 and doc["lerobot_version"] == "v2.1"
    reasons = {s["episode"]: s["reason"] for s in doc["skipped"]}
    assert sorted(reasons) == [1, 2]
    assert reasons[1].startswith("episode 1") and "episode_000001.mp4" in reasons[1] and "missing" in reasons[1]
    assert reasons[2].startswith("episode 2") and "too few" in reasons[2]
    assert "skipped: episode 1" in err and "windows/s" in err and "ETA" in err
    assert sorted({e for e, _, _ in _actions(tmp_path)}) == [0]


def test_interrupted_run_resumes_to_the_same_actions(tiny_checkpoint, datasets, v30_run, tmp_path, capsys,
                                                      monkeypatch):
    from cosmos3_ros.processing.predictor import ActionPredictor

    original = ActionPredictor.predict
    calls: list[int] = []
    stop = {"at": 3}

    def interrupt(self, request, *args, **kwargs):
        calls.append(request.seed)
        if len(calls) == stop["at"]:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a model call
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(ActionPredictor, "predict", interrupt)
    argv = _argv(datasets["v3.0"], tiny_checkpoint, tmp_path, "--no-plots")
    code, err = _run(argv, capsys)
    assert code == 130 and "interrupted" in err
    partial = json.loads((tmp_path / "actions.json").read_text())
    assert not partial["complete"] and partial["windows_done"] == 2
    calls.clear()
    stop["at"] = 0
    code, err = _run([*argv, "--resume"], capsys)
    assert code == 0, err
    assert calls == [10000, 20000, 20001]  # only the windows not yet journaled, with their own seeds
    resumed, full = _actions(tmp_path), _actions(v30_run)
    assert resumed.keys() == full.keys()
    for key in full:  # same process, same frames, same seed: the same arithmetic
        np.testing.assert_array_equal(resumed[key], full[key])


def _journal_keys(out: Path) -> list[tuple]:
    lines = [json.loads(line) for line in (out / "windows.jsonl").read_text().splitlines()[1:]]
    return [(j["episode"], j["window"], j["mode"]) for j in lines if j["kind"] == "chunk"]


def test_two_worker_processes_survive_one_dying_and_journal_each_chunk_once(tiny_checkpoint, datasets, v30_run,
                                                                            tmp_path, capsys):
    from cosmos3_ros.labelling.dataset_labelling import label_dataset
    from cosmos3_ros.tools.cli import build_parser
    from cosmos3_ros.tools.run import profile_overrides

    sys.path.insert(0, str(Path(__file__).parent))
    from dying_job import DyingJob

    (datasets["v3.0"].parent / "died_v30").unlink(missing_ok=True)
    args = build_parser().parse_args([str(a) for a in _argv(datasets["v3.0"], tiny_checkpoint, tmp_path / "out",
                                                            "--workers", "2", "--no-plots")])
    stats = label_dataset(args, profile_overrides(args), lambda text: print(text, file=sys.stderr),
                          job_class=DyingJob)
    err = capsys.readouterr().err
    assert "exited (exit code 3)" in err and "episode 2 goes back to the queue" in err
    assert (datasets["v3.0"].parent / "died_v30").exists()
    keys = _journal_keys(tmp_path / "out")
    assert len(keys) == len(set(keys)) == 5  # exactly once, although episode 2 ran twice
    assert json.loads((tmp_path / "out" / "actions.json").read_text())["complete"]
    assert stats["workers"] == 2
    parallel, inline = _actions(tmp_path / "out"), _actions(v30_run)
    assert parallel.keys() == inline.keys()
    # A worker uses 1 thread, this process 2: the CPU kernels sum in another order, and the fp32 rounding
    # difference (~1e-7 relative) grows through the random tiny model to ~2e-5 on actions of order 1.
    for key in inline:
        np.testing.assert_allclose(parallel[key], inline[key], rtol=0, atol=1e-4)


def test_a_worker_dying_mid_message_blocks_no_other_worker():
    # With one multiprocessing.Queue for all workers, a worker ended while its feeder thread held the queue's
    # shared write lock blocked every other worker for good (seen: a CI run hung in the test above).
    from cosmos3_ros.labelling.workers import ProcessBackend

    sys.path.insert(0, str(Path(__file__).parent))
    from dying_job import HalfSentJob

    backend = ProcessBackend(HalfSentJob(), ["cpu", "cpu"])
    dying, living = backend.start()
    events = []

    def until(predicate, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            events.extend(backend.poll(0.1))
        return predicate()

    try:
        assert until(lambda: sum(e[0] == "idle" for e in events) == 2)
        backend.submit(dying, "die")
        backend.submit(living, "a")
        assert until(lambda: ("dead", dying) in [e[:2] for e in events] and ("item", living, {"task": "a"}) in events)
        backend.submit(living, "b")  # the survivor still delivers
        assert until(lambda: ("item", living, {"task": "b"}) in events)
        # an item the dying worker sent before it ended arrives whole; a cut-off one does not arrive at all
        assert all(len(e[2]["blob"]) == 50_000_000 for e in events if e[0] == "item" and e[1] == dying)
    finally:
        backend.close()


def test_ray_actors_survive_one_dying_and_journal_each_chunk_once(tiny_checkpoint, datasets, v30_run, tmp_path,
                                                                  capsys):
    ray = pytest.importorskip("ray")
    from cosmos3_ros.labelling.dataset_labelling import label_dataset
    from cosmos3_ros.tools.cli import build_parser
    from cosmos3_ros.tools.run import profile_overrides

    here = str(Path(__file__).parent)
    sys.path.insert(0, here)
    from dying_job import DyingJob

    marker = datasets["v3.0"].parent / "died_v30"
    marker.unlink(missing_ok=True)
    # A local Ray instance on this machine only; its workers import dying_job from this folder.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"PYTHONPATH": here, "OMP_NUM_THREADS": "1"}})
    try:
        args = build_parser().parse_args([str(a) for a in _argv(datasets["v3.0"], tiny_checkpoint, tmp_path / "out",
                                                                "--workers", "2", "--ray", "local", "--no-plots")])
        label_dataset(args, profile_overrides(args), lambda text: print(text, file=sys.stderr), job_class=DyingJob)
        err = capsys.readouterr().err
        # Many bags go through the same actors (one Ray session for the whole test: it starts slowly).
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
        from bag_fixtures import BagSpec, CameraSpec, write_bag

        bags = tmp_path / "bags"
        for name, frames in (("a", 15), ("b", 6)):
            write_bag(bags / name, BagSpec(cameras=[CameraSpec("/camera/image_raw", 30.0, frames)]), "mcap")
        code = main([str(a) for a in ["bag-infer", bags, "--checkpoint", tiny_checkpoint, "--profile", "base",
                                      "--chunk", "2", "--resolution-tier", "256", "--steps", "1", "--camera-topic",
                                      "/camera/image_raw", "--task", "push", "--no-plots", "--workers", "2", "--ray",
                                      "local", "--out", tmp_path / "bag_out"]])
        assert code == 0, capsys.readouterr().err
        listing = json.loads((tmp_path / "bag_out" / "bags.json").read_text())["bags"]
        assert [(b["status"], b["windows_done"]) for b in listing] == [("done", 3), ("done", 1)]
    finally:
        ray.shutdown()
    assert marker.exists() and "died" in err and "episode 2 goes back to the queue" in err
    keys = _journal_keys(tmp_path / "out")
    assert len(keys) == len(set(keys)) == 5
    assert json.loads((tmp_path / "out" / "actions.json").read_text())["complete"]
    for key, value in _actions(v30_run).items():  # actors use 1 thread: see the process test
        np.testing.assert_allclose(_actions(tmp_path / "out")[key], value, rtol=0, atol=1e-4)


# ----- bad input: exit 2, one line ------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "needle"), [
    (["--camera", "wrist=observation.images.nope"], "observation.images.nope"),
    (["--camera", "wrist"], "NAME=FEATURE_KEY"),
    (["--episodes", "7"], "episode 7 is not in the dataset"),
    (["--state-key", "observation.nope"], "observation.nope"),
    (["--workers", "2", "--device", "cuda:3"], "--workers 2"),
    (["--workers", "2", "--checkpoint", "/no/such_checkpoint"], "such_checkpoint"),  # before any worker starts
])
def test_bad_flags_exit_2_with_one_line(tiny_checkpoint, datasets, tmp_path, capsys, extra, needle):
    code, err = _run(_argv(datasets["v3.0"], tiny_checkpoint, tmp_path / "out", *extra), capsys)
    errors = [line for line in err.splitlines() if line.startswith("cosmos3-ros: error:")]
    assert code == 2 and len(errors) == 1 and needle in errors[0], err
    assert not (tmp_path / "out" / "actions.json").exists()


def test_not_a_dataset_exits_2_naming_the_folder(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = _run(_argv(tmp_path / "empty", tiny_checkpoint, tmp_path / "out"), capsys)
    assert code == 2 and "meta/info.json" in err and "empty" in err


def test_batches_go_to_predict_batch_within_an_episode(tiny_checkpoint, datasets, v30_run, tmp_path, capsys,
                                                       monkeypatch):
    from cosmos3_ros.processing.predictor import ActionPredictor

    sizes: list[int] = []

    def predict_batch(self, requests):
        sizes.append(len(requests))
        return [self.predict(r) for r in requests]

    monkeypatch.setattr(ActionPredictor, "predict_batch", predict_batch, raising=False)
    code, err = _run(_argv(datasets["v3.0"], tiny_checkpoint, tmp_path, "--batch", "2", "--no-plots"), capsys)
    assert code == 0, err
    assert sizes == [2, 2]  # episodes of 2, 1 and 2 windows: never a batch across episodes
    batched, single = _actions(tmp_path), _actions(v30_run)
    assert batched.keys() == single.keys() and all(np.array_equal(batched[k], single[k]) for k in single)


def test_a_checkpoint_that_does_not_load_in_the_workers_stops_at_once(tiny_checkpoint, datasets, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    shard = sorted((broken / "transformer").glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:100])  # the configuration reads fine; the weights do not
    code, err = _run(_argv(datasets["v3.0"], broken, tmp_path / "out", "--workers", "2"), capsys)
    errors = [line for line in err.splitlines() if line.startswith("cosmos3-ros: error:")]
    assert code == 2 and len(errors) == 1 and "model load failed" in errors[0], err
    assert err.count("model load failed") == 1  # not retried: a second load would fail the same way
    assert not (tmp_path / "out").exists()  # nothing was labelled: no journal to --resume, no folder


def test_v20_reads_like_v21_and_other_versions_are_refused_by_name(datasets, tmp_path):
    copy = shutil.copytree(datasets["v2.1"], tmp_path / "v20")
    info = json.loads((copy / "meta" / "info.json").read_text())
    (copy / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v2.0"}))
    assert sorted(LeRobotDataset.open(copy).episodes) == [0, 1, 2]
    (copy / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(Exception, match=r"codebase_version 'v1\.6'; expected one of"):
        LeRobotDataset.open(copy)
