"""Every bad input of issue 9 (and the ones handled before): exit code 2, one line naming the value, no file left.

Cases that can be judged without the model run against a *configs-only* checkpoint (every config file, no weight
file): if anything tried to load weights it would fail with a missing-shard error instead of the expected one, so
each of those cases also proves the check happens before the weights load. Cases that need a result (a disk that
fills up while writing, an interrupt while writing) run the real tiny checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cosmos3_ros.tools import cli

STATE = json.dumps([0.0, -0.6, 0.0, -2.2, 0.0, 1.6, 0.8, 0.1])
SMALL = ["--chunk", "4", "--steps", "1"]  # keeps the cases that run the model short


@pytest.fixture(scope="module")
def configs_only(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint's folder layout and configs without a single weight file."""
    root = tmp_path_factory.mktemp("configs_only") / "ckpt"
    shutil.copytree(tiny_checkpoint, root, ignore=shutil.ignore_patterns("*.safetensors"))
    assert not list(root.rglob("*.safetensors"))
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory, droid_cameras):
    """Good camera images and every bad input file."""
    folder = tmp_path_factory.mktemp("inputs")
    for name, image in droid_cameras.items():
        Image.fromarray(image).save(folder / f"{name}.png")
    Image.new("RGB", (1, 1)).save(folder / "tiny.png")
    _png_header_only(folder / "huge.png", 20000, 20000)
    (folder / "ragged.json").write_text(json.dumps({"data": [[0.0] * 8, [0.0] * 7]}))
    (folder / "strings.json").write_text(json.dumps({"data": [["a"] * 8]}))
    (folder / "huge_values.json").write_text(json.dumps({"data": [[1e30] * 8]}))
    (folder / "bad.mp4").write_bytes(os.urandom(4096))
    return folder


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares width x height (what a decoder sees first) with almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _cameras(files: Path, **replace: str) -> list[str]:
    argv = []
    for name in ("wrist", "exterior_1", "exterior_2"):
        argv += ["--camera", f"{name}={replace.get(name, files / f'{name}.png')}"]
    return argv


def _run(capsys, checkpoint, out: Path, *extra: str) -> tuple[int, str]:
    argv = ["run", "--checkpoint", str(checkpoint), "--prompt", "put the marker in the cup", "--out", str(out),
            *extra]
    code = cli.main(argv)
    return code, capsys.readouterr().err


def _assert_refused(code: int, err: str, expected: str, folder: Path) -> None:
    errors = [line for line in err.splitlines() if line.startswith("cosmos3-ros: error:")]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(errors) == 1 and expected in errors[0], err
    assert not [p for p in folder.iterdir() if p.name != "keep"], "a file was left behind"


# (flags, expected fragment of the one-line message); each runs against the configs-only checkpoint.
BEFORE_WEIGHTS = {
    "chunk_huge": (["--chunk", "100000"], "chunk=100000; expected an integer in [1, 128]"),
    "steps_huge": (["--steps", "100000"], "steps=100000; expected an integer in [1, 1000]"),
    "fps_inf": (["--fps", "inf"], "fps=inf; expected a finite number in (0, 120]"),
    "fps_zero": (["--fps", "0"], "fps=0.0; expected a finite number in (0, 120]"),
    "guidance_huge": (["--guidance", "1e30"], "guidance=1e+30; expected a finite number in [0, 100]"),
    "guidance_nan": (["--guidance", "nan"], "guidance=nan; expected a finite number in [0, 100]"),
    "flow_shift_inf": (["--flow-shift", "inf"], "flow_shift=inf; expected a finite number in (0, 100]"),
    "guidance_steps_negative": (["--guidance-steps", "-1"], "guidance_steps=-1; expected None or an integer"),
    "guidance_interval_reversed": (["--guidance-interval", "900", "100"], "guidance_interval=(900, 100)"),
    "device_banana": (["--device", "banana"], "device 'banana'; expected cpu, cuda or cuda:N"),
    "device_missing_gpu": (["--device", "cuda:7"], "device 'cuda:7', but this machine has"),
    "state_nan": (["--state", "[NaN, 0, 0, 0, 0, 0, 0, 0]"], "--state: value nan at index [0, 0]; expected finite"),
    "state_huge": (["--state", "[1e30, 0, 0, 0, 0, 0, 0, 0]"], "--state: value 1e+30 at index [0, 0]; expected |x|"),
    "state_not_json": (["--state", "[0, 1"], "--state '[0, 1' is not JSON"),
    "state_wrong_width": (["--state", "[0, 1]"], "state: 2 columns; expected 8"),
    "prompt_too_long": (["--prompt", "x" * 5000], "task: 5000 characters; expected at most 4000"),
    "fps_fraction_released": (["--fps", "7.5"], "fps=7.5; expected a whole number"),
    "seed_negative": (["--seed", "-3"], "seed=-3; expected an integer in [0, 2**63)"),
}


@pytest.mark.parametrize("case", sorted(BEFORE_WEIGHTS))
def test_bounds_are_checked_before_the_weights_load(case, capsys, configs_only, files, tmp_path):
    flags, expected = BEFORE_WEIGHTS[case]
    state = [] if "--state" in flags else ["--state", STATE]
    code, err = _run(capsys, configs_only, tmp_path / "o", *_cameras(files), *state, *flags)
    _assert_refused(code, err, expected, tmp_path)


@pytest.mark.parametrize(("which", "expected"), [
    ("tiny.png", "image is 1x1; expected at least 16x16"),
    ("huge.png", "huge.png' is 400 MP; expected at most 40 MP"),
    ("missing.png", "does not exist"),
    ("bad.mp4", "is not a readable image"),
])
def test_bad_camera_images(which, expected, capsys, configs_only, files, tmp_path):
    code, err = _run(capsys, configs_only, tmp_path / "o", *_cameras(files, wrist=str(files / which)),
                     "--state", STATE)
    _assert_refused(code, err, expected, tmp_path)


@pytest.mark.parametrize(("which", "expected"), [
    ("ragged.json", "not a numeric [T, D] array (rows of different lengths)"),
    ("strings.json", "not a numeric [T, D] array"),
    ("huge_values.json", "value 1e+30 at index [0, 0]; expected |x| <= 10000"),
    ("missing.json", "does not exist"),
])
def test_bad_action_files(which, expected, capsys, configs_only, files, tmp_path):
    code, err = _run(capsys, configs_only, tmp_path / "o", *_cameras(files), "--state", STATE, "--mode",
                     "forward_dynamics", "--action-file", str(files / which))
    _assert_refused(code, err, expected, tmp_path)


def test_bad_video_is_summarised_in_one_line(capsys, configs_only, files, tmp_path):
    code, err = _run(capsys, configs_only, tmp_path / "o", "--mode", "inverse_dynamics", "--video",
                     str(files / "bad.mp4"), "--state", STATE, *SMALL)
    _assert_refused(code, err, "is not readable by ffmpeg", tmp_path)
    assert "ffmpeg version" not in err and "configuration:" not in err  # no banner
    assert len(err.splitlines()[-1]) < 400


def test_output_name_taken_by_a_folder(capsys, configs_only, files, tmp_path):
    (tmp_path / "x_action.json").mkdir()
    code, err = _run(capsys, configs_only, tmp_path / "x", *_cameras(files), "--state", STATE)
    _assert_refused(code, err, "x_action.json' is a folder; expected a file name", tmp_path / "x_action.json")
    assert [p.name for p in tmp_path.iterdir()] == ["x_action.json"]


def test_output_folder_missing(capsys, configs_only, files, tmp_path):
    code, err = _run(capsys, configs_only, tmp_path / "nope" / "o", *_cameras(files), "--state", STATE)
    _assert_refused(code, err, "nope' does not exist", tmp_path)


def _mount_tmpfs(folder: Path, options: str) -> bool:
    """A small tmpfs at ``folder`` (needs root and mount rights); False where it cannot be mounted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                            check=False)
    return result.returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True, check=False)


def test_read_only_output_folder(capsys, configs_only, files, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = _mount_tmpfs(folder, "ro,size=64k")
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("cannot mount a read-only tmpfs here and root ignores permission bits")
        folder.chmod(0o555)  # not root: permission bits make the folder unwritable
    try:
        code, err = _run(capsys, configs_only, folder / "o", *_cameras(files), "--state", STATE)
        _assert_refused(code, err, "is not writable", folder)
    finally:
        if mounted:
            _umount(folder)
        else:
            folder.chmod(0o755)


def _cli_subprocess(args: list[str], file_size_limit: int | None = None) -> subprocess.Popen:
    """The CLI in its own interpreter; with ``file_size_limit`` its files (and ffmpeg's) may not grow past it.

    The limit is set by the child itself before the CLI starts, not by a ``preexec_fn``: that would run Python
    between fork and exec in this threaded test process.
    """
    command = [sys.executable, "-m", "cosmos3_ros.tools.cli", *args]
    if file_size_limit is not None:
        command = [sys.executable, "-c", LIMITED_CLI, str(file_size_limit), *args]
    return subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


# write() fails with EFBIG (SIGXFSZ ignored, which ffmpeg inherits) the way a full disk fails it with ENOSPC
LIMITED_CLI = """
import resource, runpy, signal, sys
limit = int(sys.argv.pop(1))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv[0] = "cosmos3-ros"
runpy.run_module("cosmos3_ros.tools.cli", run_name="__main__")
"""


def test_full_disk_leaves_nothing_and_exits_2(tiny_checkpoint, files, tmp_path):
    """A 64 KB tmpfs when it can be mounted; otherwise the same failure made real by a 64 KB file-size limit on the
    process (and ffmpeg, its child), which fails the writes with EFBIG the way a full disk fails them with ENOSPC."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = _mount_tmpfs(folder, "size=64k")
    try:
        args = ["run", "--checkpoint", str(tiny_checkpoint), "--prompt", "put the marker in the cup", "--out",
                str(folder / "o"), *_cameras(files), "--state", STATE, *SMALL]
        process = _cli_subprocess(args, None if mounted else 64 * 1024)
        _, err = process.communicate(timeout=600)
        errors = [line for line in err.splitlines() if line.startswith("cosmos3-ros: error:")]
        assert process.returncode == 2, err
        assert "Traceback" not in err and len(errors) == 1 and "could not write" in errors[0], err
        assert "wrote " not in err
        assert list(folder.iterdir()) == []
    finally:
        if mounted:
            _umount(folder)


def test_interrupt_while_writing_leaves_nothing(tiny_checkpoint, files, tmp_path):
    args = ["run", "--checkpoint", str(tiny_checkpoint), "--prompt", "put the marker in the cup", "--out",
            str(tmp_path / "o"), *_cameras(files), "--state", STATE, *SMALL]
    process = _cli_subprocess(args)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "writing outputs" in line:
            process.send_signal(signal.SIGINT)
            break
    _, rest = process.communicate(timeout=300)
    err = "".join(lines) + rest
    names = sorted(p.name for p in tmp_path.iterdir())
    if process.returncode == 0:  # the interrupt came after the rename: every output is complete
        assert names == ["o.mp4", "o_action.json"]
        return
    assert process.returncode == 130 and "interrupted; nothing was written" in err, err
    assert names == [], names


def test_a_good_run_writes_complete_outputs_with_the_gripper_in_range(capsys, tiny_checkpoint, files, tmp_path):
    from cosmos3_ros.processing.video_io import count_mp4_frames

    code, err = _run(capsys, tiny_checkpoint, tmp_path / "o", *_cameras(files), "--state", STATE, *SMALL)
    assert code == 0, err
    doc = json.loads((tmp_path / "o_action.json").read_text())
    gripper = np.asarray(doc["data"])[:, 7]
    assert gripper.min() >= 0.0 and gripper.max() <= 1.0 and doc["gripper"]["clamped_to"] == [0.0, 1.0]
    assert count_mp4_frames(tmp_path / "o.mp4") == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4", "o_action.json"]


def test_caption_over_the_token_budget(capsys, tiny_checkpoint, files, tmp_path):
    """Under the character bound but over the 1024-token caption budget (digits are one token each)."""
    task = " ".join(["7"] * 1900)  # 3799 characters
    code, err = _run(capsys, tiny_checkpoint, tmp_path / "o", *_cameras(files), "--state", STATE, *SMALL,
                     "--prompt", task)
    _assert_refused(code, err, "tokens; expected at most 1024 (shorten the task sentence)", tmp_path)


def test_bag_infer_read_only_output_folder(capsys, tiny_checkpoint, tmp_path):
    """bag-infer with --out inside a read-only filesystem: exit 2, one line, nothing written (issue 9 section 4)."""
    from bag_fixtures import BagSpec, CameraSpec, write_bag

    bag = write_bag(tmp_path / "bag", BagSpec(cameras=[CameraSpec("/cam/image_raw", 30.0, 6)]))
    folder = tmp_path / "ro"
    folder.mkdir()
    if not _mount_tmpfs(folder, "ro,size=64k"):
        if os.geteuid() == 0:
            pytest.skip("cannot mount a read-only tmpfs here and root ignores permission bits")
        folder.chmod(0o555)
    try:
        code = cli.main(["bag-infer", str(bag), "--checkpoint", str(tiny_checkpoint), "--profile", "base",
                         "--chunk", "2", "--steps", "1", "--camera-topic", "/cam/image_raw", "--task", "pick",
                         "--out", str(folder / "labels")])
        _assert_refused(code, capsys.readouterr().err, "labels'", folder)  # EROFS, or EACCES when not root
    finally:
        if not _umount_if_mounted(folder):
            folder.chmod(0o755)


def _umount_if_mounted(folder: Path) -> bool:
    mounted = os.path.ismount(folder)
    if mounted:
        _umount(folder)
    return mounted
