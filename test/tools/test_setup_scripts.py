"""scripts/rewrite_wheel_cmake.sh, the step of setup_ros.sh that makes the ROS wheels' CMake files usable here.

It once failed the second time round: wheels reinstalled after a constraints change kept the CMake files it had
rewritten before, grep found nothing to rewrite, and under ``pipefail`` that ended setup_ros.sh.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rewrite_wheel_cmake.sh"
BUILDER = ("set(PythonExtra_INCLUDE_DIRS \"/opt/python/cp312-cp312/include/python3.12\")\n"
           "set(_numpy \"/opt/python/cp312-cp312/lib/python3.12/site-packages/numpy/_core/include\")\n")


def rewrite(share: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(share), "/venv/include/python3.12", "/venv/numpy/include"],
                          capture_output=True, text=True, check=False, timeout=30)


def test_builder_folders_become_this_interpreters_and_a_second_run_changes_nothing(tmp_path):
    exported = tmp_path / "share" / "python_cmake_module" / "cmake" / "Modules" / "FindPythonExtra.cmake"
    exported.parent.mkdir(parents=True)
    exported.write_text(BUILDER)
    untouched = tmp_path / "share" / "other" / "cmake" / "otherConfig.cmake"
    untouched.parent.mkdir(parents=True)
    untouched.write_text("set(other_DIR \"${CMAKE_CURRENT_LIST_DIR}\")\n")

    first = rewrite(tmp_path / "share")
    assert first.returncode == 0, first.stderr
    assert exported.read_text() == ("set(PythonExtra_INCLUDE_DIRS \"/venv/include/python3.12\")\n"
                                    "set(_numpy \"/venv/numpy/include\")\n")
    assert untouched.read_text() == "set(other_DIR \"${CMAKE_CURRENT_LIST_DIR}\")\n"
    second = rewrite(tmp_path / "share")
    assert second.returncode == 0, second.stderr
    assert exported.read_text().count("/venv/") == 2


def test_a_builder_path_it_does_not_know_fails_naming_the_file(tmp_path):
    exported = tmp_path / "share" / "pkg" / "cmake" / "pkgConfig.cmake"
    exported.parent.mkdir(parents=True)
    exported.write_text("set(_lib \"/opt/python/cp312-cp312/lib/libpython3.12.so\")\n")
    result = rewrite(tmp_path / "share")
    assert result.returncode == 1
    assert "still naming /opt/python" in result.stderr and "pkgConfig.cmake" in result.stderr
