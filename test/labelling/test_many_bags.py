"""``bag-infer`` over several bags or a folder of bags, in this process and on two worker processes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from cosmos3_ros.labelling.many_bags import find_bags, output_names
from cosmos3_ros.tools.cli import main

# The synthetic bag writer lives next to the bag-infer tests (no conftest here: test_cli imports test/conftest.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from bag_fixtures import BagSpec, CameraSpec, write_bag

CAM = "/camera/image_raw"
FAST = ["--chunk", "2", "--resolution-tier", "256", "--steps", "1"]


@pytest.fixture(scope="module")
def bag_folder(tmp_path_factory):
    """Two small bags (3 and 1 windows), a ROS 1 copy of the first, and a broken rosbag2 folder."""
    root = tmp_path_factory.mktemp("bags")
    write_bag(root / "a_mcap", BagSpec(cameras=[CameraSpec(CAM, 30.0, 15)]), "mcap")
    write_bag(root / "b_sqlite3", BagSpec(cameras=[CameraSpec(CAM, 30.0, 6)]), "sqlite3")
    write_bag(root / "a.bag", BagSpec(cameras=[CameraSpec(CAM, 30.0, 15)]), "rosbag1")
    (root / "broken").mkdir()
    (root / "broken" / "metadata.yaml").write_text("not: [a bag")
    return root


def _windows(out):
    doc = json.loads((out / "actions.json").read_text())
    return {w["window"]: np.asarray(w["inverse_dynamics"]["actions"], dtype=np.float32) for w in doc["windows"]}


def test_a_folder_of_bags_expands_and_names_are_unique(bag_folder):
    bags = find_bags([str(bag_folder), str(bag_folder / "a_mcap")])
    assert [b.name for b in bags] == ["a.bag", "a_mcap", "b_sqlite3", "broken", "a_mcap"]
    assert output_names(bags) == ["a", "a_mcap", "b_sqlite3", "broken", "a_mcap_2"]


def test_many_bags_in_this_process_then_on_two_workers_give_the_same_labels(tiny_checkpoint, bag_folder, tmp_path,
                                                                            capsys):
    argv = ["bag-infer", bag_folder, "--checkpoint", tiny_checkpoint, "--profile", "base", *FAST,
            "--camera-topic", CAM, "--task", "push", "--no-plots"]
    code = main([str(a) for a in [*argv, "--out", tmp_path / "one"]])
    err = capsys.readouterr().err
    assert code == 0, err
    listing = {b["bag"].rsplit("/", 1)[-1]: b for b in json.loads((tmp_path / "one" / "bags.json").read_text())["bags"]}
    assert listing["a_mcap"]["windows_done"] == 3 and listing["b_sqlite3"]["windows_done"] == 1
    assert listing["broken"]["status"] == "failed" and "broken" in listing["broken"]["reason"]
    assert "3 of 4 bags labelled, 1 failed" in err
    # The ROS 1 copy holds the same frames: the same labels, as a single-bag run gives (seed + k per bag).
    a, ros1 = _windows(tmp_path / "one" / "a_mcap"), _windows(tmp_path / "one" / "a")
    assert a.keys() == ros1.keys() == {0, 1, 2}
    for k in a:
        np.testing.assert_array_equal(a[k], ros1[k])

    shutil.rmtree(bag_folder / "broken")  # the worker run below labels the three good bags
    code = main([str(a) for a in [*argv, "--workers", "2", "--out", tmp_path / "two"]])
    err = capsys.readouterr().err
    assert code == 0, err
    for name in ("a_mcap", "b_sqlite3", "a"):
        one, two = _windows(tmp_path / "one" / name), _windows(tmp_path / "two" / name)
        assert one.keys() == two.keys()
        for k in one:  # workers use 1 thread, this process 2: see test_dataset_infer's worker test
            np.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-4)
