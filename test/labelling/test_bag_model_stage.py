"""bag-infer keeps going when the model stage refuses a window (issue 9, section 8)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cosmos3_ros.tools.cli import main

# The synthetic bag writer lives next to the bag-infer tests (no conftest here: test_cli imports test/conftest.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from bag_fixtures import T0_NS, BagSpec, CameraSpec, stamp, write_bag

CAM = "/camera/image_raw"
# chunk 4: five frames = two latent frames, so the model sees more than frame 0 of each window.
FAST = ["--chunk", "4", "--resolution-tier", "256", "--steps", "1"]


def test_a_resolution_change_mid_bag_skips_its_window_names_topic_and_stamp_and_resume_skips_it(
        tiny_checkpoint, tmp_path, capsys):
    # 10 frames at 128x160 then 15 at 90x160 on the same topic (30 Hz): the 15 fps windows start at ticks 0, 4, 8
    # (bag frames 0-8, 8-16, 16-24): window 1 holds frame 8 (128x160), then 10.. (90x160); window 2 is all 90x160.
    spec = BagSpec(cameras=[CameraSpec(CAM, 30.0, 10), CameraSpec(CAM, 30.0, 15, (90, 160),
                                                                   first_ns=stamp(T0_NS, 10, 30.0))])
    bag = write_bag(tmp_path / "bag", spec)
    out = tmp_path / "out"
    argv = [str(a) for a in ["bag-infer", bag, "--checkpoint", tiny_checkpoint, "--profile", "base", *FAST,
                             "--camera-topic", CAM, "--task", "push", "--batch", "2", "--out", out]]
    assert main(argv) == 0
    err = capsys.readouterr().err
    doc = json.loads((out / "actions.json").read_text())
    assert [w["window"] for w in doc["windows"]] == [0, 2] and doc["complete"]
    (skipped,) = doc["skipped"]
    assert skipped["window"] == 1
    # Frame 1 of window 1 is the message stamped at frame 10 of the bag: 10/30 s after T0.
    assert f"window 1: model stage failed on {CAM} frame 1 stamped {stamp(T0_NS, 10, 30.0) / 1e9:.3f} s" in \
        skipped["reason"]
    assert "window 1 skipped" in err

    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resuming: 3 of 3 windows" in err and "loading checkpoint" not in err
    assert json.loads((out / "actions.json").read_text())["skipped"] == doc["skipped"]
