"""Turns taken straight off RQ's turns queue and run on a bounded pool of threads.

A turn spends nearly all its time waiting on the LLM, so a worker process holds hundreds
in flight: one thread takes jobs from the queue only while a slot is free (the rest stay
in Redis for any other worker process), and each runs on a pool thread (created when
first needed, so an idle process stays small). RQ's per-job bookkeeping (≈ 60 Redis
commands: started registry, worker hash, heartbeats, execution records) is skipped:
a turn's safety is its own lease (`turns:pending`, renewed while it runs; a killed
process's turns are requeued by the watchdog), so the pool only reads the job, runs it and
deletes it. A turn that raises lands in RQ's FailedJobRegistry as before; one running longer
than the job timeout gets RQ's JobTimeoutException, as under RQ's TimerDeathPenalty.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.timeouts import JobTimeoutException
from rq.utils import import_attribute

from agent_core.llm import LLMProvider, LLMRequest, LLMResponse
from agent_core.store import Task
from workers.queues import FAILURE_TTL_S, HELD_KEY, JOB_TIMEOUT_S, JOBS, OUTBOUND, TURNS
from workers.rqwire import TakenJob, take_due, take_jobs

log = logging.getLogger("workers.turnpool")

POLL_S = 1
# The longest the OutboundPool waits on its queue while deliveries may be held for a send slot.
HELD_POLL_S = 0.25
# Measured by bench/capacity.py: ≈ 0.3 MiB of RSS per turn in flight (a thread's touched
# stack, its request and HTTP connection); budgeted at 1 MiB.
TURN_MEMORY_BYTES = 1 << 20
MEMORY_SHARE = 0.25
MIN_SLOTS = 16
MAX_SLOTS = 256


def memory_limit_bytes() -> int:
    """The memory this process may use: its cgroup's limit when there is one, else RAM."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            return int(limit)
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_slots(memory_bytes: int | None = None) -> int:
    """Turns one process holds in flight by default: a quarter of its memory at
    TURN_MEMORY_BYTES each, between MIN_SLOTS and MAX_SLOTS."""
    budget = (memory_bytes if memory_bytes is not None else memory_limit_bytes()) * MEMORY_SHARE
    return max(MIN_SLOTS, min(MAX_SLOTS, int(budget // TURN_MEMORY_BYTES)))


@dataclass
class _Running:
    job_id: str
    deadline: float


class JobPool:
    """Runs the jobs of `queue` with the function `runs` names for each job's RQ function,
    `slots` at a time, until `stop()` (then finishes the running ones). For jobs whose safety
    is their own (a lease, a task entry), not RQ's started registry."""

    queue = TURNS

    def __init__(
        self,
        connection: redis.Redis,
        runs: Mapping[str, Callable[..., object]],
        *,
        slots: int,
        timeout_s: float = JOB_TIMEOUT_S,
    ) -> None:
        self.connection = connection
        self.runs = dict(runs)
        self.slots = slots
        self.timeout_s = timeout_s
        self._free = threading.Semaphore(slots)
        self._running: dict[int, _Running] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="turn")
        self._in_flight = 0

    def stop(self) -> None:
        self._stop.set()

    def work(self, *, burst: bool = False) -> None:
        """Take and run jobs until stopped (or, in burst mode, until the queue is empty and
        every turn taken has finished)."""
        try:
            while not self._stop.is_set():
                self._enforce_timeouts()
                if not self._free.acquire(timeout=POLL_S):
                    continue
                free = 1
                while free < self.slots and self._free.acquire(blocking=False):
                    free += 1
                try:
                    taken = self._take(free, burst)
                except redis.RedisError as exc:
                    log.warning("taking turn jobs failed, retrying: %s", exc)
                    taken = []
                    self._stop.wait(POLL_S)
                for _ in range(free - len(taken)):
                    self._free.release()
                for job in taken:
                    with self._mutex:
                        self._in_flight += 1
                    self._executor.submit(self._run, job)
                if burst and not taken:
                    with self._mutex:
                        idle = self._in_flight == 0
                    if idle:
                        return
                    time.sleep(0.01)
        finally:
            self._executor.shutdown(wait=True)

    def _take(self, count: int, burst: bool) -> list[TakenJob]:
        return take_jobs(self.connection, self.queue, count, block_s=0 if burst else POLL_S)

    def _run(self, job: TakenJob) -> None:
        me = threading.get_ident()
        with self._mutex:
            self._running[me] = _Running(job.id, time.monotonic() + self.timeout_s)
        try:
            self._call(self._runner(job), job)
        except BaseException:
            self._failed(job, traceback.format_exc())
        else:
            self._done(job)
        finally:
            with self._mutex:
                self._running.pop(me, None)
                self._in_flight -= 1
            self._free.release()

    def _runner(self, job: TakenJob) -> Callable[..., object]:
        run = self.runs.get(job.func)
        if run is None:
            raise ValueError(f"not a job of the {self.queue} queue: {job.func}")
        return run

    def _call(self, run: Callable[..., object], job: TakenJob) -> None:
        run(*job.args, **job.kwargs)

    def _done(self, job: TakenJob) -> None:
        try:
            self.connection.delete(job.key)
        except redis.RedisError as exc:
            # The hash expires on its own (take_jobs gave it the job timeout's TTL).
            log.warning("deleting finished job %s failed: %s", job.id, exc)

    def _failed(self, job: TakenJob, exc_string: str) -> None:
        """Dead-letter the job in RQ's FailedJobRegistry, where /readyz and metrics see it."""
        log.error("%s job %s failed:\n%s", self.queue, job.id, exc_string)
        try:
            rq_job = Job.fetch(job.id, connection=self.connection)
            with self.connection.pipeline() as pipe:
                rq_job.set_status(JobStatus.FAILED, pipeline=pipe)
                FailedJobRegistry(self.queue, connection=self.connection).add(
                    rq_job, ttl=FAILURE_TTL_S, exc_string=exc_string, pipeline=pipe
                )
                pipe.execute()
        except Exception:  # the turn's lease still brings it back; keep serving
            log.exception("recording the failure of job %s failed", job.id)

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        with self._mutex:
            overdue = [(ident, r) for ident, r in self._running.items() if r.deadline <= now]
            for _, r in overdue:
                # Raised once; the turn's own `finally` releases its lock.
                r.deadline = float("inf")
        for ident, r in overdue:
            log.warning("job %s ran past %ss: stopping it", r.job_id, self.timeout_s)
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(JobTimeoutException))


class TurnPool(JobPool):
    """Turns: `run(session_id, queue_wait_s)`; a turn's safety is its lease."""

    def __init__(
        self, connection: redis.Redis, run: Callable[..., object], *, slots: int, timeout_s: float = JOB_TIMEOUT_S
    ) -> None:
        super().__init__(connection, {JOBS[Task.turn].func: run}, slots=slots, timeout_s=timeout_s)

    def _call(self, run: Callable[..., object], job: TakenJob) -> None:
        run(*job.args, job.queue_wait_s)


class OutboundPool(JobPool):
    """The outbound queue's jobs, each JOBS entry on OUTBOUND (deliveries — retries and
    throttled replies at their held slots — and escalation calls being placed): each one's
    safety is its task entry (the task sweep queues it again), not RQ's started registry."""

    queue = OUTBOUND

    def __init__(self, connection: redis.Redis, *, slots: int, timeout_s: float = JOB_TIMEOUT_S) -> None:
        runs = {spec.func: import_attribute(spec.func) for spec in JOBS.values() if spec.queue == OUTBOUND}
        super().__init__(connection, runs, slots=slots, timeout_s=timeout_s)

    def _take(self, count: int, burst: bool) -> list[TakenJob]:
        """The held deliveries whose send slot has come (HELD_KEY), else the queue's jobs,
        waiting for one no longer than until the next slot (or HELD_POLL_S: a slot held by
        another process may come up sooner than the next one seen here)."""
        now_ms = time.time() * 1000
        held, next_ms = take_due(self.connection, HELD_KEY, count, now_ms)
        if held:
            return held
        if burst:
            return take_jobs(self.connection, self.queue, count, block_s=0)
        wait_s = HELD_POLL_S if next_ms is None else min(HELD_POLL_S, max(0.001, (next_ms - now_ms) / 1000))
        return take_jobs(self.connection, self.queue, count, block_s=wait_s)


class CpuGate:
    """At most `size` turns of this process run Python at once; the rest are waiting on the
    LLM (or a debounce) without holding the gate.

    Why: with hundreds of turns in flight, every Redis reply wakes a thread that must win the
    GIL; when many are runnable each waits up to the interpreter's switch interval (5 ms)
    per round trip, and a turn's ~20 round trips stretch to 100 ms at 70 % load. Holding the
    gate while running keeps that contention to a few threads (the former default of four
    RQ workers), while the waits that make turns long hold nothing.
    """

    def __init__(self, size: int = 4) -> None:
        self._slots = threading.BoundedSemaphore(size)
        self._local = threading.local()

    @contextmanager
    def held(self) -> Iterator[None]:
        if getattr(self._local, "held", False):
            yield
            return
        self._slots.acquire()
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = False
            self._slots.release()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Give the gate up while waiting (no-op on a thread that does not hold it)."""
        if not getattr(self._local, "held", False):
            yield
            return
        self._local.held = False
        self._slots.release()
        try:
            yield
        finally:
            self._slots.acquire()
            self._local.held = True

    def sleep(self, seconds: float) -> None:
        with self.released():
            time.sleep(seconds)


class GatedProvider:
    """An LLMProvider that gives the CpuGate up while the model answers."""

    def __init__(self, inner: LLMProvider, gate: CpuGate) -> None:
        self.inner = inner
        self.name = inner.name
        self.gate = gate

    def complete(self, request: LLMRequest) -> LLMResponse:
        with self.gate.released():
            return self.inner.complete(request)
