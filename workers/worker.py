"""The worker process: turns on a TurnPool, other jobs on RQ SimpleWorkers, the scheduler.

Turns spend nearly all their time waiting on the LLM, so they run on a bounded pool of
threads (workers/turnpool.py: `concurrency` turns in flight, by default sized from the
process's memory); queued deliveries (retries, throttled replies at their held slots) on a
OutboundPool of DELIVERY_SLOTS. Summaries, index builds and webhook events, which use RQ's
retries, run on BACKGROUND_WORKERS SimpleWorkers (no fork per job: RQ's forking worker
spends ≈23 ms per job on the fork) on threads, each its own RQ worker, visible in `rq info`,
with timer-based job timeouts instead of SIGALRM, which only the main thread can receive.
One of them never takes `default` jobs, so CPU-heavy index builds never hold up events.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import uuid
from types import FrameType
from typing import Any

import redis
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.timeouts import TimerDeathPenalty

from workers import jobs
from workers.queues import DEFAULT, EVENTS
from workers.schedules import Scheduler
from workers.turnpool import OutboundPool, TurnPool, default_slots

log = logging.getLogger("workers.worker")
STOP_POLL_S = 1
# What the SimpleWorkers beside the pools serve, in priority order.
BACKGROUND_QUEUES = ((DEFAULT, EVENTS), (DEFAULT, EVENTS), (EVENTS,))
# Deliveries in flight at once (each mostly waits on the provider's API).
DELIVERY_SLOTS = 16
BACKGROUND_WORKERS = len(BACKGROUND_QUEUES)
# How long a thread running Python keeps the GIL while another waits for it (CPython's
# default is 5 ms). A turn makes ~20 Redis round trips; each reply wakes its thread, which
# waited up to the whole interval while a send's Python ran: during a throttled backlog,
# another number's replies took p99 ≈ 90 ms. 1 ms bounds that wait at the cost of more GIL
# hand-offs (issue 13; docs/decisions.md).
SWITCH_INTERVAL_S = 0.001


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


def run(
    connection: redis.Redis, *, concurrency: int | None = None, burst: bool = False, with_scheduler: bool = True
) -> None:
    """Run until SIGTERM/SIGINT (warm: in-flight jobs finish): `concurrency` turns in flight
    (default: sized from memory), BACKGROUND_WORKERS RQ workers for everything else."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    pool = TurnPool(connection, jobs.turn, slots=concurrency or default_slots())
    deliveries = OutboundPool(connection, slots=DELIVERY_SLOTS)
    workers = [
        ThreadWorker(list(queues), connection=connection, name=worker_name(i), worker_ttl=30)
        for i, queues in enumerate(BACKGROUND_QUEUES)
    ]
    scheduler = Scheduler().start() if with_scheduler else None
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            log.warning("second signal: exiting now; unfinished turns are requeued by the watchdog")
            os._exit(1)
        stopping.set()
        pool.stop()
        deliveries.stop()
        for w in workers:
            w.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    background = [
        threading.Thread(target=w.work, kwargs={"burst": burst, "logging_level": "WARNING"}, name=w.name, daemon=True)
        for w in workers
    ]
    turns = threading.Thread(target=pool.work, kwargs={"burst": burst}, name="turns", daemon=True)
    outbound = threading.Thread(target=deliveries.work, kwargs={"burst": burst}, name="deliveries", daemon=True)
    try:
        turns.start()
        if burst:
            # Turns queue deliveries and summaries: drain them first, then what they queued.
            _join(turns)
        outbound.start()
        for t in background:
            t.start()
        for t in [turns, outbound, *background]:
            _join(t)
    finally:
        if scheduler:
            scheduler.stop()


def _join(thread: threading.Thread) -> None:
    # A bare join() would block the main thread's signal handlers.
    while thread.is_alive():
        thread.join(timeout=0.5)
