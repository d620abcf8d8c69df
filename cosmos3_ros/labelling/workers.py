"""Who runs the episodes: this process, one process per device, or Ray actors; each holds one resident model.

Every backend has the same small interface for the scheduler in ``dataset_labelling``:

* ``start()`` -> worker ids; ``submit(worker, task)`` gives an idle worker one task (an episode and the windows
  already in the journal);
* ``poll(timeout)`` -> events ``("item", worker, json)`` (a chunk, a window failure, an episode done),
  ``("idle", worker)`` (ready for the next task), ``("dead", worker, reason)`` (its task must be given to
  another worker; the journal drops items it already has, so outputs stay exactly-once);
  A model that fails to load is reported ``("dead", worker, reason, "load")``: not worth a retry.
* ``replace(worker)`` -> a new worker id in place of a dead one; ``close()``.

Workers get a picklable ``job`` with ``label(predictor, task) -> Iterator[json dict]`` and ``load(device)``.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from collections.abc import Iterator, Sequence
from typing import Any

Event = tuple[Any, ...]


class InlineBackend:
    """One worker in this process: ``poll`` advances the current episode by one item (streamed journaling)."""

    def __init__(self, job: Any, device: str) -> None:
        self.job = job
        self.device = device
        self.predictor: Any = None
        self.running: Iterator[dict[str, Any]] | None = None
        self.idle_sent = False

    def start(self) -> list[int]:
        """Load the model here; one worker, id 0."""
        self.predictor = self.job.load(self.device)
        return [0]

    def submit(self, worker: int, task: Any) -> None:
        """Start labelling ``task``; its items come from ``poll``."""
        self.running = self.job.label(self.predictor, task)
        self.idle_sent = False

    def poll(self, timeout: float) -> list[Event]:
        """The next item of the running episode, or ``idle`` once it is done."""
        if self.running is None:
            if self.idle_sent:
                return []
            self.idle_sent = True
            return [("idle", 0)]
        try:
            return [("item", 0, next(self.running))]
        except StopIteration:
            self.running = None
            self.idle_sent = True
            return [("idle", 0)]

    def replace(self, worker: int) -> int:
        """Never needed: an error here stops the run."""
        raise RuntimeError("the in-process worker cannot be replaced")

    def close(self) -> None:
        """Nothing to stop."""
        self.running = None


def _process_main(job: Any, device: str, threads: int, worker: int, tasks: Any, results: Any) -> None:
    """A worker process: load the model once, then label tasks until told to stop (None).

    ``results`` is the write end of this worker's own pipe; ``send`` writes synchronously, so what was sent before
    the process died has arrived whole, and a write cut short only breaks this worker's pipe.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us and writes the outputs
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    if device.startswith("cuda:"):
        torch.cuda.set_device(device)  # CUDA graphs and compiled kernels use the current device
    try:
        predictor = job.load(device)
    except BaseException as exc:
        results.send(("dead", worker, f"worker {worker} on {device}: model load failed: {exc}", "load"))
        return
    results.send(("idle", worker))
    while True:
        task = tasks.get()
        if task is None:
            return
        for item in job.label(predictor, task):
            results.send(("item", worker, item))
        results.send(("idle", worker))


class ProcessBackend:
    """One spawned process per device, each with its own model; episodes are handed out one at a time."""

    def __init__(self, job: Any, devices: Sequence[str]) -> None:
        import multiprocessing

        self.job = job
        self.devices = list(devices)
        self.context = multiprocessing.get_context("spawn")  # CUDA cannot be used after fork
        # One results pipe per worker, not one queue for all: a multiprocessing.Queue shares a write lock between
        # its writers, and a worker that dies while its feeder thread holds it (a crash, an OOM kill, os._exit)
        # blocks every other worker for good. A pipe has one writer; its death only closes that pipe.
        self.results: dict[int, Any] = {}
        self.procs: dict[int, Any] = {}
        self.tasks: dict[int, Any] = {}
        self.device_of: dict[int, str] = {}
        self.next_id = 0
        # The cores are shared out: a CPU worker computes with them, a GPU worker prepares its frames with them;
        # N workers each using every core would only fight over them.
        self.threads = max(1, (os.cpu_count() or 1) // max(1, len(self.devices)))

    def _spawn(self, device: str) -> int:
        worker = self.next_id
        self.next_id += 1
        tasks = self.context.Queue()
        reader, writer = self.context.Pipe(duplex=False)
        proc = self.context.Process(target=_process_main, name=f"cosmos3-label-{worker}", daemon=True,
                                    args=(self.job, device, self.threads, worker, tasks, writer))
        proc.start()
        writer.close()  # the worker holds the only write end: its exit is end-of-file here
        self.procs[worker], self.tasks[worker], self.device_of[worker] = proc, tasks, device
        self.results[worker] = reader
        return worker

    def start(self) -> list[int]:
        """Spawn one worker per device (each loads its model; ``idle`` arrives when it is ready)."""
        return [self._spawn(d) for d in self.devices]

    def submit(self, worker: int, task: Any) -> None:
        """Send ``task`` to ``worker``."""
        self.tasks[worker].put(task)

    def poll(self, timeout: float) -> list[Event]:
        """Queued events; a worker process that exited without saying so is reported ``dead``."""
        from multiprocessing.connection import wait

        events: list[Event] = []
        by_reader = {id(reader): worker for worker, reader in self.results.items()}
        ready = wait(list(self.results.values()), timeout) if by_reader else time.sleep(timeout) or []
        for reader in ready:
            self._drain(by_reader[id(reader)], events)
        for worker, proc in list(self.procs.items()):
            if not proc.is_alive() and worker in self.results:
                self._drain(worker, events)  # what it sent before it died comes before its death
            if not proc.is_alive() and not any(e[0] == "dead" and e[1] == worker for e in events):
                events.append(("dead", worker, f"worker {worker} on {self.device_of[worker]} exited "
                                               f"(exit code {proc.exitcode})"))
                del self.procs[worker]
        for event in events:
            if event[0] == "dead" and event[1] in self.procs:
                self.procs.pop(event[1]).join(timeout=5)
        return events

    def _drain(self, worker: int, events: list[Event]) -> None:
        """Append what ``worker``'s pipe holds; at its end (the worker has exited) close and forget the pipe."""
        reader = self.results[worker]
        try:
            while reader.poll():
                events.append(reader.recv())
        except (EOFError, OSError, pickle.UnpicklingError):  # the worker is gone (or was cut off mid-message)
            reader.close()
            del self.results[worker]

    def replace(self, worker: int) -> int:
        """A fresh process on the dead worker's device."""
        return self._spawn(self.device_of[worker])

    def close(self) -> None:
        """Stop every worker (by its own process handle)."""
        for worker, proc in self.procs.items():
            if proc.is_alive():
                self.tasks[worker].put(None)
        deadline = time.monotonic() + 5
        for proc in self.procs.values():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        self.procs.clear()
        for reader in self.results.values():
            reader.close()
        self.results.clear()


class RayBackend:
    """Ray actors (one resident model each); a task is one episode, its items return when it is done."""

    def __init__(self, job: Any, address: str, actors: int, gpus_per_actor: float) -> None:
        try:
            import ray
        except ImportError as exc:
            from ..errors import InputError

            raise InputError("--ray needs the 'ray' package (pip install 'cosmos3_ros[labelling]')") from exc
        self.ray = ray
        self.job = job
        self.count = actors
        self.gpus = gpus_per_actor
        if not ray.is_initialized():
            try:
                ray.init(address=None if address == "local" else address, include_dashboard=False,
                         log_to_driver=False, ignore_reinit_error=True)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError ... for a bad address
                from ..errors import InputError

                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise InputError(f"--ray {address!r}: cannot start or join Ray ({first}); expected auto, local, "
                                 f"or a cluster address such as ray://head:10001") from exc
        self.actor_class = ray.remote(num_gpus=gpus_per_actor, max_restarts=0)(_RayLabeller)
        self.actors: dict[int, Any] = {}
        self.pending: dict[Any, tuple[int, str]] = {}  # object ref -> (worker, 'ready' | 'label')
        self.next_id = 0

    def _spawn(self) -> int:
        worker = self.next_id
        self.next_id += 1
        actor = self.actor_class.remote(self.job, "cuda" if self.gpus > 0 else "cpu")
        self.actors[worker] = actor
        self.pending[actor.ready.remote()] = (worker, "ready")
        return worker

    def start(self) -> list[int]:
        """Create the actors; each reports ``idle`` once its model is loaded."""
        return [self._spawn() for _ in range(self.count)]

    def actor(self, worker: int) -> Any:
        """The actor handle of ``worker`` (tests kill one through it)."""
        return self.actors[worker]

    def submit(self, worker: int, task: Any) -> None:
        """Run ``task`` on ``worker``'s actor."""
        self.pending[self.actors[worker].label.remote(task)] = (worker, "label")

    def poll(self, timeout: float) -> list[Event]:
        """Finished actor calls: their items then ``idle``, or ``dead`` when the actor died."""
        if not self.pending:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        events: list[Event] = []
        for ref in ready:
            worker, call = self.pending.pop(ref)
            try:
                result = self.ray.get(ref)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError) as exc:
                self.actors.pop(worker, None)
                if call == "ready":  # died while loading its model (its __init__ raised, or it could not start)
                    cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                    events.append(("dead", worker, f"ray actor {worker}: model load failed: {cause}", "load"))
                else:
                    events.append(("dead", worker, f"ray actor {worker} died ({type(exc).__name__})"))
                continue
            if call == "label":
                events.extend(("item", worker, item) for item in result)
            events.append(("idle", worker))
        return events

    def replace(self, worker: int) -> int:
        """A new actor in place of a dead one."""
        return self._spawn()

    def close(self) -> None:
        """Kill our actors (the Ray instance itself stays up; a local one ends with this process)."""
        for actor in self.actors.values():
            self.ray.kill(actor)
        self.actors.clear()
        self.pending.clear()


class _RayLabeller:
    """The Ray actor: loads the model once, labels whole episodes."""

    def __init__(self, job: Any, device: str) -> None:
        self.job = job
        self.predictor = job.load(device)

    def ready(self) -> int:
        return os.getpid()

    def label(self, task: Any) -> list[dict[str, Any]]:
        return list(self.job.label(self.predictor, task))
