"""``bag-infer A B C ...`` or a folder of bags: each bag labelled as on its own, into ``OUT/<bag name>/``.

Bags are the unit of work: each worker (this process, one process per device, or a Ray actor; see ``workers``)
holds one model and labels whole bags with ``bag_labelling.label_bag``, which keeps its own journal in the
bag's output folder, so a bag whose worker died reruns elsewhere with ``--resume`` semantics and every chunk
is written once. ``OUT/bags.json`` lists each bag with its state; a bag that cannot be read is listed with the
reason and the others go on. Window k of every bag uses seed ``seed + k``, as in a single-bag run.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .bag_labelling import label_bag
from .outputs import write_text_atomic

Stage = Callable[[str], None]
OUTPUT_FORMAT = "cosmos3_ros.bag_infer.many/1"


def is_bag(path: Path) -> bool:
    """A ROS 1 ``.bag`` file or a rosbag2 folder (``metadata.yaml``)."""
    return (path.is_file() and path.suffix == ".bag") or (path.is_dir() and (path / "metadata.yaml").is_file())


def find_bags(paths: Sequence[str]) -> list[Path]:
    """The bags named: bags as given, folders of bags expanded (sorted, one level).

    Raises:
        InputError: a path that is neither a bag nor a folder holding bags.

    """
    bags: list[Path] = []
    for text in paths:
        path = Path(text)
        if is_bag(path):
            bags.append(path)
        elif path.is_dir():
            inside = sorted(p for p in path.iterdir() if is_bag(p))
            if not inside:
                raise InputError(f"bag {text!r}: a folder without metadata.yaml and without bags in it (rosbag2 "
                                 f"folders or .bag files)")
            bags.extend(inside)
        else:
            raise InputError(f"bag {text!r} does not exist" if not path.exists()
                             else f"bag {text!r}: not a rosbag2 folder or a ROS 1 .bag file")
    return bags


def output_names(bags: Sequence[Path]) -> list[str]:
    """One folder name per bag (its stem; ``_2``, ``_3`` ... for repeats)."""
    names: list[str] = []
    for bag in bags:
        stem = bag.stem if bag.suffix == ".bag" else bag.name
        name, n = stem, 1
        while name in names:
            n += 1
            name = f"{stem}_{n}"
        names.append(name)
    return names


@dataclass(frozen=True)
class BagTask:
    """One bag to label into ``out``; ``attempt`` > 0 when a worker died on it before (then it resumes)."""

    bag: str
    out: str
    attempt: int = 0


@dataclass(frozen=True)
class BagJob:
    """What a worker needs (picklable): the ``bag-infer`` flags and the profile overrides."""

    args: argparse.Namespace
    overrides: dict[str, Any]

    def load(self, device: str) -> Any:
        """The worker's model."""
        from ..processing.predictor import ActionPredictor

        return ActionPredictor.load(self.args.checkpoint, self.args.profile, device=device,
                                    overrides=dict(self.overrides), decode_rollout=False,
                                    evaluator=self.args.evaluator)

    def label(self, predictor: Any, task: BagTask) -> Iterator[dict[str, Any]]:
        """Label one bag; yields its summary (or why it failed) as one item."""
        args = copy.copy(self.args)
        args.bag, args.out = task.bag, task.out
        args.resume = bool(self.args.resume or task.attempt > 0)
        name = Path(task.out).name

        def stage(text: str) -> None:
            print(f"[cosmos3-ros] {name}: {text}", file=sys.stderr, flush=True)

        try:
            label_bag(args, dict(self.overrides), stage, predictor=predictor)
        except InputError as exc:
            yield {"kind": "bag", "bag": task.bag, "out": task.out, "status": "failed", "reason": str(exc)}
            return
        doc = json.loads((Path(task.out) / "actions.json").read_text())
        yield {"kind": "bag", "bag": task.bag, "out": task.out, "status": "done", "complete": doc["complete"],
               "windows_done": doc["windows_done"], "windows_planned": doc["windows_planned"],
               "skipped": len(doc["skipped"])}


def label_many_bags(args: argparse.Namespace, overrides: dict[str, Any], bags: Sequence[Path], stage: Stage) -> int:
    """Label ``bags`` on the workers; write ``OUT/bags.json``; exit code 0 unless every bag failed (then 2)."""
    from .dataset_labelling import devices_for
    from .workers import InlineBackend, ProcessBackend, RayBackend

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {args.out!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    devices = devices_for(args.device, args.workers)
    from ..engine.checkpoint import CheckpointInfo

    CheckpointInfo.read(args.checkpoint)  # cheap: a bad checkpoint fails here, not in every worker
    job = BagJob(args, overrides)
    backend: Any
    if args.ray:
        backend = RayBackend(job, args.ray, args.workers, 1.0 if devices[0].startswith("cuda") else 0.0)
    elif len(devices) == 1:
        backend = InlineBackend(job, devices[0])
    else:
        backend = ProcessBackend(job, devices)
    todo = [BagTask(str(b), str(out / n)) for b, n in zip(bags, output_names(bags), strict=True)]
    stage(f"{len(todo)} bags -> {out}/<bag>/ on " + (f"{args.workers} Ray actors" if args.ray else ", ".join(devices)))
    results: dict[str, dict[str, Any]] = {}
    running: dict[int, BagTask] = {}
    deaths = 0
    workers = backend.start()
    try:
        while todo or running:
            for event in backend.poll(0.5):
                kind, worker = event[0], event[1]
                if kind == "idle":
                    running.pop(worker, None)
                    if todo:
                        running[worker] = todo.pop(0)
                        backend.submit(worker, running[worker])
                elif kind == "item":
                    item = event[2]
                    results[item["bag"]] = item
                    state = (f"{item['windows_done']}/{item['windows_planned']} windows" if item["status"] == "done"
                             else f"failed: {item['reason']}")
                    stage(f"bag {len(results)}/{len(bags)}: {item['bag']}: {state}")
                elif kind == "dead":
                    if event[3:] == ("load",):  # a checkpoint that does not load will not load on a retry
                        raise InputError(event[2])
                    lost = running.pop(worker, None)
                    workers.remove(worker) if worker in workers else None
                    stage(event[2] + (f"; bag {lost.bag} goes back to the queue" if lost else ""))
                    if lost is not None:
                        todo.insert(0, BagTask(lost.bag, lost.out, lost.attempt + 1))
                    deaths += 1
                    if deaths > 2 * len(devices) + 2:
                        raise InputError(f"workers keep dying ({deaths} so far; last: {event[2]})")
                    workers.append(backend.replace(worker))
    finally:
        backend.close()
        listing = [results.get(str(b), {"bag": str(b), "status": "not run"}) for b in bags]
        write_text_atomic(out / "bags.json", json.dumps({"format": OUTPUT_FORMAT, "bags": listing}, indent=1))
    failed = [r for r in results.values() if r["status"] == "failed"]
    stage(f"wrote {out}/bags.json: {len(results) - len(failed)} of {len(bags)} bags labelled"
          + (f", {len(failed)} failed" if failed else ""))
    if failed and len(failed) == len(bags):
        raise InputError(f"no bag could be labelled; first: {failed[0]['reason']}")
    return 0
