#!/usr/bin/env bash
# The main job on an embedded default: set up, write a tiny checkpoint, run the released DROID policy on a
# synthetic three-camera scene, write demo_out/demo_action.json and demo_out/demo.mp4.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
VENV=${VENV:-.venv}
"$VENV/bin/cosmos3-ros" demo --out "${1:-demo_out}"
echo "demo: the tiny checkpoint has random weights, so ${1:-demo_out}/demo.mp4 is noise by design (see README)."
