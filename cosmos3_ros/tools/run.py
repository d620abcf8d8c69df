"""``cosmos3-ros run``: one request on files -> ``PREFIX_action.json`` (+ ``PREFIX.mp4`` when a rollout is decoded)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError, OutputError
from ..processing import limits
from ..processing.profiles import MODES, PROFILES, RESOLUTION_TIERS, SCHEDULES, VIEW_POINT_SENTENCES

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
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint folder in the published layout (e.g. from hf download "
                             "nvidia/Cosmos3-Nano-Policy-DROID --local-dir DIR)")
    parser.add_argument("--profile", default="released_droid_policy", choices=sorted(PROFILES),
                        help="action contract; every flag below left unset takes this profile's value")
    parser.add_argument("--domain-name", help="embodiment domain (base profile), e.g. bridge_orig_lerobot")
    parser.add_argument("--domain-id", type=int, help="integer domain id (needs --raw-action-dim)")
    parser.add_argument("--raw-action-dim", type=int, help="action width of the embodiment")
    parser.add_argument("--chunk", type=int, help=f"actions per chunk, 1..{limits.MAX_CHUNK} (released: 32, base: 16)")
    parser.add_argument("--fps", type=float, help="control / conditioning rate in Hz, (0, 120] (both profiles: 15)")
    parser.add_argument("--resolution-tier", type=int, choices=RESOLUTION_TIERS,
                        help="canvas tier in pixels (both profiles: 480)")
    parser.add_argument("--view-point", choices=sorted(VIEW_POINT_SENTENCES),
                        help="camera sentence of the caption (released: concat_view, base: ego_view)")
    parser.add_argument("--prompt-format", choices=("plain", "json"),
                        help="caption style (released: plain, or what checkpoint.json declares; base: json)")
    parser.add_argument("--steps", type=int, help="denoising steps, 1..1000 (released: 4, base: 30)")
    parser.add_argument("--guidance", type=float,
                        help="classifier-free guidance scale, 0..100; 1 = off (released: 3, base: 1)")
    parser.add_argument("--guidance-steps", type=int, help="apply CFG only on the first K steps (default: all)")
    parser.add_argument("--guidance-interval", type=int, nargs=2, metavar=("LO", "HI"),
                        help="apply CFG only on steps whose integer timestep t has LO < t < HI, 0..1001 "
                             "(an Edge checkpoint declares 960 1001; default: every step)")
    parser.add_argument("--schedule", choices=SCHEDULES,
                        help="native: NVIDIA's linear-shift sigmas (released default); checkpoint: the "
                             "checkpoint's scheduler config; checkpoint_native: that config on the native grid "
                             "(base default: what model_index.json's use_native_flow_schedule declares)")
    parser.add_argument("--flow-shift", type=float,
                        help="shift of the native schedule, (0, 100] (released: 5); needs --schedule native")
    parser.add_argument("--system-prompt", choices=("on", "off"),
                        help="prepend the generation system prompt (released: off; base: what model_index.json's "
                             "default_use_system_prompt declares, true when absent)")
    parser.add_argument("--seed", type=int, help="noise seed (profile default: 0)")
    parser.add_argument("--noise-rng", choices=("torch", "numpy"),
                        help="how the seed becomes noise: torch (default; diffusers' convention) or numpy "
                             "(np.random.RandomState per modality, NVIDIA's server: reproduces its chunk for a seed)")
    parser.add_argument("--stats", help="action statistics JSON for de-normalisation (keys mean/std/min/max/q01/q99)")
    parser.add_argument("--normalization", choices=("meanstd", "minmax", "quantile", "quantile_rot"),
                        help="how model actions map to physical units (default: none, actions are physical)")
    parser.add_argument("--binarize-gripper", action="store_true", help="threshold gripper outputs at 0.5")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N")
    parser.add_argument("--devices", help="two GPUs for the two CFG branches, e.g. cuda:0,cuda:1 (overrides --device)")
    parser.add_argument("--weights", default="bf16", choices=("bf16", "fp8"),
                        help="fp8: transformer linear weights stored in FP8 (fits a 24 GB GPU)")
    parser.add_argument("--evaluator", default="cached", choices=("cached", "reference"),
                        help="cached text K/V, or the uncached reference loop (slower; same result)")


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
        "stats_file": args.stats, "noise_rng": getattr(args, "noise_rng", None),
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
    parser.add_argument("--prompt", required=True, help="task sentence, e.g. \"put the marker in the cup\"")
    parser.add_argument("--mode", choices=MODES, help="what to compute (both profiles: policy)")
    parser.add_argument("--action-file", help="known actions for forward_dynamics: JSON {\"shape\": [T, D], "
                        "\"data\": [[...], ...]} or {\"action_chunks\": [...]}, physical units")
    parser.add_argument("--condition-frames", type=_int_list, help="clean latent frames, e.g. 0,1")
    parser.add_argument("--state", help="robot state as JSON: released profile [q1..q7 (rad), gripper (0 open .. "
                        "1 closed)]")
    parser.add_argument("--noise", help="safetensors with float32 'video' [1,48,T,H,W] and 'action' [rows,64] noise")
    parser.add_argument("--no-video", action="store_true", help="do not decode / write the rollout mp4")
    parser.add_argument("--latents", action="store_true",
                        help="also write the final model-space latents to PREFIX_latents.safetensors")
    parser.add_argument("--out", required=True, metavar="PREFIX",
                        help="output file prefix (not a folder): PREFIX_action.json and PREFIX.mp4; the folder "
                             "must exist")
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


def output_paths(prefix: str, rollout: bool, latents: bool) -> dict[str, Path]:
    """The files ``run --out PREFIX`` writes: ``PREFIX_action.json``, ``PREFIX.mp4``, ``PREFIX_latents.safetensors``."""
    out = Path(prefix)
    paths = {"json": out.with_name(out.name + "_action.json")}
    if rollout:
        paths["mp4"] = out.with_name(out.name + ".mp4")
    if latents:
        paths["latents"] = out.with_name(out.name + "_latents.safetensors")
    return paths


def check_output_folder(flag: str, folder: Path, targets: list[Path] = ()) -> None:
    """Refuse, before any work, an output folder that is missing, not a folder, or not writable, and targets
    that are folders. Writability is tried with a real temporary file (permission bits do not show a read-only
    mount or a full quota).
    """
    import tempfile

    if not folder.exists():
        raise OutputError(f"{flag}: folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise OutputError(f"{flag}: {str(folder)!r} is not a folder")
    for target in targets:
        if target.is_dir():
            raise OutputError(f"{flag}: {str(target)!r} is a folder; expected a file name to write")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cosmos3_ros_probe_"):
            pass
    except OSError as exc:
        raise OutputError(f"{flag}: folder {str(folder)!r} is not writable ({exc.strerror or exc})") from exc


def run_command(args: argparse.Namespace, stage: Stage) -> int:
    """Check every input, load, run one request, write the outputs atomically (all of them or none)."""
    import numpy as np

    from ..engine.checkpoint import CheckpointInfo
    from ..processing.actions import action_json, as_action_array, load_action_file
    from ..processing.images import read_image_file
    from ..processing.predictor import ActionPredictor, resolve_profile
    from ..processing.request import ActionRequest
    from ..processing.video_io import AtomicOutputs, read_frames

    # 1. Everything that needs no model, so a bad value costs no checkpoint load.
    cameras = _parse_cameras(args.camera)
    if cameras is not None and (args.image or args.video):
        raise InputError("give --camera, --image or --video, not several")
    if cameras is None and not args.image and not args.video:
        raise InputError("an observation is required: --image, --video or --camera NAME=FILE")
    limits.check_device(args.device)
    limits.check_task_text(args.prompt)
    state = None
    if args.state is not None:
        try:
            state = json.loads(args.state)
        except json.JSONDecodeError as exc:
            raise InputError(f"--state {args.state!r} is not JSON ({exc})") from exc
        state = limits.check_values("--state", as_action_array(state, None, "--state"))
    actions = None
    if args.action_file:
        actions = limits.check_values(f"--action-file {args.action_file!r}", load_action_file(args.action_file))
    noise = _load_noise(args.noise)
    images = ({f"--camera {name}": path for name, path in cameras.items()} if cameras
              else {"--image": args.image} if args.image else {})
    decoded = {flag: read_image_file(path, flag) for flag, path in images.items()}
    paths = output_paths(args.out, rollout=not args.no_video, latents=args.latents)
    check_output_folder("--out", paths["json"].parent, list(paths.values()))
    # The profile from the checkpoint's config files (no weights): its bounds, and the widths of state and actions.
    profile = resolve_profile(args.profile, CheckpointInfo.read(args.checkpoint), profile_overrides(args))
    if state is not None and profile.use_state:
        as_action_array(state, profile.raw_action_dim, "state")
    if actions is not None:
        as_action_array(actions, profile.raw_action_dim, f"--action-file {args.action_file!r}")
    video = read_frames(args.video, profile.num_frames) if args.video else None

    # 2. The model (the profile and its bounds are checked again against the checkpoint's files, before weights).
    stage(f"loading checkpoint {args.checkpoint} on {args.device}")
    # One request: compiling layers and capturing CUDA graphs would cost far more than they save.
    predictor = ActionPredictor.load(args.checkpoint, args.profile, device=args.device,
                                     overrides=profile_overrides(args), decode_rollout=not args.no_video,
                                     evaluator=args.evaluator, compile_layers=False, cuda_graphs=False,
                                     devices=args.devices, weights=args.weights)
    profile = predictor.profile
    request = ActionRequest(
        task=args.prompt, mode=args.mode, video=video, state=state, actions=actions,
        image=decoded.get("--image"), decode_rollout=not args.no_video,
        cameras={name: decoded[f"--camera {name}"] for name in cameras} if cameras else None,
    )
    prediction = predictor.predict(request, noise=noise, progress=stage)
    if not np.all(np.isfinite(prediction.actions)):
        raise InputError("the model produced non-finite actions; nothing was written")

    # 3. Outputs: temporary names in the target folder, checked, then renamed together; nothing on failure.
    doc = action_json(
        prediction.actions, mode=prediction.mode, profile=prediction.profile, domain_name=prediction.domain_name,
        domain_id=prediction.domain_id, dimension_names=list(prediction.dimension_names), fps=prediction.fps,
        dt=1.0 / prediction.fps, seed=prediction.seed, noise_rng=profile.noise_rng,
        timings_ms={k: round(v, 3) for k, v in prediction.timings_ms.items()},
        rollout=paths["mp4"].name if prediction.rollout is not None else None,
        **gripper_note(profile),
    )
    stage("writing outputs")
    with AtomicOutputs() as outputs:
        outputs.write_text(paths["json"], json.dumps(doc, allow_nan=False))
        if prediction.rollout is not None:
            outputs.write_mp4(paths["mp4"], prediction.rollout, prediction.fps)
        if "latents" in paths:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in (prediction.latents or {}).items()},
                      str(outputs.temporary(paths["latents"])))
        written = outputs.commit()
    stage("wrote " + ", ".join(str(p) for p in written) + f" ({prediction.timings_ms['total']:.0f} ms)")
    return 0


def gripper_note(profile: Any) -> dict[str, Any]:
    """What the gripper column means, for the JSON (empty for profiles without a gripper column)."""
    if not profile.gripper_dims:
        return {}
    return {"gripper": {"columns": list(profile.gripper_dims), "clamped_to": [0.0, 1.0],
                        "binarized": bool(profile.binarize_gripper), "meaning": "0 open .. 1 closed"}}
