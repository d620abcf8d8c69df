#!/usr/bin/env bash
# The test command: set up the virtualenv and ROS 2 (pip wheels + cosmos3_ros_msgs), lint, run every test.
#   bash scripts/test.sh [pytest args]      # e.g. bash scripts/test.sh -k parity
# WITH_ROS=0 skips the ROS install; the rclpy tests then skip with the reason (they fail instead under CI=true).
#
# Where it can (root, util-linux unshare), pytest runs in its own mount namespace with a fresh /dev/shm: Fast DDS
# keeps its shared-memory ports there, and ports left by processes killed elsewhere (another test run, a node
# stopped with SIGKILL) can make Fast DDS 2.14 spin or block in every later participant of the machine.
# COSMOS3_ROS_SHARED_SHM=1 keeps the machine's /dev/shm (the tests then remove unused Fast DDS files first).
# PYTEST_TIME_LIMIT (seconds, default 3600) bounds the whole pytest run; each test has its own limit too
# (pytest-timeout, pyproject.toml), so a hang is reported by name instead of eating the CI budget.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
VENV=${VENV:-.venv}
if [ "${WITH_ROS:-1}" != "0" ]; then
  VENV="$VENV" bash scripts/setup_ros.sh
  # shellcheck source=ros_env.sh
  VENV="$VENV" source scripts/ros_env.sh
fi
"$VENV/bin/python" -m ruff check cosmos3_ros test launch scripts bench
echo "test.sh: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(find /dev/shm -maxdepth 1 -name 'fast*' 2>/dev/null | wc -l) Fast DDS files in /dev/shm"
PYTEST=("$VENV/bin/python" -m pytest -q -rs "$@")
LIMIT=(timeout --signal=INT --kill-after=60 "${PYTEST_TIME_LIMIT:-3600}")
if [ "${COSMOS3_ROS_SHARED_SHM:-0}" != "1" ] && [ "$(id -u)" = "0" ] \
    && unshare --mount --propagation private true 2>/dev/null; then
  echo "test.sh: pytest runs with a private /dev/shm (mount namespace)"
  exec "${LIMIT[@]}" unshare --mount --propagation private \
    sh -c 'mount -t tmpfs -o size=50%,mode=1777 tmpfs /dev/shm && exec "$@"' sh "${PYTEST[@]}"
fi
echo "test.sh: pytest shares this machine's /dev/shm"
exec "${LIMIT[@]}" "${PYTEST[@]}"
