"""RQ's own floor: time per job of a no-op job through a plain `rq.SimpleWorker`.

    python -m bench.rqfloor --redis-url URL [--jobs N]

Enqueues N jobs calling `bench.rqfloor.noop` (result_ttl=0, like the gateway's turn jobs)
on a queue of their own, then times `SimpleWorker.work(burst=True)` in this process until
the queue is empty. Prints JSON: enqueue µs per job, worker ms per job, Redis commands per
job. Run it in a fresh process (the benchmarks do) so nothing else shares its GIL.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

QUEUE = "bench-noop"


def noop() -> None:
    """The job: nothing, so what is timed is RQ's own bookkeeping."""
    return None


def measure(redis_url: str, jobs: int) -> dict[str, float]:
    import redis
    from rq import Queue, SimpleWorker

    conn = redis.Redis.from_url(redis_url)
    q = Queue(QUEUE, connection=conn)
    q.empty()
    start = time.perf_counter()
    for _ in range(jobs):
        q.enqueue("bench.rqfloor.noop", result_ttl=0)
    enqueue_s = time.perf_counter() - start
    cmds0 = int(conn.info("stats")["total_commands_processed"])  # type: ignore[index]
    worker = SimpleWorker([q], connection=conn)
    start = time.perf_counter()
    cpu0 = time.process_time()
    worker.work(burst=True, logging_level="WARNING")
    work_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu0
    cmds = int(conn.info("stats")["total_commands_processed"]) - cmds0  # type: ignore[index]
    left = q.count
    conn.close()
    return {
        "jobs": jobs,
        "left_in_queue": left,
        "enqueue_us_per_job": round(enqueue_s / jobs * 1e6, 1),
        "work_s": round(work_s, 3),
        "ms_per_job": round(work_s / jobs * 1000, 3),
        "cpu_ms_per_job": round(cpu_s / jobs * 1000, 3),
        "jobs_per_s": round(jobs / work_s, 1),
        "redis_cmds_per_job": round(cmds / jobs, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rqfloor")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--jobs", type=int, default=2_000)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.redis_url, args.jobs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
