"""Periodic work, run by a thread in every worker process (and by `chatgw cron`).

Each schedule takes a Redis lock for its interval before running, so however many
processes run this loop, each schedule runs once per interval fleet-wide. The same loop
promotes RQ's scheduled jobs (retries with backoff) through rq's RQScheduler, without the
extra process `rq worker --with-scheduler` would fork.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from rq.scheduler import RQScheduler

from agent_core.store import health
from workers import context, jobs
from workers.queues import ALL_QUEUES

log = logging.getLogger("workers.schedules")

TICK_S = 0.25


@dataclass(frozen=True)
class Schedule:
    name: str
    interval_s: float
    run: Callable[[], object]


def schedules() -> list[Schedule]:
    settings = context.get().settings
    return [
        Schedule("watchdog", 5.0, jobs.watchdog),
        Schedule("outbox", 0.5, jobs.pump_events),
        Schedule("lifecycle", settings.app.lifecycle_sweep_s, jobs.lifecycle_sweep),
        Schedule("tasks", 10.0, jobs.task_sweep),
    ]


class Scheduler:
    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"{socket.gethostname()}.{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        store = context.get().store
        store.run(health.worker_seen(self.name))
        for sched in schedules():
            if store.run(health.take_schedule(sched.name, self.name, sched.interval_s)):
                try:
                    sched.run()
                except Exception:  # one failing sweep must not stop the others; it runs again next interval
                    log.exception("schedule %s failed", sched.name)

    def _loop(self) -> None:
        rq_scheduler = RQScheduler(
            list(ALL_QUEUES),
            connection=context.get().rq_redis,
            name=self.name,
            logging_level=logging.getLogger().getEffectiveLevel(),
        )
        while not self._stop.is_set():
            try:
                if rq_scheduler.acquire_locks():
                    rq_scheduler.enqueue_scheduled_jobs()
                self.tick()
            except Exception:  # Redis restarts and blips: keep the loop alive and retry
                log.exception("scheduler tick failed")
            self._stop.wait(TICK_S)
        rq_scheduler.release_locks()

    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self._loop, name="schedules", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
