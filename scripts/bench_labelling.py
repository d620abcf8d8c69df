#!/usr/bin/env python3
"""Labelling throughput: ``dataset-infer`` windows/s with 1 and 2 (or more) GPU workers -> a results JSON.

Each worker is a process holding one model: on GPUs the full-size Cosmos3-Nano architecture with random bf16
weights (built like ``cosmos3-ros bench``; timing does not depend on weight values), the released DROID profile
(three cameras, 33-frame inverse-dynamics windows). The dataset is a synthetic LeRobot v3.0 one written here
(AV1 video, DROID's three camera keys at 180x320, 15 fps). Windows/s counts only windows finished after every
worker has loaded and warmed its model (compilation and CUDA-graph capture excluded).

    python scripts/bench_labelling.py                          # GPUs: workers 1 and 2, bench/results/...json
    python scripts/bench_labelling.py --tiny --workers 1,2     # CPU smoke test with the tiny checkpoint
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cosmos3_ros.labelling.dataset_labelling import DatasetJob, label_dataset
from cosmos3_ros.labelling.synthetic_dataset import write_lerobot_dataset


@dataclasses.dataclass(frozen=True)
class RandomFullSizeJob(DatasetJob):
    """The labelling job with a random full-size Nano model instead of a checkpoint (warmed up at load)."""

    def check(self) -> None:
        """No checkpoint to read: the weights are random."""

    def load(self, device: str) -> Any:
        """Build the random model on ``device`` and warm it up."""
        import torch

        from cosmos3_ros.engine.tiny_checkpoint import make_tiny_tokenizer
        from cosmos3_ros.processing.predictor import ActionPredictor
        from cosmos3_ros.processing.prompt import PromptTokenizer
        from cosmos3_ros.tools.bench import NANO, build_random_generator

        where = torch.device(device)
        if where.index is not None:
            torch.cuda.set_device(where)
        generator = build_random_generator(NANO, where)
        tokenizer_dir = make_tiny_tokenizer(Path(tempfile.mkdtemp()) / "text_tokenizer")

        predictor = ActionPredictor(generator, PromptTokenizer.from_folder(tokenizer_dir), self.profile)
        warm_up(predictor)
        return predictor


@dataclasses.dataclass(frozen=True)
class WarmTinyJob(DatasetJob):
    """The tiny checkpoint, warmed up at load like the full-size job (CPU smoke test)."""

    def load(self, device: str) -> Any:
        """Load the tiny checkpoint and warm it up."""
        predictor = super().load(device)
        warm_up(predictor)
        return predictor


def warm_up(predictor: Any) -> None:
    """One inverse-dynamics window at the released layout, so capture / compilation happen before timing."""
    from cosmos3_ros.processing.request import ActionRequest

    profile = predictor.profile
    blank = {name: np.zeros((180, 320, 3), np.uint8) for name in profile.cameras}
    frames = [blank if len(blank) > 1 else blank[profile.cameras[0]]] * (profile.chunk + 1)
    predictor.predict(ActionRequest(task="warm up", mode="inverse_dynamics", video=frames,
                                    state=np.zeros(profile.raw_action_dim, np.float32) if profile.use_state else None))


def main() -> int:
    """Write the dataset, time each worker count, write the JSON; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts to time (default 1,2)")
    parser.add_argument("--episodes", type=int, default=24, help="synthetic episodes (default 24)")
    parser.add_argument("--frames", type=int, default=65, help="frames per episode (default 65: two windows)")
    parser.add_argument("--batch", type=int, default=1, help="windows per model call on each worker (default 1)")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny checkpoint, chunk 4, 1 step")
    parser.add_argument("--out", help="results JSON (default bench/results/labelling-<gpu>-<date>.json)")
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",") if c.strip()]
    stage = lambda text: print(f"[bench-labelling] {text}", file=sys.stderr, flush=True)  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="bench_labelling_"))
    hw = (96, 128) if args.tiny else (180, 320)
    stage(f"writing a synthetic LeRobot v3.0 dataset: {args.episodes} episodes x {args.frames} frames, 3 AV1 "
          f"cameras at {hw[1]}x{hw[0]}")
    dataset = write_lerobot_dataset(work / "dataset", version="v3.0", lengths=[args.frames] * args.episodes, hw=hw)

    if args.tiny:
        from cosmos3_ros.engine.tiny_checkpoint import make_tiny_checkpoint

        checkpoint, device, job_class = str(make_tiny_checkpoint(work / "tiny", seed=0)), "cpu", WarmTinyJob
        overrides: dict[str, Any] = {"chunk": 4, "resolution_tier": 256, "steps": 1}
        gpu = "cpu (tiny checkpoint)"
    else:
        import torch

        if torch.cuda.device_count() < max(counts):
            print(f"bench_labelling: {torch.cuda.device_count()} CUDA devices; --workers asks for {max(counts)}",
                  file=sys.stderr)
            return 2
        checkpoint, device, job_class = "random-full-size-nano", "cuda", RandomFullSizeJob
        overrides = {}
        gpu = torch.cuda.get_device_name(0)
    runs = []
    for count in counts:
        ns = argparse.Namespace(
            dataset=str(dataset), checkpoint=checkpoint, profile="released_droid_policy", evaluator="cached",
            camera=None, task=None, episodes=None, mode="inverse_dynamics", state_key="observation.state",
            action_key="action", stride=None, max_hold=2.0, workers=count, ray=None, resume=False, no_plots=True,
            out=str(work / f"out_{count}"), device=device, spawn=True, batch=args.batch)
        start = time.perf_counter()
        stats = label_dataset(ns, overrides, stage, job_class=job_class)
        stats["wall_s"] = time.perf_counter() - start
        stage(f"{count} worker(s): {stats['windows_per_s']:.3f} windows/s steady ({stats['windows_steady']} windows "
              f"in {stats['seconds_steady']:.1f} s; {stats['wall_s']:.0f} s with loading)")
        runs.append(stats)
    base = runs[0]["windows_per_s"]
    results = {
        "benchmark": "labelling", "gpu": gpu, "date": dt.date.today().isoformat(),
        "config": {"profile": "released_droid_policy", "mode": "inverse_dynamics", "episodes": args.episodes,
                   "frames_per_episode": args.frames, "camera_hw": list(hw), "video": "AV1 (libsvtav1 -> libdav1d)",
                   "model": "tiny checkpoint" if args.tiny else "random full-size Nano, bf16", "batch": args.batch,
                   "overrides": overrides},
        "runs": runs,
        "scaling": {str(r["workers"]): (r["windows_per_s"] / base if base and r["windows_per_s"] else None)
                    for r in runs},
    }
    out = Path(args.out) if args.out else Path(__file__).resolve().parent.parent / "bench" / "results" / (
        f"labelling-{gpu.split(' (')[0].replace(' ', '_')}-{results['date']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    stage(f"wrote {out}: scaling {results['scaling']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
