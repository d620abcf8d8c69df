"""Fixtures for tests over a real ROS 2 graph: the real ``policy_node`` as its own process, an rclpy peer here.

Isolation (nothing leaves this machine, nothing is shared with other test sessions on it):
* discovery on loopback only (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``);
* a ``ROS_DOMAIN_ID`` claimed for the session with a lock file (``claim_domain_id``), so two sessions on one
  machine never join each other's graph;
* every process started here is stopped by its own pid (SIGINT, then SIGKILL of that pid only);
* Fast DDS shared-memory files no live process uses are removed before the session starts (a killed process
  leaves its ports behind, and Fast DDS 2.14 can spin or block on such a port, whatever the domain id: the
  port ``fastrtps_port7000`` is shared by every participant on the machine), and the ones the session created
  are removed after it; ``scripts/test.sh`` also gives the test run a private /dev/shm where it can;
* every process uses ``config/fastdds_large_images.xml`` (what the README tells users to run raw cameras
  with) with its UDP transport bound to 127.0.0.1: Fast DDS's default 512 KiB segment does not hold one
  640x360 rgb8 frame and drops cameras on a loaded machine.

Use from a test module (the fixtures are imported by name; there is no conftest.py in test/ros because a
second ``conftest`` module would shadow test/conftest.py for the modules that import from it)::

    from ros_graph import ros_env_fixture, ros_peer_fixture, start_node_fixture  # noqa: F401 (fixtures)
    require_ros()          # skip (outside CI) or fail (CI=true) with the reason, before importing rclpy

``require_ros`` is the one place that decides: a missing ROS install skips only outside CI. ``ros_env`` and
``ros_peer`` are one per test process (shared by every module, cleaned up at exit); ``start_node`` stops the
processes a module started when the module ends.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from cosmos3_ros.ros.fastdds_shm import fastdds_shm_files, remove_fastdds_shm

REPO = Path(__file__).resolve().parents[2]
DOMAIN_LOCK_DIR = Path(os.environ.get("COSMOS3_ROS_DOMAIN_LOCKS", "/tmp/cosmos3_ros_test_domains"))
ROS_MODULES = ("rclpy", "std_msgs.msg", "sensor_msgs.msg", "trajectory_msgs.msg", "diagnostic_msgs.msg",
               "std_srvs.srv", "rosgraph_msgs.msg", "rcl_interfaces.msg", "cosmos3_ros_msgs.msg")
SETUP_HINT = "bash scripts/setup_ros.sh (ROS 2 Jazzy wheels from PyPI + cosmos3_ros_msgs built from msg/)"


def ros_missing_reason(modules: tuple[str, ...] = ROS_MODULES) -> str | None:
    """None when rclpy and every message package the node uses import; else why not (one line)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or a broken build raising something else on import
            return f"{name} does not import ({type(exc).__name__}: {exc}); install it with {SETUP_HINT}"
    return None


def require_ros(modules: tuple[str, ...] = ROS_MODULES) -> None:
    """Skip the calling module when ROS (``modules``) is missing, with the reason; under CI (CI=true) fail instead.

    Call at module level before importing rclpy or message modules.
    """
    reason = ros_missing_reason(modules)
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but ROS 2 is not usable: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


# -- domain id and environment --------------------------------------------------------------------------------


def claim_domain_id(first: int = 1, last: int = 100) -> tuple[int, Any]:
    """A ROS domain id no other test session on this machine holds; returns (id, lock file to keep open).

    Ids up to 101 keep Fast DDS's ports below the ephemeral range on Linux. The lock is released when the
    returned file is closed (or the process ends), so a crashed session never leaks its claim.
    """
    DOMAIN_LOCK_DIR.mkdir(parents=True, exist_ok=True)
    start = first + os.getpid() % (last - first + 1)
    for offset in range(last - first + 1):
        domain = first + (start - first + offset) % (last - first + 1)
        handle = open(DOMAIN_LOCK_DIR / f"domain_{domain}.lock", "w")  # noqa: SIM115 - held for the session
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return domain, handle
    raise RuntimeError(f"every ROS domain id in [{first}, {last}] is held by another test session")


LARGE_IMAGES_PROFILE = REPO / "config" / "fastdds_large_images.xml"


def loopback_profile(folder: Path) -> Path:
    """``config/fastdds_large_images.xml`` with its UDP transport bound to 127.0.0.1, written into ``folder``."""
    text = LARGE_IMAGES_PROFILE.read_text()
    udp = "<type>UDPv4</type>"
    if text.count(udp) != 1:
        raise ValueError(f"{LARGE_IMAGES_PROFILE}: expected one UDPv4 transport, found {text.count(udp)}")
    path = Path(folder) / "fastdds_large_images_loopback.xml"
    path.write_text(text.replace(udp, udp + "<interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>"))
    return path


def ros_environment(domain_id: int, profile: Path | None = None) -> dict[str, str]:
    """Variables every process of the session gets (this one included): loopback discovery, one domain.

    ``profile``: a Fast DDS XML profile for every process (``loopback_profile``); None keeps Fast DDS's default.
    """
    extra = {} if profile is None else {"FASTRTPS_DEFAULT_PROFILES_FILE": str(profile)}
    return {
        **extra,
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_STATIC_PEERS": "",
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        # No stale ROS 1/2 logging configuration from the user's shell; logs go to the process's stderr.
        "RCUTILS_COLORIZED_OUTPUT": "0",
        "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
        "PYTHONUNBUFFERED": "1",
    }


# -- the node under test, as a user starts it -----------------------------------------------------------------


DEFAULT_PARAMS = REPO / "config/released_droid_policy.yaml"


def write_params(path: Path, overrides: Mapping[str, Any], base: Path | None = DEFAULT_PARAMS,
                 node: str = "/**") -> Path:
    """A parameter file: ``base`` (a shipped config) with ``overrides`` on top, under ``node``'s key."""
    params: dict[str, Any] = {}
    if base is not None:
        loaded = yaml.safe_load(base.read_text())
        params = dict(next(iter(loaded.values()))["ros__parameters"])
    params.update(overrides)
    path.write_text(yaml.safe_dump({node: {"ros__parameters": params}}, sort_keys=False))
    return path


class NodeProcess:
    """``policy_node`` started from its console script with a parameter file, in its own process group.

    Output (stdout and stderr together) goes to ``log_path``; ``log()`` reads it back.
    """

    def __init__(self, params_file: Path, log_path: Path, env: Mapping[str, str], *, ros_args: tuple[str, ...] = (),
                 executable: str | None = None) -> None:
        script = executable or str(Path(sys.executable).with_name("policy_node"))
        self.log_path = log_path
        self.command = [script, "--ros-args", "--params-file", str(params_file), *ros_args]
        self._log_handle = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.command, stdout=self._log_handle, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env={**os.environ, **env}, start_new_session=True)
        self.pid = self.process.pid
        self.started = time.monotonic()

    def log(self) -> str:
        """Everything the node printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 120.0, start: int = 0) -> re.Match[str]:
        """Wait for a regex in the log (from character ``start``); fails with the log if the node exits first."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = compiled.search(self.log(), start)
            if match:
                return match
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"policy_node exited ({code}) before {pattern!r}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in policy_node's log after {timeout} s:\n{self.log()}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> tuple[int, float]:
        """Send ``sig`` to this pid and wait; SIGKILL (this pid only) after ``timeout``. Returns (code, seconds)."""
        sent = time.monotonic()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.process.wait(10)
        elapsed = time.monotonic() - sent
        self._log_handle.close()
        return self.process.returncode, elapsed


# -- the test's own rclpy node ---------------------------------------------------------------------------------


class RosPeer:
    """An rclpy node in the test process with its own context, spun by one executor thread."""

    def __init__(self, name: str = "cosmos3_test_peer") -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        # single-threaded: rclpy's MultiThreadedExecutor busy-spins a core (cosmos3_ros.ros.spinning)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        from cosmos3_ros.ros.spinning import Spinner

        self._spinner = Spinner(self.executor, "ros-peer-spin")

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        """Call a service and wait for the response (the executor thread delivers it)."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} not available after {timeout} s")
            future = client.call_async(request)
            if not wait_for(future.done, timeout):
                raise AssertionError(f"no response from {name} after {timeout} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self._spinner.stop()
        self.node.destroy_node()
        self.context.try_shutdown()


ARM_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
DROID_CAMERAS = ("wrist", "exterior_1", "exterior_2")
HOME_Q = (0.0, -0.6, 0.0, -2.2, 0.0, 1.6, 0.8)


def droid_params(namespace: str, checkpoint: Path, compressed: tuple[str, ...] = (), **overrides: Any
                 ) -> dict[str, Any]:
    """Released-profile parameters with every input under ``namespace`` (absolute names) and a CPU model.

    Cameras named in ``compressed`` are read as CompressedImage from ``.../image_raw/compressed``.
    """
    return {
        "checkpoint": str(checkpoint), "device": "cpu",
        "camera_topics": [f"{namespace}/{name}/image_raw" + ("/compressed" if name in compressed else "")
                          for name in DROID_CAMERAS],
        "joint_state_topic": f"{namespace}/joint_states",
        "gripper_joint_state_topic": f"{namespace}/gripper/joint_states",
        # CPU inference of the tiny model on a shared 2-core machine: inputs may wait seconds for the worker.
        "max_observation_age": 5.0,
        **overrides,
    }


class DroidInputs:
    """Publishers of the released profile's inputs (three cameras, arm and gripper joint states, task).

    ``send`` stamps every message alike (node clock of the peer unless given) and publishes one set.
    """

    def __init__(self, peer: RosPeer, namespace: str, frames: Mapping[str, Any], *,
                 formats: Mapping[str, str] | None = None) -> None:
        """``formats``: camera -> ``raw`` (rgb8 Image, the default), ``png`` or ``jpeg`` (CompressedImage on
        ``<namespace>/<camera>/image_raw/compressed``)."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image, JointState
        from std_msgs.msg import String

        self.peer = peer
        self.namespace = namespace
        self.frames = dict(frames)
        self._types = {"Image": Image, "CompressedImage": CompressedImage, "JointState": JointState}
        node = peer.node
        self.formats = {name: (formats or {}).get(name, "raw") for name in DROID_CAMERAS}
        self.cameras = [
            node.create_publisher(Image, f"{namespace}/{name}/image_raw", 1) if self.formats[name] == "raw"
            else node.create_publisher(CompressedImage, f"{namespace}/{name}/image_raw/compressed", 1)
            for name in DROID_CAMERAS
        ]
        self.joints = node.create_publisher(JointState, f"{namespace}/joint_states", 10)
        self.gripper = node.create_publisher(JointState, f"{namespace}/gripper/joint_states", 10)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.task = node.create_publisher(String, f"{namespace}/task", latched)
        self._string = String
        self._encoded: dict[str, bytes] = {}

    def wait_connected(self, timeout: float = 20.0) -> bool:
        """Wait until the node subscribes to every camera and joint topic."""
        pubs = [*self.cameras, self.joints, self.gripper]
        return wait_for(lambda: all(p.get_subscription_count() for p in pubs), timeout)

    def send_task(self, text: str) -> None:
        self.task.publish(self._string(data=text))

    def image(self, name: str, stamp: Any) -> Any:
        """The camera message of ``name`` (rgb8 Image, or jpeg CompressedImage) stamped ``stamp``."""
        frame = self.frames[name]
        kind = self.formats[name]
        if kind != "raw":
            if name not in self._encoded:
                import io

                from PIL import Image as PILImage

                buffer = io.BytesIO()
                PILImage.fromarray(frame).save(buffer, format="PNG" if kind == "png" else "JPEG")
                self._encoded[name] = buffer.getvalue()
            msg = self._types["CompressedImage"](format=f"rgb8; {kind} compressed bgr8", data=self._encoded[name])
        else:
            msg = self._types["Image"](height=frame.shape[0], width=frame.shape[1], encoding="rgb8",
                                       step=frame.shape[1] * 3, data=frame.tobytes())
        msg.header.stamp = stamp
        return msg

    def send(self, q: tuple[float, ...] = HOME_Q, gripper_position: float = 0.04, stamp: Any = None) -> Any:
        """Publish one synchronised set; returns its stamp (``builtin_interfaces/Time``)."""
        stamp = stamp if stamp is not None else self.peer.node.get_clock().now().to_msg()
        for pub, name in zip(self.cameras, DROID_CAMERAS, strict=True):
            pub.publish(self.image(name, stamp))
        joint_state = self._types["JointState"]
        for pub, names, positions in ((self.joints, list(ARM_JOINTS), list(q)),
                                      (self.gripper, ["fr3_finger_joint1"], [gripper_position])):
            state = joint_state(name=names, position=positions)
            state.header.stamp = stamp
            pub.publish(state)
        return stamp

    def close(self) -> None:
        for pub in (*self.cameras, self.joints, self.gripper, self.task):
            self.peer.node.destroy_publisher(pub)


class SimClock:
    """Publishes ``rosgraph_msgs/Clock`` on /clock from a thread (``rate_hz`` messages per second of wall time).

    Time advances at real speed from ``start_s``; ``jump_to(t)`` sets it (backward or forward).
    """

    def __init__(self, peer: RosPeer, start_s: float = 1000.0, rate_hz: float = 100.0) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        self._clock_type = Clock
        self._pub = peer.node.create_publisher(Clock, "/clock", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self._peer = peer
        self._lock = threading.Lock()
        self._origin = (start_s, time.monotonic())
        self._period = 1.0 / rate_hz
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-clock", daemon=True)
        self._thread.start()

    def now_s(self) -> float:
        with self._lock:
            start, wall = self._origin
        return start + time.monotonic() - wall

    def stamp(self, offset_s: float = 0.0) -> Any:
        """``builtin_interfaces/Time`` of the sim clock now (+ offset)."""
        from builtin_interfaces.msg import Time

        ns = round((self.now_s() + offset_s) * 1e9)
        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def jump_to(self, t_s: float) -> None:
        with self._lock:
            self._origin = (t_s, time.monotonic())

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            msg = self._clock_type()
            msg.clock = self.stamp()
            self._pub.publish(msg)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._peer.node.destroy_publisher(self._pub)


class DiagnosticsListener:
    """Keeps the latest ``/diagnostics`` status of one node (matched by its fully qualified name)."""

    def __init__(self, peer: RosPeer, node_name: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self._peer = peer
        self._node_name = node_name
        self._lock = threading.Lock()
        self.latest: Any = None
        self.latest_stamp_s: float | None = None
        self._sub = peer.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_array,
                                                  QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

    def _on_array(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith(f"{self._node_name}:"):
                with self._lock:
                    self.latest = status
                    self.latest_stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec / 1e9

    def values(self) -> dict[str, str]:
        """Key -> value of the latest status ({} before the first one)."""
        with self._lock:
            status = self.latest
        return {} if status is None else {kv.key: kv.value for kv in status.values}

    def close(self) -> None:
        self._peer.node.destroy_subscription(self._sub)


class BagPlayer:
    """A small ``ros2 bag play --clock`` (no rosbag2 wheel exists): rosbags reads, rclpy publishes.

    Messages go out as their recorded CDR bytes on ``prefix + topic`` when the sim clock (``SimClock``, started
    at the first log time and running at real speed) reaches their log time; /clock keeps running afterwards.
    """

    def __init__(self, peer: RosPeer, bag: Path, prefix: str = "") -> None:
        from rosbags.highlevel import AnyReader

        self._peer = peer
        with AnyReader([bag]) as reader:
            self.messages = [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]
        self._publishers: dict[str, Any] = {}
        for topic, msgtype, _, _ in self.messages:
            if topic not in self._publishers:
                package, kind, name = msgtype.split("/")
                msg_class = getattr(importlib.import_module(f"{package}.{kind}"), name)
                self._publishers[topic] = peer.node.create_publisher(msg_class, prefix + topic, 10)
        self.clock: SimClock | None = None

    def wait_connected(self, timeout: float = 20.0) -> bool:
        return wait_for(lambda: all(p.get_subscription_count() for p in self._publishers.values()), timeout)

    def play(self) -> None:
        """Publish every message at its log time (blocks for the bag's duration)."""
        # /clock runs for a second before the first message, as ros2 bag play --clock does with a start delay.
        self.clock = SimClock(self._peer, start_s=self.messages[0][2] / 1e9 - 1.0)
        for topic, _, log_ns, raw in self.messages:
            delay = log_ns / 1e9 - self.clock.now_s()
            if delay > 0:
                time.sleep(delay)
            self._publishers[topic].publish(raw)

    def close(self) -> None:
        if self.clock is not None:
            self.clock.close()
        for pub in self._publishers.values():
            self._peer.node.destroy_publisher(pub)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, period: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


@contextlib.contextmanager
def ros_session() -> Iterator[dict[str, str]]:
    """Claim a domain id, export the isolation variables here, and clean Fast DDS's files before and after.

    Before: every Fast DDS file under /dev/shm that no live process uses (left by killed processes, of any
    session). After: the files this session created, once unused.
    """
    import tempfile

    domain, lock = claim_domain_id()
    folder = Path(tempfile.mkdtemp(prefix="cosmos3_ros_dds_"))
    env = ros_environment(domain, loopback_profile(folder))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    stale = remove_fastdds_shm(set())
    if stale:
        print(f"ros_graph: removed {len(stale)} unused Fast DDS shared-memory files left by earlier processes",
              file=sys.stderr)
    shm_before = fastdds_shm_files()
    try:
        yield env
    finally:
        remove_fastdds_shm(shm_before)
        with contextlib.suppress(OSError):
            for item in folder.iterdir():
                item.unlink()
            folder.rmdir()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        lock.close()


# -- pytest fixtures (import them by name into a test module) ---------------------------------------------------

_SESSION: dict[str, Any] = {}


def _close_session() -> None:
    peer = _SESSION.pop("peer", None)
    if peer is not None:
        peer.close()
    session = _SESSION.pop("session", None)
    if session is not None:
        session.__exit__(None, None, None)


def _session_env() -> dict[str, str]:
    if "env" not in _SESSION:
        session = ros_session()
        _SESSION["env"] = session.__enter__()
        _SESSION["session"] = session
        atexit.register(_close_session)
    return _SESSION["env"]


@pytest.fixture(name="ros_env", scope="session")
def ros_env_fixture() -> dict[str, str]:
    """The process's isolation variables (claimed domain id, loopback discovery), exported in this process."""
    return _session_env()


@pytest.fixture(name="ros_peer", scope="session")
def ros_peer_fixture(ros_env: dict[str, str]) -> RosPeer:
    """The test's own rclpy node, spun in a background thread; one per test process."""
    if "peer" not in _SESSION:
        _SESSION["peer"] = RosPeer()
    return _SESSION["peer"]


@pytest.fixture(name="start_node", scope="module")
def start_node_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., NodeProcess]]:
    """Start ``policy_node`` processes: ``start_node(params, name=..., base=..., ros_args=...)``.

    Every process started is stopped (by its pid) when the module ends.
    """
    env = _session_env()
    started: list[NodeProcess] = []
    folder = tmp_path_factory.mktemp("nodes")

    def start(params: dict[str, Any], *, name: str = "node", base: Path | None = None,
              ros_args: tuple[str, ...] = ()) -> NodeProcess:
        index = len(started)
        kwargs = {} if base is None else {"base": base}
        params_file = write_params(folder / f"{name}_{index}.yaml", params, **kwargs)
        process = NodeProcess(params_file, folder / f"{name}_{index}.log", env, ros_args=ros_args)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()
