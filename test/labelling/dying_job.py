"""A labelling job whose worker process dies once, mid-episode (importable by spawned workers and Ray actors).

Not a stand-in for the model: the real tiny checkpoint runs; only the worker's process is ended, as a crash or a
lost machine would end it, to test that the episode reruns elsewhere and every chunk is journaled once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cosmos3_ros.labelling.dataset_labelling import DatasetJob, EpisodeTask

DIE_EPISODE = 2


@dataclasses.dataclass(frozen=True)
class DyingJob(DatasetJob):
    """Dies (``os._exit``) after the first chunk of episode ``DIE_EPISODE``, once (a marker file next to the data)."""

    def label(self, predictor: Any, task: EpisodeTask) -> Iterator[dict[str, Any]]:
        """Label as usual, but end this process once after the episode's first chunk."""
        marker = Path(self.root).parent / f"died_{Path(self.root).name}"
        for item in super().label(predictor, task):
            yield item
            if task.episode == DIE_EPISODE and item["kind"] == "chunk" and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(3)


@dataclasses.dataclass(frozen=True)
class HalfSentJob:
    """For ``ProcessBackend`` alone (no model): task ``"die"`` ends the process in the middle of sending a 50 MB
    item; any other task is echoed back as one item."""

    def load(self, device: str) -> None:
        return None

    def label(self, predictor: Any, task: Any) -> Iterator[dict[str, Any]]:
        if task == "die":
            import threading

            blob = b"x" * 50_000_000
            threading.Timer(0.06, os._exit, args=(3,)).start()  # while the item is being written
            yield {"blob": blob}
        else:
            yield {"task": task}
