"""``cosmos3-ros bag-infer``: the flags; the labelling itself is ``cosmos3_ros.labelling.bag_labelling``.

Labels a recorded bag with the action chunks that explain it (inverse dynamics): ``OUT/actions/`` (a rosbag2 of
``cosmos3_ros_msgs/ActionChunk``), ``OUT/actions.json``, ``OUT/actions.csv`` and, where the bag recorded joint
states or commands, ``OUT/eval.json`` and ``OUT/eval_<mode>.png``. See ``docs/bag_infer.md``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..labelling.bag_labelling import ACTION_TOPIC, MODES, POLICY_TOPIC, label_bag
from ..labelling.many_bags import find_bags, is_bag, label_many_bags
from .run import add_model_arguments, profile_overrides

Stage = Callable[[str], None]


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of joint names")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``bag-infer``."""
    add_model_arguments(parser)
    parser.add_argument("bag", nargs="+", help="rosbag2 folder (sqlite3 or mcap) or ROS 1 .bag file; several, or a "
                                               "folder of bags: each is labelled into OUT/<bag name>/")
    parser.add_argument("--camera-topic", action="append", required=True, metavar="TOPIC",
                        help="sensor_msgs/Image or CompressedImage topic; the released profile takes three, in the "
                             "order wrist, exterior_1, exterior_2; the base profile one")
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument("--task", help="task sentence for every window")
    task.add_argument("--task-topic", help="std_msgs/String topic in the bag holding the task sentence")
    parser.add_argument("--mode", choices=MODES, default="inverse_dynamics",
                        help="inverse_dynamics (default); policy = also run the policy at each window start and "
                             "publish it on --policy-topic for comparison")
    parser.add_argument("--joint-topic", help="sensor_msgs/JointState topic: the state row of the released profile "
                                              "and the recorded joints of the evaluation")
    parser.add_argument("--joint-names", type=_name_list, metavar="J1,...,J7",
                        help="arm joints by name in action-column order; default: the first 7 positions in "
                             "message order")
    parser.add_argument("--gripper-joint", help="joint measuring the gripper; default: the 8th position in message "
                                                "order if present (and --joint-names not given), else 0 (open)")
    parser.add_argument("--gripper-open-position", type=float, default=0.0,
                        help="gripper joint position when open (maps to 0); e.g. 0.04 for a Franka finger joint")
    parser.add_argument("--gripper-closed-position", type=float, default=1.0,
                        help="gripper joint position when closed (maps to 1)")
    parser.add_argument("--command-topic", help="recorded commands (sensor_msgs/JointState or "
                                                "trajectory_msgs/JointTrajectory, first point) to evaluate against")
    parser.add_argument("--stride", type=int, help="model frames between window starts (default: chunk, i.e. "
                                                   "back-to-back windows)")
    parser.add_argument("--start", type=float, default=0.0,
                        help="seconds after the first camera frame where the first window may start")
    parser.add_argument("--end", type=float, help="seconds after the first camera frame where the last window must "
                                                  "end (default: the end of the camera data)")
    parser.add_argument("--max-hold", type=float, default=2.0, metavar="PERIODS",
                        help="oldest a held message may be, in model frame periods (default 2); windows with an "
                             "older input are skipped")
    parser.add_argument("--batch", type=int, default=1, help="windows per model call (batched where the engine "
                                                             "supports it; sequential otherwise)")
    parser.add_argument("--resume", action="store_true", help="continue the journal in --out, skipping finished "
                                                              "windows")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="storage of OUT/actions")
    parser.add_argument("--copy-input-topics", action="store_true",
                        help="copy the input topics (whole bag) into OUT/actions")
    parser.add_argument("--output-topic", default=ACTION_TOPIC, help="ActionChunk topic of the inverse dynamics")
    parser.add_argument("--policy-topic", default=POLICY_TOPIC, help="ActionChunk topic of --mode policy")
    parser.add_argument("--frame-id", default="base_link", help="header.frame_id of the ActionChunk messages")
    parser.add_argument("--no-plots", action="store_true", help="skip the evaluation PNGs")
    parser.add_argument("--workers", type=int, default=1,
                        help="many bags: model workers, one process per device (--device cuda -> cuda:0..N-1, or a "
                             "list cuda:0,cuda:2), or Ray actors with --ray (default 1, in this process)")
    parser.add_argument("--ray", metavar="auto|ADDRESS|local", help="many bags: run them on Ray actors")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(handler=bag_infer_command)


def bag_infer_command(args: argparse.Namespace, stage: Stage) -> int:
    """Handler of ``bag-infer``: one bag as before; several (or a folder of bags) one output folder each."""
    overrides = profile_overrides(args)
    paths = list(args.bag)
    if len(paths) == 1 and (is_bag(Path(paths[0])) or not Path(paths[0]).is_dir()):
        args.bag = paths[0]
        if args.workers != 1 or args.ray:
            stage("one bag: --workers / --ray ignored (bags are the unit of work; use --batch on one GPU)")
        return label_bag(args, overrides, stage)
    return label_many_bags(args, overrides, find_bags(paths), stage)
