"""The job queue: accepted jobs wait in a bounded queue; one worker thread per device takes them in order and
makes each with its own `OutputMaker` (the pipeline stays loaded while the next job uses the same models).
Every accepted job keeps its record in memory and as `<id>.job.json` in the outputs folder (written whole
and renamed), so a job that fails keeps its error and settings and none is lost while the app runs. A client
can wait for a job to finish (`wait`) instead of asking again and again: on a machine with few cores, a
client that asks every few milliseconds takes CPU time from the job it is waiting for."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from animatediff.files import atomic_path
from animatediff.settings import Settings

log = logging.getLogger(__name__)


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (State.DONE, State.FAILED)


class QueueFull(RuntimeError):
    """The queue holds as many jobs as it may; the client should try again later."""


@dataclass
class Job:
    """One output to make: what the client asked for (`request`), the complete settings it resolved to
    (the sidecar's), and how far it has come."""

    id: str
    request: dict
    settings: dict
    output: str  # the output's file name in the outputs folder
    state: State = State.QUEUED
    progress: float = 0.0
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def record(self) -> dict:
        return asdict(self)


class JobQueue:
    """Jobs for `devices` (one worker each), at most `capacity` waiting; `run(job, settings, device,
    on_progress)` makes one."""

    def __init__(self, outputs: Path, devices: list[str], capacity: int, run):
        self.outputs, self.capacity, self.run = Path(outputs), capacity, run
        self.jobs: dict[str, Job] = {}
        self._settings: dict[str, Settings] = {}
        self._waiting: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)  # notified whenever a job is done or has failed
        self._when_finished: dict[str, list] = {}  # job id → what to call once it is done or has failed
        self._workers = [
            threading.Thread(target=self._work, args=(device,), daemon=True, name=f"worker-{device}")
            for device in devices
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, job_id: str, request: dict, settings: Settings) -> Job:
        """Accept a job (or raise `QueueFull`); its record is written before this returns."""
        with self._lock:
            if self._waiting.qsize() >= self.capacity:
                raise QueueFull(f"the queue is full ({self.capacity} jobs waiting); try again when one has started")
            job = Job(id=job_id, request=request, settings=settings.sidecar(), output=settings.output.name)
            self.jobs[job.id] = job
            self._settings[job.id] = settings
            self._save(job)
            self._waiting.put(job.id)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def wait(self, job_id: str, timeout: float) -> Job | None:
        """The job once it is done or has failed, or as it stands after `timeout` seconds (None: no such job)."""
        job = self.jobs.get(job_id)
        if job is not None:
            with self._finished:
                self._finished.wait_for(lambda: job.state.finished, timeout)
        return job

    def when_finished(self, job_id: str, callback):
        """Call `callback()` once the job is done or has failed (at once if it already is), from the worker's
        thread: a waiting request's way to learn it without asking again. Returns what forgets the callback
        (for a request that stops waiting first)."""
        with self._lock:
            if not self.jobs[job_id].state.finished:
                self._when_finished.setdefault(job_id, []).append(callback)
                return lambda: self._forget(job_id, callback)
        callback()
        return lambda: None

    def _forget(self, job_id: str, callback) -> None:
        with self._lock:
            waiting = self._when_finished.get(job_id, [])
            if callback in waiting:
                waiting.remove(callback)

    def _save(self, job: Job) -> None:
        with atomic_path(self.outputs / f"{job.id}.job.json") as temporary:
            temporary.write_text(json.dumps(job.record(), indent=2, default=str))

    def _work(self, device: str) -> None:
        while True:
            job_id = self._waiting.get()
            job = self.jobs[job_id]
            job.state, job.started = State.RUNNING, time.time()
            self._save(job)

            def on_progress(done: int, steps: int, job: Job = job) -> None:
                job.progress = max(job.progress, min(done / steps, 1.0))

            try:
                self.run(job, self._settings.pop(job_id), device, on_progress)
                state, job.progress = State.DONE, 1.0
            except Exception as error:  # the job fails; the worker goes on with the next
                log.exception("job %s failed", job_id)
                state, job.error = State.FAILED, f"{type(error).__name__}: {error}"
            job.finished = time.time()
            with self._finished:  # the record is complete (its finish time too) once a client sees it finished
                job.state = state
                self._save(job)
                self._finished.notify_all()
                callbacks = self._when_finished.pop(job_id, [])
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # a waiter's mistake must not stop the worker
                    log.exception("telling a waiting request that job %s finished failed", job_id)


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]
