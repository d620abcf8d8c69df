"""How the project's rclpy nodes are spun: one single-threaded executor on a thread of its own, stopped cleanly.

Used by ``policy_node``, ``sim_fr3_node``, ``cosmos3-ros sim-loop``, the DDS measurement script and the test peers.
"""

from __future__ import annotations

import threading
from typing import Any

from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor


def make_executor(context: Any = None) -> Executor:
    """The executor the node spins in: single-threaded.

    Why not rclpy's MultiThreadedExecutor: while a callback of a mutually exclusive group runs, the entities of
    that group stay ready and its spin loop keeps waking without waiting, burning a core in Python. Measured in
    the closed loop (``cosmos3-ros sim-loop``, 2-core VM): the spin thread took 7.3 s of CPU in 10 s and the
    arm starved 0.4-1.3 s per 8 s run with the multi-threaded executor; single-threaded: 4.0 s of CPU in 15 s,
    starved 0, stale points 0, e-stop -> hold 1.8 ms. Callbacks here only buffer, validate and publish (the
    model, decoding and video writing run on threads of their own), so none waits long behind another. The
    callback groups still make a MultiThreadedExecutor safe for whoever composes the node into one.
    """
    return SingleThreadedExecutor(context=context)


class Spinner:
    """Spins ``executor`` on a thread of its own until ``stop()``; ``on_exit`` is set when the thread ends.

    Why not ``executor.spin()`` + ``executor.shutdown()`` from another thread: this rclpy's ``shutdown`` does not
    wait for the callback being dispatched and destroys the executor's guard condition under it, so the spin
    thread can die with ``InvalidHandle`` (seen in a CI run, SIGTERM during an inference). Here the thread spins
    one callback at a time and checks a flag in between; ``stop`` joins it before the executor is shut down.
    """

    def __init__(self, executor: Executor, name: str, on_exit: threading.Event | None = None) -> None:
        self.executor = executor
        self._halt = threading.Event()
        self._on_exit = on_exit
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._halt.is_set():
                self.executor.spin_once(timeout_sec=0.1)
        except ExternalShutdownException:
            pass
        finally:
            if self._on_exit is not None:
                self._on_exit.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Let the running callback finish, end the thread, then shut the executor down."""
        self._halt.set()
        self._thread.join(timeout)
        self.executor.shutdown(timeout_sec=0)
