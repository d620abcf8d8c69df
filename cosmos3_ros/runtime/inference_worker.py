"""One thread that owns the GPU, fed through a size-1 slot where a newer job replaces an older one.

A robot policy must act on the freshest observation, so work is never queued: if the model is busy when a
new snapshot arrives, the pending one (not yet started) is dropped and counted. A failing job is reported
through ``on_error`` and the thread carries on. ``stop`` wakes the thread, lets the running job finish and
joins it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Job = TypeVar("Job")

_log = logging.getLogger(__name__)


class InferenceWorker(Generic[Job]):
    """Runs ``process(job)`` for the latest submitted job on a dedicated thread.

    Args:
        process: does the work for one job (inference + publishing); runs on the worker thread.
        on_error: called on the worker thread with the job and the exception when ``process`` raises.
        on_idle: called on the worker thread after each job, once the worker counts as idle again (``busy``
            false), so a caller woken by it can hand over the next job at once.
        name: thread name (shows in ``py-spy`` / ``top -H``).

    """

    def __init__(
        self,
        process: Callable[[Job], None],
        on_error: Callable[[Job, BaseException], None],
        name: str = "cosmos3-inference",
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self._process = process
        self._on_error = on_error
        self._on_idle = on_idle
        self._condition = threading.Condition()
        self._pending: Job | None = None
        self._has_pending = False
        self._busy = False
        self._stopping = False
        self._replaced = 0
        self._completed = 0
        self._failed = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread (once)."""
        self._thread.start()

    def submit(self, job: Job) -> bool:
        """Put ``job`` in the slot; returns True if it replaced a job that had not started yet."""
        with self._condition:
            if self._stopping:
                return False
            replaced = self._has_pending
            if replaced:
                self._replaced += 1
            self._pending = job
            self._has_pending = True
            self._condition.notify()
            return replaced

    def discard_pending(self) -> bool:
        """Drop the job waiting in the slot, if any; returns whether one was dropped."""
        with self._condition:
            dropped = self._has_pending
            self._pending, self._has_pending = None, False
            return dropped

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Stop taking jobs, drop the pending one, wait for the running one; True if the thread has ended."""
        with self._condition:
            self._stopping = True
            self._pending, self._has_pending = None, False
            self._condition.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()

    @property
    def busy(self) -> bool:
        """Whether a job is running now."""
        with self._condition:
            return self._busy

    @property
    def has_pending(self) -> bool:
        """Whether a job waits in the slot."""
        with self._condition:
            return self._has_pending

    @property
    def counts(self) -> dict[str, int]:
        """Jobs ``completed``, ``failed`` and ``replaced`` (dropped unstarted) so far."""
        with self._condition:
            return {"completed": self._completed, "failed": self._failed, "replaced": self._replaced}

    def wait_idle(self, timeout: float) -> bool:
        """Block until no job is pending or running (for tests and shutdown); True if idle in time."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._busy and not self._has_pending, timeout)

    def _loop(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._has_pending or self._stopping)
                if self._stopping:
                    self._condition.notify_all()
                    return
                job = self._pending
                self._pending, self._has_pending = None, False
                self._busy = True
            ok = True
            try:
                self._process(job)  # type: ignore[arg-type]
            except Exception as exc:  # the GPU thread must survive any failing request
                ok = False
                try:
                    self._on_error(job, exc)  # type: ignore[arg-type]
                except Exception:
                    _log.exception("error handler failed")
            finally:
                with self._condition:
                    self._busy = False
                    if ok:
                        self._completed += 1
                    else:
                        self._failed += 1
                    self._condition.notify_all()
            if self._on_idle is not None:
                try:
                    self._on_idle()
                except Exception:
                    _log.exception("on_idle handler failed")
