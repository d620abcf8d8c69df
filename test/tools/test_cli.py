"""The ``cosmos3-ros`` CLI on files: outputs written, bad input exits 2 with one line and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cosmos_test_inputs import DROID_STATE
from PIL import Image
from safetensors.torch import save_file

from cosmos3_ros.tools.cli import main


@pytest.fixture(scope="module")
def scene(tmp_path_factory, droid_cameras) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scene")
    paths = {}
    for name, image in droid_cameras.items():
        paths[name] = folder / f"{name}.png"
        Image.fromarray(image).save(paths[name])
    frames = folder / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(256, 320, 3), dtype=np.uint8)
    for i in range(12):  # natural order matters: frame_10 after frame_9
        Image.fromarray(np.roll(base, 5 * i, axis=1)).save(frames / f"frame_{i}.png")
    paths["frames"] = frames
    paths["image"] = frames / "frame_0.png"
    return paths


def _cameras(scene) -> list[str]:
    return [arg for name in ("wrist", "exterior_1", "exterior_2") for arg in ("--camera", f"{name}={scene[name]}")]


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_released_policy_writes_action_json_and_mp4(tiny_checkpoint, scene, tmp_path, capsys):
    from cosmos3_ros.processing.video_io import read_frames

    out = tmp_path / "policy"
    code, err = _run(["run", "--checkpoint", tiny_checkpoint, *_cameras(scene), "--state", json.dumps(DROID_STATE),
                      "--prompt", "put the cube in the bowl", "--chunk", "8", "--out", out], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "policy_action.json").read_text())
    assert doc["shape"] == [8, 8] and np.asarray(doc["data"]).shape == (8, 8)
    assert doc["mode"] == "policy" and doc["profile"] == "released_droid_policy" and doc["domain_id"] == 8
    assert doc["dimension_names"][-1] == "gripper" and doc["dt"] == pytest.approx(1 / 15)
    assert {"preprocess", "vae_encode", "denoise", "vae_decode", "total"} <= set(doc["timings_ms"])
    assert "denoise step 4/4" in err  # progress per stage
    frames = read_frames(tmp_path / "policy.mp4", 1000)
    assert len(frames) == 9 and frames[0].shape == (528, 640, 3)  # content 540x640 -> 33x40 latent -> 528x640


def test_noise_file_reproduces_a_seeded_run(tiny_checkpoint, scene, tmp_path, capsys):
    import torch

    common = ["run", "--checkpoint", tiny_checkpoint, *_cameras(scene), "--state", json.dumps(DROID_STATE),
              "--prompt", "p", "--chunk", "4", "--steps", "2", "--no-video"]
    assert _run([*common, "--seed", "5", "--out", tmp_path / "seeded"], capsys)[0] == 0
    generator = torch.Generator().manual_seed(5)
    noise = {"video": torch.randn((1, 48, 2, 33, 40), generator=generator),
             "action": torch.randn((5, 64), generator=generator)}
    save_file(noise, tmp_path / "noise.safetensors")
    assert _run([*common, "--seed", "99", "--noise", tmp_path / "noise.safetensors", "--out", tmp_path / "given"],
                capsys)[0] == 0
    seeded = json.loads((tmp_path / "seeded_action.json").read_text())["data"]
    given = json.loads((tmp_path / "given_action.json").read_text())["data"]
    assert seeded == given
    assert not (tmp_path / "given.mp4").exists()


def test_base_profile_inverse_dynamics_on_a_frame_folder(tiny_checkpoint, scene, tmp_path, capsys):
    code, err = _run(["run", "--checkpoint", tiny_checkpoint, "--profile", "base", "--domain-name",
                      "bridge_orig_lerobot", "--mode", "inverse_dynamics", "--video", scene["frames"], "--chunk", "8",
                      "--steps", "2", "--resolution-tier", "256", "--no-video", "--prompt", "wipe",
                      "--out", tmp_path / "inv"], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "inv_action.json").read_text())
    assert doc["shape"] == [8, 10] and doc["domain_name"] == "bridge_orig_lerobot" and doc["domain_id"] == 7


def test_forward_dynamics_with_action_chunks_file(tiny_checkpoint, scene, tmp_path, capsys):
    actions = {"action_chunks": [[[0.1 * i] * 10 for i in range(3)]]}
    (tmp_path / "a.json").write_text(json.dumps(actions))
    code, err = _run(["run", "--checkpoint", tiny_checkpoint, "--profile", "base", "--mode", "forward_dynamics",
                      "--image", scene["image"], "--action-file", tmp_path / "a.json", "--chunk", "4", "--steps",
                      "2", "--resolution-tier", "256", "--prompt", "push", "--out", tmp_path / "fd"], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "fd_action.json").read_text())
    np.testing.assert_allclose(np.asarray(doc["data"])[:, 0], [0.0, 0.1, 0.2, 0.2], atol=1e-6)  # last row repeats
    assert (tmp_path / "fd.mp4").stat().st_size > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--image", "missing.png"], "image: file 'missing.png' does not exist"),
        (["--camera", "wrist"], "expected NAME=FILE"),
        (["--image", "{image}", "--state", "[1, 2"], "--state '[1, 2' is not JSON"),
        (["--image", "{image}", "--state", "[0,0,0,0,0,0,0,0]", "--mode", "forward_dynamics"],
         "forward_dynamics needs known actions"),
        (["--image", "{image}", "--state", "[0, 0, 0, 0, 0, 0, 0]"], "state: 7 columns; expected 8"),
        (["--image", "{image}", "--state", "[0,0,0,0,0,0,0,0]", "--mode", "inverse_dynamics"],
         "inverse_dynamics needs a video"),
        (["--image", "{image}", "--domain-id", "3"], "--domain-id needs --raw-action-dim"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tiny_checkpoint, scene, tmp_path, capsys, extra,
                                                           message):
    extra = [str(scene["image"]) if a == "{image}" else a for a in extra]
    code, err = _run(["run", "--checkpoint", tiny_checkpoint, "--prompt", "p", *extra, "--out", tmp_path / "x"],
                     capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("cosmos3-ros: error: ") and message in lines[-1]
    assert list(tmp_path.iterdir()) == []


def test_bad_checkpoint_exits_2(tmp_path, capsys):
    code, err = _run(["run", "--checkpoint", tmp_path / "nope", "--image", "x.png", "--prompt", "p",
                      "--out", tmp_path / "x"], capsys)
    assert code == 2 and "does not exist" in err.strip().splitlines()[-1]


def test_make_tiny_checkpoint_command(tmp_path, capsys):
    assert _run(["make-tiny-checkpoint", tmp_path / "t", "--seed", "3"], capsys)[0] == 0
    assert json.loads((tmp_path / "t" / "checkpoint.json").read_text())["seed"] == 3


@pytest.mark.parametrize("command", [[], ["run"], ["demo"], ["bag-infer"], ["bench"], ["make-tiny-checkpoint"]])
def test_help_is_plain_text_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":class:" not in text  # no RST markup
    if command:
        assert "example" in text and "cosmos3-ros " + command[0] in text


def test_run_help_states_defaults_units_and_that_out_is_a_prefix(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "output file prefix (not a folder)" in text and "demo and bag-infer take a folder" in text
    assert "(default: cpu)" in text and "in Hz" in text and "released: 4, base: 30" in text


def test_demo_says_its_outputs_are_noise(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--no-video"])
    assert code == 0
    assert "random weights, so its actions and rollout video are noise" in capsys.readouterr().err
