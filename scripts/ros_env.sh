# Environment for ROS 2 Jazzy installed from pip by scripts/setup_ros.sh. Source it from bash:
#
#   source scripts/ros_env.sh            # VENV=... to name another virtualenv (default: the repository's .venv)
#
# Sets: PATH (the venv's bin first), LD_LIBRARY_PATH (the wheels' libraries, so their .pth does not re-execute
# every Python process), AMENT_PREFIX_PATH (the venv is the ROS prefix), RMW_IMPLEMENTATION=rmw_fastrtps_cpp,
# ROS_AUTOMATIC_DISCOVERY_RANGE and ROS_DOMAIN_ID.
#
# Discovery stays on this machine (LOCALHOST) unless ROS_AUTOMATIC_DISCOVERY_RANGE is already set: to talk to
# a robot's graph on another machine, export ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET and the robot's
# ROS_DOMAIN_ID before sourcing (README, "A GPU host without ROS"). Without a ROS_DOMAIN_ID this picks one in
# [1, 100] from the shell's pid and the time, so two shells on one machine rarely share a graph; the test
# fixtures (test/ros/ros_graph.py) claim a free id with a lock file instead.

_cosmos3_ros_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_cosmos3_ros_venv=${VENV:-$_cosmos3_ros_root/.venv}
case "$_cosmos3_ros_venv" in /*) ;; *) _cosmos3_ros_venv="$_cosmos3_ros_root/$_cosmos3_ros_venv" ;; esac
if [ ! -x "$_cosmos3_ros_venv/bin/python" ] || [ ! -f "$_cosmos3_ros_venv/.cosmos3_ros_msgs.sha256" ]; then
  echo "ros_env: no ROS install in $_cosmos3_ros_venv (run scripts/setup_venv.sh then scripts/setup_ros.sh)" >&2
  return 1 2>/dev/null || exit 1
fi
_cosmos3_ros_site=$("$_cosmos3_ros_venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
_cosmos3_ros_libs="$_cosmos3_ros_venv/lib"
for _d in "$_cosmos3_ros_site"/ros_*.libs; do
  [ -d "$_d" ] && _cosmos3_ros_libs="$_cosmos3_ros_libs:$_d"
done
case ":${LD_LIBRARY_PATH:-}:" in
  *":$_cosmos3_ros_venv/lib:"*) ;;
  *) export LD_LIBRARY_PATH="$_cosmos3_ros_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
esac
case ":${PATH}:" in
  *":$_cosmos3_ros_venv/bin:"*) ;;
  *) export PATH="$_cosmos3_ros_venv/bin:$PATH" ;;
esac
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$_cosmos3_ros_venv:"*) ;;
  *) export AMENT_PREFIX_PATH="$_cosmos3_ros_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( ($$ + $(date +%s)) % 100 + 1 ))}
unset _cosmos3_ros_root _cosmos3_ros_venv _cosmos3_ros_site _cosmos3_ros_libs _d
