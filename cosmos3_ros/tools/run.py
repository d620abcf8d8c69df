"""``cosmos3-ros run``: one request on files -> ``PREFIX_action.json`` (+ ``PREFIX.mp4`` when a rollout is decoded)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..processing.profiles import MODES, PROFILES, RESOLUTION_TIERS, VIEW_POINT_SENTENCES

Stage = Callable[[str], None]


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from exc
    if not values:
        raise argparse.ArgumentTypeError("expected at least one index")
    return values


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Checkpoint, profile and sampling flags shared by ``run`` and ``bag-infer``."""
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder (published layout)")
    parser.add_argument("--profile", default="released_droid_policy", choices=sorted(PROFILES))
    parser.add_argument("--domain-name", help="embodiment domain (base profile), e.g. bridge_orig_lerobot")
    parser.add_argument("--domain-id", type=int, help="integer domain id (needs --raw-action-dim)")
    parser.add_argument("--raw-action-dim", type=int, help="action width of the embodiment")
    parser.add_argument("--chunk", type=int, help="actions per chunk")
    parser.add_argument("--fps", type=float, help="control / conditioning rate (Hz)")
    parser.add_argument("--resolution-tier", type=int, choices=RESOLUTION_TIERS)
    parser.add_argument("--view-point", choices=sorted(VIEW_POINT_SENTENCES))
    parser.add_argument("--prompt-format", choices=("plain", "json"))
    parser.add_argument("--steps", type=int, help="denoising steps")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (1 = off)")
    parser.add_argument("--guidance-steps", type=int, help="apply CFG only on the first K steps")
    parser.add_argument("--guidance-interval", type=int, nargs=2, metavar=("LO", "HI"),
                        help="apply CFG only on steps whose integer timestep is in [LO, HI] (Edge: 960 1001)")
    parser.add_argument("--schedule", choices=("native", "checkpoint"),
                        help="native linear-shift sigmas, or the checkpoint's scheduler config")
    parser.add_argument("--flow-shift", type=float, help="shift of the native schedule")
    parser.add_argument("--system-prompt", choices=("on", "off"), help="prepend the generation system prompt")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--stats", help="action statistics JSON (de-normalisation)")
    parser.add_argument("--normalization", choices=("meanstd", "minmax", "quantile", "quantile_rot"))
    parser.add_argument("--binarize-gripper", action="store_true", help="threshold gripper outputs at 0.5")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--devices", help="two GPUs for the two CFG branches, e.g. cuda:0,cuda:1 (overrides --device)")
    parser.add_argument("--weights", default="bf16", choices=("bf16", "fp8"),
                        help="fp8: transformer linear weights stored in FP8 (fits a 24 GB GPU)")
    parser.add_argument("--evaluator", default="cached", choices=("cached", "reference"),
                        help="cached text K/V (default) or the uncached reference loop")


def profile_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Profile fields set on the command line."""
    if args.domain_id is not None and args.raw_action_dim is None:
        raise InputError("--domain-id needs --raw-action-dim (an integer id does not name an action width)")
    overrides: dict[str, Any] = {
        "domain_name": args.domain_name, "domain_id": args.domain_id, "raw_action_dim": args.raw_action_dim,
        "chunk": args.chunk, "fps": args.fps, "resolution_tier": args.resolution_tier,
        "view_point": args.view_point, "prompt_format": args.prompt_format, "steps": args.steps,
        "guidance": args.guidance, "guidance_steps": args.guidance_steps, "schedule": args.schedule,
        "guidance_interval": tuple(args.guidance_interval) if args.guidance_interval else None,
        "flow_shift": args.flow_shift, "seed": args.seed, "normalization": args.normalization,
        "binarize_gripper": True if args.binarize_gripper else None,
        "use_system_prompt": None if args.system_prompt is None else args.system_prompt == "on",
        "stats_file": args.stats,
    }
    if getattr(args, "condition_frames", None):
        overrides["cond_frames"] = args.condition_frames
    if getattr(args, "mode", None):
        overrides["mode"] = args.mode
    return overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``run``."""
    add_model_arguments(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", help="observation image (for the released profile: already composed)")
    source.add_argument("--video", help="video file or folder of frame images")
    parser.add_argument("--camera", action="append", default=[], metavar="NAME=FILE",
                        help="released profile: --camera wrist=F --camera exterior_1=F --camera exterior_2=F")
    parser.add_argument("--prompt", required=True, help="task sentence")
    parser.add_argument("--mode", choices=MODES)
    parser.add_argument("--action-file", help="known actions for forward_dynamics (JSON)")
    parser.add_argument("--condition-frames", type=_int_list, help="clean latent frames, e.g. 0,1")
    parser.add_argument("--state", help="robot state as JSON, e.g. '[q1, ..., q7, gripper]'")
    parser.add_argument("--noise", help="safetensors with float32 'video' [1,48,T,H,W] and 'action' [rows,64] noise")
    parser.add_argument("--no-video", action="store_true", help="do not decode / write the rollout mp4")
    parser.add_argument("--out", required=True, help="output prefix: PREFIX_action.json and PREFIX.mp4")
    parser.set_defaults(handler=run_command)


def _parse_cameras(items: list[str]) -> dict[str, str] | None:
    if not items:
        return None
    cameras: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--camera {item!r}; expected NAME=FILE")
        cameras[name] = path
    return cameras


def _load_noise(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise InputError(f"--noise {path!r} is not a readable safetensors file ({exc})") from exc
    missing = [k for k in ("video", "action") if k not in tensors]
    if missing:
        raise InputError(f"--noise {path!r} lacks {missing}; expected 'video' and 'action'")
    return tensors


def run_command(args: argparse.Namespace, stage: Stage) -> int:
    """Load, run one request, write the outputs atomically."""
    import numpy as np

    from ..processing.actions import action_json, load_action_file
    from ..processing.predictor import ActionPredictor
    from ..processing.request import ActionRequest
    from ..processing.video_io import read_frames, write_mp4

    cameras = _parse_cameras(args.camera)
    if cameras is not None and (args.image or args.video):
        raise InputError("give --camera, --image or --video, not several")
    if cameras is None and not args.image and not args.video:
        raise InputError("an observation is required: --image, --video or --camera NAME=FILE")
    state = None
    if args.state is not None:
        try:
            state = json.loads(args.state)
        except json.JSONDecodeError as exc:
            raise InputError(f"--state {args.state!r} is not JSON ({exc})") from exc
    noise = _load_noise(args.noise)
    actions = load_action_file(args.action_file) if args.action_file else None
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        raise InputError(f"--out {args.out!r}: folder {str(out.parent)!r} does not exist")

    stage(f"loading checkpoint {args.checkpoint} on {args.device}")
    # One request: compiling layers and capturing CUDA graphs would cost far more than they save.
    predictor = ActionPredictor.load(args.checkpoint, args.profile, device=args.device,
                                     overrides=profile_overrides(args), decode_rollout=not args.no_video,
                                     evaluator=args.evaluator, compile_layers=False, cuda_graphs=False,
                                     devices=args.devices, weights=args.weights)
    profile = predictor.profile
    video = read_frames(args.video, profile.num_frames) if args.video else None
    request = ActionRequest(task=args.prompt, mode=args.mode, image=args.image, cameras=cameras, video=video,
                            state=state, actions=actions, decode_rollout=not args.no_video)
    prediction = predictor.predict(request, noise=noise, progress=stage)

    json_path = out.with_name(out.name + "_action.json")
    mp4_path = out.with_name(out.name + ".mp4")
    doc = action_json(
        prediction.actions, mode=prediction.mode, profile=prediction.profile, domain_name=prediction.domain_name,
        domain_id=prediction.domain_id, dimension_names=list(prediction.dimension_names), fps=prediction.fps,
        dt=1.0 / prediction.fps, seed=prediction.seed, timings_ms={k: round(v, 3) for k, v in
                                                                   prediction.timings_ms.items()},
        rollout=mp4_path.name if prediction.rollout is not None else None,
    )
    if not np.all(np.isfinite(prediction.actions)):
        raise InputError("the model produced non-finite actions; nothing was written")
    stage("writing outputs")
    tmp_json = json_path.with_name(json_path.name + ".partial")
    tmp_json.write_text(json.dumps(doc))
    try:
        if prediction.rollout is not None:
            write_mp4(prediction.rollout, mp4_path, prediction.fps)
    except BaseException:
        tmp_json.unlink(missing_ok=True)
        raise
    os.replace(tmp_json, json_path)
    stage(f"wrote {json_path}" + (f" and {mp4_path}" if prediction.rollout is not None else "")
          + f" ({prediction.timings_ms['total']:.0f} ms)")
    return 0
