#!/usr/bin/env bash
# The test command: set up the virtualenv and ROS 2 (pip wheels + cosmos3_ros_msgs), lint, run every test.
#   bash scripts/test.sh [pytest args]      # e.g. bash scripts/test.sh -k parity
# WITH_ROS=0 skips the ROS install; the rclpy tests then skip with the reason (they fail instead under CI=true).
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
"$VENV/bin/python" -m pytest -q -rs "$@"
