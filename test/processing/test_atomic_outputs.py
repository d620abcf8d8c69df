"""AtomicOutputs: every output of a run or none of them, and no temporary file left either way."""

from __future__ import annotations

import numpy as np
import pytest

from cosmos3_ros.errors import OutputError
from cosmos3_ros.processing.video_io import AtomicOutputs, count_mp4_frames, write_mp4


def test_commit_renames_every_file(tmp_path):
    with AtomicOutputs() as outputs:
        outputs.write_text(tmp_path / "a.json", "{}")
        outputs.write_mp4(tmp_path / "b.mp4", np.zeros((3, 32, 48, 3), np.uint8), 15.0)
        assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".mp4"]  # hidden temporary names
        assert not (tmp_path / "a.json").exists()
        outputs.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.mp4"]
    assert count_mp4_frames(tmp_path / "b.mp4") == 3


def test_a_failure_before_commit_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), AtomicOutputs() as outputs:
        outputs.write_text(tmp_path / "a.json", "{}")
        raise RuntimeError("the model failed")
    assert list(tmp_path.iterdir()) == []


def test_a_rename_that_fails_takes_back_the_ones_already_moved(tmp_path):
    (tmp_path / "b.json").mkdir()
    (tmp_path / "b.json" / "occupied").write_text("x")  # a non-empty folder cannot be replaced by a file
    with pytest.raises(OutputError, match="could not move the outputs into place"), AtomicOutputs() as outputs:
        outputs.write_text(tmp_path / "a.json", "{}")
        outputs.write_text(tmp_path / "b.json", "{}")
        outputs.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]


def test_write_mp4_is_complete_or_absent(tmp_path):
    path = write_mp4(np.random.default_rng(0).random((4, 30, 40, 3)), tmp_path / "v.mp4", 15.0)  # odd sides padded
    assert count_mp4_frames(path) == 4 and [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
    assert count_mp4_frames(tmp_path / "missing.mp4") == 0


# A fresh interpreter: a thread that decoded a LeRobot-style video with PyAV (its frame converter stays in the
# thread's locals) is alive while another thread writes an mp4, as in dataset-infer's decode threads or the
# test session that runs the labelling tests before the node's rollout writer.
FFMPEG_BESIDE_PYAV_THREAD = """
import sys, threading
import av, numpy as np
from cosmos3_ros.processing.video_io import count_mp4_frames, write_mp4

source, target = sys.argv[1], sys.argv[2]
with av.open(source, "w") as container:
    stream = container.add_stream("libx264", rate=15)
    stream.height, stream.width, stream.pix_fmt = 96, 128, "yuv420p"
    for i in range(4):
        frame = av.VideoFrame.from_ndarray(np.full((96, 128, 3), 40 * i, np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
decoded, finished = threading.Event(), threading.Event()

def decode():
    with av.open(source) as container:
        for frame in container.decode(container.streams.video[0]):
            frame.to_ndarray(format="rgb24")
    decoded.set()
    finished.wait()

thread = threading.Thread(target=decode)
thread.start()
decoded.wait()
write_mp4(np.zeros((5, 96, 128, 3), np.uint8), target, 15.0)
finished.set()
thread.join()
print(count_mp4_frames(target))
"""


def test_mp4_writing_does_not_hang_beside_a_thread_that_decoded_with_pyav(tmp_path):
    """imageio-ffmpeg's default ``preexec_fn`` made the forked child run Python; on Python 3.12 it freed that
    thread's PyAV converter and blocked forever in ``pthread_cond_destroy``, so ffmpeg never started (the rollout
    writer tests hung after the labelling tests). ffmpeg is now started without a ``preexec_fn``."""
    import os
    import signal
    import subprocess
    import sys

    pytest.importorskip("av")
    # its own session: on a hang the stuck forked copy is stopped with the script
    process = subprocess.Popen([sys.executable, "-c", FFMPEG_BESIDE_PYAV_THREAD, str(tmp_path / "source.mp4"),
                                str(tmp_path / "out.mp4")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("writing an mp4 beside a thread holding a PyAV converter hung (ffmpeg never started)")
    assert process.returncode == 0, err
    assert out.strip() == "5"
