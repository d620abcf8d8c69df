"""InferenceWorker: one thread, a size-1 latest-wins slot, errors reported, clean stop."""

import threading
import time

from cosmos3_ros.runtime.inference_worker import InferenceWorker


def test_a_newer_job_replaces_the_pending_one_while_the_model_is_busy():
    started, release = threading.Event(), threading.Event()
    done = []

    def process(job):
        if job == 0:
            started.set()
            release.wait(5)
        done.append(job)

    worker = InferenceWorker(process, lambda job, exc: None)
    worker.start()
    worker.submit(0)
    assert started.wait(5)
    replaced = [worker.submit(job) for job in (1, 2, 3)]
    assert replaced == [False, True, True]
    release.set()
    assert worker.wait_idle(5)
    assert done == [0, 3]
    assert worker.counts == {"completed": 2, "failed": 0, "replaced": 2}
    assert worker.stop()


def test_a_failing_job_is_reported_and_the_thread_continues():
    errors, done = [], []

    def process(job):
        if job == "bad":
            raise ValueError("boom")
        done.append(job)

    worker = InferenceWorker(process, lambda job, exc: errors.append((job, str(exc))))
    worker.start()
    worker.submit("bad")
    assert worker.wait_idle(5)
    worker.submit("good")
    assert worker.wait_idle(5)
    assert errors == [("bad", "boom")] and done == ["good"]
    assert worker.alive
    assert worker.counts["failed"] == 1
    assert worker.stop()


def test_stop_lets_the_running_job_finish_drops_the_pending_one_and_joins():
    started = threading.Event()
    done = []

    def process(job):
        started.set()
        time.sleep(0.2)
        done.append(job)

    worker = InferenceWorker(process, lambda job, exc: None)
    worker.start()
    worker.submit("running")
    assert started.wait(5)
    worker.submit("pending")
    assert worker.stop(timeout=5)
    assert not worker.alive
    assert done == ["running"]
    assert worker.submit("late") is False
    assert worker.stop()  # idempotent


def test_stop_of_an_idle_worker_is_immediate():
    worker = InferenceWorker(lambda job: None, lambda job, exc: None)
    worker.start()
    t0 = time.perf_counter()
    assert worker.stop()
    assert time.perf_counter() - t0 < 1.0


def test_discard_pending():
    worker = InferenceWorker(lambda job: None, lambda job, exc: None)  # not started: jobs stay pending
    worker.submit(1)
    assert worker.has_pending
    assert worker.discard_pending() is True
    assert not worker.has_pending
    assert worker.stop()
