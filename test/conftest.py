"""Shared fixtures: one tiny random checkpoint (published layout) per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _thread_scheduling_unchanged():
    """Fail a test that leaves the test process's main thread on another scheduling policy.

    SVT-AV1's encoder, run as root (as in CI), switched it to SCHED_FIFO 99: every ROS node process started
    afterwards inherited real-time priority and the graph tests livelocked for an hour on two cores.
    """
    before = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    yield
    after = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    if after != before:
        os.sched_setscheduler(0, before[0], os.sched_param(before[1]))
        pytest.fail(f"the test left the main thread at scheduling policy {after[0]} priority {after[1]} (was "
                    f"{before[0]} / {before[1]}); processes started from it would inherit that", pytrace=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Nano-layout checkpoint written by the project's own writer (seed 0)."""
    from cosmos3_ros.engine.tiny_checkpoint import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture(scope="session")
def droid_cameras() -> dict:
    """Three synthetic 360x640 DROID camera views."""
    from cosmos3_ros.tools.demo import synthetic_camera

    return {name: synthetic_camera(name) for name in ("wrist", "exterior_1", "exterior_2")}

