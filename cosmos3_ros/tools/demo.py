"""``cosmos3-ros demo``: the main job on an embedded default, no downloads.

Writes a tiny random checkpoint (published layout), renders a synthetic three-camera DROID scene, runs the
released-policy profile on it (policy mode, state row, CFG) and writes ``demo_action.json`` and
``demo.mp4``. The actions and the rollout video of random weights are noise; the run exercises every stage a
real checkpoint goes through.
"""

from __future__ import annotations

import argparse
import json
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

Stage = Callable[[str], None]
CAMERA_HW = (360, 640)  # DROID cameras as the released policy was trained on (H, W)
DEMO_STATE = [0.0, -0.6, 0.0, -2.2, 0.0, 1.6, 0.8, 0.1]  # a Franka ready pose (rad) + gripper (0 open .. 1 closed)


def synthetic_camera(name: str, seed: int = 0) -> np.ndarray:
    """A deterministic ``uint8 [360, 640, 3]`` tabletop view: table, a red cube, a blue bowl, a grey arm."""
    rng = np.random.default_rng(zlib.crc32(name.encode()) + seed)
    h, w = CAMERA_HW
    img = Image.new("RGB", (w, h), (200, 205, 210))
    draw = ImageDraw.Draw(img)
    horizon = int(h * (0.25 if name == "wrist" else 0.45))
    draw.rectangle([0, horizon, w, h], fill=(150, 110, 70))  # table
    shift = {"wrist": 0, "exterior_1": -90, "exterior_2": 90}.get(name, 0)
    cx, cy = w // 2 + shift, (horizon + h) // 2
    draw.rectangle([cx - 40, cy - 40, cx + 40, cy + 40], fill=(200, 30, 30))  # cube
    draw.ellipse([cx + 90, cy - 30, cx + 210, cy + 50], fill=(40, 60, 190))  # bowl
    if name != "wrist":
        draw.polygon([(w // 2 - shift, 0), (w // 2 - shift + 60, 0), (cx + 20, cy - 60), (cx - 10, cy - 70)],
                     fill=(120, 120, 125))  # arm
    noise = rng.integers(-6, 7, size=(h, w, 3))
    return np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``demo``."""
    parser.add_argument("--out", default="demo_out", help="output folder (created if missing)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N")
    parser.add_argument("--no-video", action="store_true", help="skip the rollout decode")
    parser.set_defaults(handler=demo_command)


def demo_command(args: argparse.Namespace, stage: Stage) -> int:
    """Checkpoint -> scene -> ``cosmos3-ros run`` equivalent."""
    from ..engine.tiny_checkpoint import make_tiny_checkpoint
    from . import run

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "tiny_checkpoint"
    if not (checkpoint / "model_index.json").exists():
        stage(f"writing a tiny random checkpoint to {checkpoint}")
        make_tiny_checkpoint(checkpoint, seed=0)
    cameras = []
    for name in ("wrist", "exterior_1", "exterior_2"):
        path = out / f"scene_{name}.png"
        Image.fromarray(synthetic_camera(name)).save(path)
        cameras.append(f"{name}={path}")
    stage("synthetic scene: " + ", ".join(cameras))
    parser = argparse.ArgumentParser()
    run.add_arguments(parser)
    argv = ["--checkpoint", str(checkpoint), "--profile", "released_droid_policy", "--mode", "policy",
            "--prompt", "put the red cube in the blue bowl", "--state", json.dumps(DEMO_STATE),
            "--device", args.device, "--out", str(out / "demo")]
    for camera in cameras:
        argv += ["--camera", camera]
    if args.no_video:
        argv.append("--no-video")
    code = run.run_command(parser.parse_args(argv), stage)
    stage("note: the demo checkpoint has random weights, so its actions and rollout video are noise; the demo "
          "shows that every stage runs. For real actions use the released checkpoint (see README, Checkpoints).")
    return code
