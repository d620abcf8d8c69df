#!/usr/bin/env bash
# Point the ROS wheels' exported CMake files at this interpreter's include folders (called by setup_ros.sh).
#
#   bash scripts/rewrite_wheel_cmake.sh SHARE_DIR PYTHON_INCLUDE NUMPY_INCLUDE
#
# The wheel builder's *.cmake files under SHARE_DIR name its own folders (/opt/python/cp3XX-cp3XX/include/
# python3.XX and .../site-packages/numpy/_core/include); without the rewrite the generated C extension of a
# message package cannot compile. Safe to run again: files rewritten before are left as they are. Fails, naming
# the files, when a /opt/python include or lib path that it does not know is left.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: rewrite_wheel_cmake.sh SHARE_DIR PYTHON_INCLUDE NUMPY_INCLUDE" >&2; exit 2; }
share=$1 py_include=$2 np_include=$3
pattern='/opt/python/cp3[0-9]+-cp3[0-9]+/(include|lib)'
# grep exits 1 when nothing matches (a second run, or wheels reinstalled unchanged): not a failure
{ grep -rlE --include='*.cmake' "$pattern" "$share" 2>/dev/null || true; } | while read -r f; do
  sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${py_include}#g; \
s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${np_include}#g" "$f"
done
left=$(grep -rlE --include='*.cmake' "$pattern" "$share" 2>/dev/null || true)
if [ -n "$left" ]; then
  echo "rewrite_wheel_cmake: still naming /opt/python/... folders: $(echo "$left" | tr '\n' ' ')" >&2
  exit 1
fi
