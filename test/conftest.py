"""Shared fixtures: one tiny random checkpoint (published layout) per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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

