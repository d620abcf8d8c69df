"""``labelling`` sits under ``tools`` and ``ros``: it imports neither (nor rclpy)."""

from __future__ import annotations

import ast
from pathlib import Path

import cosmos3_ros.labelling as labelling


def test_labelling_imports_only_lower_layers():
    for path in sorted(Path(labelling.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
            elif isinstance(node, ast.Import):
                module = node.names[0].name
            else:
                continue
            assert not module.startswith(("..tools", "..ros", "cosmos3_ros.tools", "cosmos3_ros.ros", "rclpy")), \
                f"{path.name} imports {module}"
