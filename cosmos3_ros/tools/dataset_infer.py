"""``cosmos3-ros dataset-infer``: the flags; the labelling itself is ``cosmos3_ros.labelling.dataset_labelling``.

Labels every episode of a local LeRobot v2.1 / v3.0 dataset with action chunks: ``OUT/actions.parquet``,
``OUT/actions.json`` and, where the dataset records state / action in the profile's joint space,
``OUT/eval.json`` with PNG plots. See ``docs/labelling.md``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..labelling.bag_labelling import MODES
from ..labelling.dataset_labelling import label_dataset
from .run import add_model_arguments, profile_overrides

Stage = Callable[[str], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``dataset-infer``."""
    add_model_arguments(parser)
    parser.add_argument("dataset", help="LeRobot dataset folder (meta/info.json, v2.1 or v3.0)")
    parser.add_argument("--camera", action="append", metavar="NAME=FEATURE_KEY",
                        help="profile camera <- dataset video feature, e.g. wrist=observation.images.wrist_left; "
                             "default: DROID's keys for the released profile, the only video for a one-camera one")
    parser.add_argument("--task", help="task sentence for every window (default: the dataset's task per frame)")
    parser.add_argument("--episodes", metavar="SPEC", help="episodes to label, e.g. 0-99,120,200- (default: all)")
    parser.add_argument("--mode", choices=MODES, default="inverse_dynamics",
                        help="inverse_dynamics (default); policy = also run the policy at each window start")
    parser.add_argument("--state-key", default="observation.state", metavar="KEY[,KEY]",
                        help="feature(s) holding [q1..q7, gripper], concatenated in order (default "
                             "observation.state): the released profile's state row and the evaluation reference")
    parser.add_argument("--action-key", default="action", metavar="KEY[,KEY]",
                        help="recorded action feature(s) to evaluate against (default action)")
    parser.add_argument("--stride", type=int, help="model frames between window starts (default: chunk)")
    parser.add_argument("--max-hold", type=float, default=2.0, metavar="PERIODS",
                        help="oldest a held frame may be, in model frame periods (default 2)")
    parser.add_argument("--batch", type=int, default=1,
                        help="windows per model call on a worker (batched where the engine supports it; changes "
                             "actions by float rounding, see docs/bag_infer.md) (default 1)")
    parser.add_argument("--workers", type=int, default=1,
                        help="model workers: processes (one per device: --device cuda -> cuda:0..N-1, or list "
                             "them: --device cuda:0,cuda:2), or Ray actors with --ray (default 1, in this process)")
    parser.add_argument("--ray", metavar="auto|ADDRESS|local",
                        help="schedule episodes on Ray actors (one model each; 1 GPU each when --device is cuda): "
                             "auto = the running cluster, local = a new local instance")
    parser.add_argument("--resume", action="store_true", help="continue the journal in --out")
    parser.add_argument("--no-plots", action="store_true", help="skip the evaluation PNGs")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(handler=dataset_infer_command)


def dataset_infer_command(args: argparse.Namespace, stage: Stage) -> int:
    """Handler of ``dataset-infer``."""
    label_dataset(args, profile_overrides(args), stage)
    return 0
