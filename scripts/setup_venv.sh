#!/usr/bin/env bash
# Create (or reuse) a virtualenv with the package and its test tools installed.
# torch==2.13.0 first: on the project's machines that spec resolves to a local CPU wheel; any installed torch
# >= 2.4 (a CUDA build on a robot) is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/pip" install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
# labelling + ray: the dataset-infer tests (pyarrow, PyAV, a local Ray instance); about 35 s more on a clean venv.
"$VENV/bin/pip" install -q -e ".[test,plots,labelling,ray]"
