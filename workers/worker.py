"""The worker process: RQ SimpleWorkers (no fork per job) on threads, plus the scheduler.

RQ's forking worker spends ≈23 ms per job on the fork; a SimpleWorker ≈5 ms. Turns spend
most of their time waiting on the LLM, so one process runs `concurrency` SimpleWorkers on
threads (each its own RQ worker, visible in `rq info`), with timer-based job timeouts
instead of SIGALRM, which only the main thread can receive.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from types import FrameType
from typing import Any

import redis
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.timeouts import TimerDeathPenalty

from workers.queues import ALL_QUEUES
from workers.schedules import Scheduler

log = logging.getLogger("workers.worker")
STOP_POLL_S = 1


class ThreadWorker(SimpleWorker):
    """A SimpleWorker that can run on any thread; the process handles signals."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        # RQ's dequeue loop only ends on a signal; on a thread, wake every second to see a stop
        # request (set by the process's signal handler) instead.
        if timeout is None:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self._stop_requested:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time=STOP_POLL_S)
            if result is not None:
                return result
        raise StopRequested()

    def stop(self) -> None:
        """Finish the current job, then stop. (RQ's `request_stop` is a signal handler: it
        re-installs handlers and may raise, which only works on the main thread.)"""
        self._stop_requested = True

    def subscribe(self) -> None:
        # RQ's per-worker pub/sub thread only serves `rq` CLI commands; one thread per
        # worker thread would double the process's threads for nothing.
        return None


def worker_name(index: int) -> str:
    return f"{socket.gethostname()}.{os.getpid()}.{index}.{uuid.uuid4().hex[:6]}"


def run(connection: redis.Redis, *, concurrency: int = 4, burst: bool = False, with_scheduler: bool = True) -> None:
    """Run `concurrency` workers until SIGTERM/SIGINT (warm: in-flight jobs finish)."""
    workers = [
        ThreadWorker(list(ALL_QUEUES), connection=connection, name=worker_name(i), worker_ttl=30)
        for i in range(concurrency)
    ]
    scheduler = Scheduler().start() if with_scheduler else None
    threads = [
        threading.Thread(target=w.work, kwargs={"burst": burst, "logging_level": "WARNING"}, name=w.name, daemon=True)
        for w in workers
    ]
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            log.warning("second signal: exiting now; unfinished turns are requeued by the watchdog")
            os._exit(1)
        stopping.set()
        for w in workers:
            w.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
    finally:
        if scheduler:
            scheduler.stop()
