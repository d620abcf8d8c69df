#!/usr/bin/env bash
# The test command: set up the virtualenv, lint, run every test (rclpy tests skip here, with the reason).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
VENV=${VENV:-.venv}
"$VENV/bin/python" -m ruff check cosmos3_ros test launch scripts bench
"$VENV/bin/python" -m pytest -q -rs "$@"
