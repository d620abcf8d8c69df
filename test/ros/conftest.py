"""Fixtures of the ROS graph tests (see ros_graph.py): one isolated ROS session, an rclpy peer, node processes.

Nothing here imports rclpy until a fixture is used, so the ROS-free tests of this folder run anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ros_graph import NodeProcess, RosPeer, ros_session, write_params


@pytest.fixture(scope="session")
def ros_env() -> Iterator[dict[str, str]]:
    """The session's isolation variables (claimed domain id, loopback discovery), exported in this process."""
    with ros_session() as env:
        yield env


@pytest.fixture(scope="session")
def ros_peer(ros_env: dict[str, str]) -> Iterator[RosPeer]:
    """The test's own rclpy node, spun in a background thread for the whole session."""
    peer = RosPeer()
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture(scope="session")
def start_node(ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Callable[..., NodeProcess]]:
    """Start ``policy_node`` processes: ``start_node(params: dict, name=...)``; all stopped at session end."""
    started: list[NodeProcess] = []
    folder = tmp_path_factory.mktemp("nodes")

    def start(params: dict[str, Any], *, name: str = "node", base: Path | None = None,
              ros_args: tuple[str, ...] = ()) -> NodeProcess:
        index = len(started)
        kwargs = {} if base is None else {"base": base}
        params_file = write_params(folder / f"{name}_{index}.yaml", params, **kwargs)
        process = NodeProcess(params_file, folder / f"{name}_{index}.log", ros_env, ros_args=ros_args)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()
