"""Labelling tests reuse the synthetic bag writer of ``test/tools/bag_fixtures.py``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
