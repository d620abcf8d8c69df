"""``cosmos3-ros``: the command-line interface.

Subcommands: ``run`` (one request on files), ``demo`` (tiny checkpoint + synthetic scene + policy),
``bag-infer`` (label a recorded bag with inverse-dynamics action chunks), ``bench`` (GPU latency against diffusers
and the FLOP floor), ``sim-loop`` (the node driving a simulated FR3 in closed loop) and ``make-tiny-checkpoint``.
Bad input exits with code 2 and one line on stderr; outputs are written only when the run succeeded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import Cosmos3Error

PROG = "cosmos3-ros"


def _stage(message: str) -> None:
    print(f"[{PROG}] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from . import bag_infer, bench, demo, run, sim_loop

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_arguments(sub.add_parser("run", help="run policy / forward / inverse dynamics on files"))
    demo.add_arguments(sub.add_parser("demo", help="tiny checkpoint + synthetic scene -> actions JSON + rollout mp4"))
    bag_infer.add_arguments(sub.add_parser("bag-infer", help="label a recorded bag with inverse-dynamics actions"))
    bench.add_arguments(sub.add_parser("bench", help="GPU latency benchmark against diffusers and the FLOP floor"))
    sim_loop.add_arguments(sub.add_parser("sim-loop", help="the node driving a simulated FR3 in closed loop"))
    tiny = sub.add_parser("make-tiny-checkpoint", help="write a tiny random checkpoint in the published layout")
    tiny.add_argument("out", help="output folder")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--variant", default="nano", choices=("nano", "edge"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
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
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
