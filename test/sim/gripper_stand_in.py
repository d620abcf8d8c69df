"""Build the TEST-ONLY stand-in for ``control_msgs/action/GripperCommand`` (``stand_in_gripper_msgs/``).

``control_msgs`` has no pip wheel, so the node's gripper action path is tested against a package generated here
from the same interface definition, named ``cosmos3_test_gripper_msgs`` so it can never shadow the real one.
It is built with CMake against the ROS wheels (as scripts/setup_ros.sh builds cosmos3_ros_msgs) and installed
into the test virtualenv once; a stamp of its sources skips later builds.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "stand_in_gripper_msgs"
PACKAGE = "cosmos3_test_gripper_msgs"
ACTION_TYPE = f"{PACKAGE}/action/GripperCommand"


def _key() -> str:
    digest = hashlib.sha256()
    for path in sorted(SOURCE.rglob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def build_stand_in(prefix: Path | None = None) -> str:
    """Build and install the package into ``prefix`` (the virtualenv) unless the stamp matches; returns the
    action type name. Raises RuntimeError with the build log's tail on failure.
    """
    prefix = Path(prefix or sys.prefix)
    stamp = prefix / f".{PACKAGE}.sha256"
    key = _key()
    if not (stamp.is_file() and stamp.read_text().strip() == key):
        cmake = shutil.which("cmake") or str(prefix / "bin" / "cmake")
        build = prefix / "build" / PACKAGE
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        env = {**os.environ, "PATH": f"{prefix / 'bin'}:{os.environ.get('PATH', '')}"}
        steps = (
            [cmake, "-S", str(SOURCE), "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}",
             f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
             "-DCMAKE_BUILD_TYPE=Release"],
            [cmake, "--build", str(build), "-j", str(os.cpu_count() or 2)],
            [cmake, "--install", str(build)],
        )
        for command in steps:
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"building the {PACKAGE} stand-in failed at {command[1:3]}:\n"
                                   f"{(done.stdout + done.stderr)[-3000:]}")
        stamp.write_text(key + "\n")
    importlib.invalidate_caches()
    importlib.import_module(f"{PACKAGE}.action")
    return ACTION_TYPE
