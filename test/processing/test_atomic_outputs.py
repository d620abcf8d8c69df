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
