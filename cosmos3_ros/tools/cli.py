"""cosmos3-ros: run NVIDIA Cosmos3 action models on files, label bags, benchmark, write test checkpoints.

Sub-commands: run (one request on files), demo (tiny checkpoint + synthetic scene + policy), bag-infer (label
recorded bags with action chunks), dataset-infer (the same for LeRobot datasets), sim-loop (the node driving a
simulated FR3 in closed loop), bench (GPU latency against diffusers and the FLOP floor) and make-tiny-checkpoint.
Bad input exits with code 2 and one line on stderr; outputs are written only when the run succeeded (temporary
names in the target folder, checked, then renamed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import Cosmos3Error

PROG = "cosmos3-ros"

EXAMPLES = {
    "run": """example (released DROID policy; writes out/step_action.json and out/step.mp4):
  cosmos3-ros run --checkpoint ~/models/Cosmos3-Nano-Policy-DROID --device cuda \\
      --camera wrist=wrist.png --camera exterior_1=left.png --camera exterior_2=right.png \\
      --state '[0,-0.6,0,-2.2,0,1.6,0.8,0.0]' --prompt "put the marker in the cup" --out out/step

--out is a file-name PREFIX (run writes a few files for one request), while demo and bag-infer take a folder.
Units: --fps in Hz; state and actions in the profile's units (released: rad + gripper 0 open .. 1 closed).""",
    "demo": """example (no GPU, no download; the checkpoint has random weights, so the actions and the
rollout video are noise - the demo shows every stage runs, not what the model does):
  cosmos3-ros demo --out demo_out      # -> demo_out/demo_action.json, demo_out/demo.mp4""",
    "bag-infer": """example (writes the folder labels/):
  cosmos3-ros bag-infer episode_bag/ --checkpoint ~/models/Cosmos3-Nano-Policy-DROID --device cuda \\
      --camera-topic /wrist/image_raw/compressed --camera-topic /ext1/image_raw/compressed \\
      --camera-topic /ext2/image_raw/compressed --joint-topic /joint_states \\
      --task "put the marker in the cup" --out labels/""",
    "dataset-infer": """example (DROID's LeRobot port, released policy profile; writes the folder droid_labels/):
  cosmos3-ros dataset-infer ~/data/droid_1.0.1 --checkpoint ~/models/Cosmos3-Nano-Policy-DROID --device cuda \\
      --camera wrist=observation.images.wrist_left --camera exterior_1=observation.images.exterior_1_left \\
      --camera exterior_2=observation.images.exterior_2_left \\
      --state-key observation.state.joint_position,observation.state.gripper_position \\
      --action-key action.joint_position,action.gripper_position --episodes 0-99 --workers 2 --out droid_labels/""",
    "sim-loop": """example (scripted stand-in policy, 0.66 s model latency; writes sim_out/loop.json and loop.png):
  cosmos3-ros sim-loop --policy scripted --model-latency 0.66 --disagreement 0.05 --duration 20 --out sim_out""",
    "bench": """example (on a GPU machine; random full-size weights, no download):
  cosmos3-ros bench --device cuda --requests 20""",
    "make-tiny-checkpoint": """example:
  cosmos3-ros make-tiny-checkpoint /tmp/tiny --seed 0 --variant nano""",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks; shows a flag's default where it has one (unset flags take the profile's)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS, []) and "%(default)" not in text \
                and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _stage(message: str) -> None:
    print(f"[{PROG}] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from . import bag_infer, bench, dataset_infer, demo, run, sim_loop

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, epilog=EXAMPLES[name],
                              formatter_class=HelpFormatter)

    run.add_arguments(add("run", "run policy / forward / inverse dynamics on files"))
    demo.add_arguments(add("demo", "tiny random checkpoint + synthetic scene -> actions JSON + rollout mp4"))
    bag_infer.add_arguments(add("bag-infer", "label recorded bags with inverse-dynamics actions"))
    dataset_infer.add_arguments(add("dataset-infer", "label a LeRobot dataset (v2.1 / v3.0) with inverse-dynamics "
                                                     "actions, on one or many GPUs"))
    sim_loop.add_arguments(add("sim-loop", "the node driving a simulated FR3 in closed loop -> loop.json + loop.png"))
    bench.add_arguments(add("bench", "GPU latency benchmark against diffusers and the FLOP floor"))
    tiny = add("make-tiny-checkpoint", "write a tiny random checkpoint in the published layout")
    tiny.add_argument("out", help="output folder (must not exist or be empty)")
    tiny.add_argument("--seed", type=int, default=0, help="weight seed (same seed -> same bytes)")
    tiny.add_argument("--variant", default="nano", choices=("nano", "edge"), help="architecture variant")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 done, 2 refused input or output, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "make-tiny-checkpoint":
            from ..engine.tiny_checkpoint import make_tiny_checkpoint

            path = make_tiny_checkpoint(args.out, seed=args.seed, variant=args.variant)
            _stage(f"wrote tiny {args.variant} checkpoint to {path}")
            return 0
        return int(args.handler(args, _stage) or 0)
    except Cosmos3Error as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{PROG}: error: out of memory; use a smaller --chunk or image, or another --device", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the checks could not foresee (a disk that fills while writing, ...)
        if os.environ.get("COSMOS3_ROS_DEBUG"):
            raise
        print(f"{PROG}: error: {exc.strerror or exc}: {exc.filename!r}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
