"""HTTP load generator, run in its own process so it never shares a GIL with the server.

    python -m bench.load URL [--method POST] [--header 'Name: value'] [--body TEMPLATE]
        [--customers N] [--offset K] (--duration S | --requests N) [--concurrency C]
        [--rate R] [--engine auto|wrk|python] [--lines-file F --line-header NAME]
        [--send-log F]

`@N@` in the body is replaced per request by `offset + (i % customers)` (i counts requests),
so every request can name a different customer. It prints one JSON object on stdout:
requests, rps, p50/p90/p99/max in ms, status counts and errors.

Pre-built requests (`--lines-file`): one request per line, `<header value>TAB<body>`; request
i sends line `(offset + i) % lines` with that value in the `--line-header` header (e.g. a
pre-computed X-Twilio-Signature for a form body that must be unique per request). `sent` in
the result counts requests started, so a caller can continue at `offset + sent` next time.
`--send-log F` (python engine) writes one line per request: `line, wall-clock time of the
write, wall-clock time of the answer (or -1), status (or -1)` (time.time(), comparable
between processes on one machine).

Engines:
- `wrk` (C, closed loop, one thread) when it is on PATH: the cheapest client, so the
  maximum-throughput figures are limited by the server, not by Python.
- `python`: raw asyncio streams (uvloop when installed), keep-alive HTTP/1.1, one request
  in flight per connection. Closed loop by default; with `--rate` it is open loop: a pacer
  schedules requests at a fixed rate and latency is measured from the *scheduled* time, so
  a stalled server shows up in the percentiles (no coordinated omission). `--requests N`
  sends exactly N requests (used to fill queues). wrk cannot pace (wrk2 is not
  available), so fixed-rate runs always use this engine.

`run()` is the helper the benchmarks use: it starts this module as a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PLACEHOLDER = "@N@"
RESULT_MARK = "@@RESULT@@"


@dataclass
class Target:
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    customers: int = 1_000
    offset: int = 0
    lines_file: str | None = None  # pre-built requests, see the module docstring
    line_header: str = ""
    _lines: list[tuple[str, bytes]] | None = field(default=None, repr=False)

    def lines(self) -> list[tuple[str, bytes]]:
        if self._lines is None:
            assert self.lines_file is not None
            out = []
            with open(self.lines_file, "rb") as f:
                for raw in f:
                    value, _, body = raw.rstrip(b"\r\n").partition(b"\t")
                    out.append((value.decode(), body))
            self._lines = out
        return self._lines

    def line_index(self, i: int) -> int:
        return (self.offset + i) % len(self.lines())

    @property
    def parts(self) -> tuple[str, int, str]:
        u = urlsplit(self.url)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        return u.hostname or "127.0.0.1", u.port or 80, path

    def request_bytes(self, i: int) -> bytes:
        host, port, path = self.parts
        headers = dict(self.headers)
        if self.lines_file:
            value, body = self.lines()[self.line_index(i)]
            headers[self.line_header] = value
        else:
            body = self.body.replace(PLACEHOLDER, str(self.offset + i % self.customers)).encode()
        lines = [f"{self.method} {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def summarize(
    latencies_s: list[float], elapsed_s: float, statuses: Counter[int], errors: Counter[str]
) -> dict[str, Any]:
    lat = sorted(latencies_s)
    n = len(lat)
    return {
        "requests": n,
        "elapsed_s": round(elapsed_s, 3),
        "rps": round(n / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "p50_ms": round(percentile(lat, 50) * 1000, 3),
        "p90_ms": round(percentile(lat, 90) * 1000, 3),
        "p99_ms": round(percentile(lat, 99) * 1000, 3),
        "max_ms": round(lat[-1] * 1000, 3) if lat else float("nan"),
        "mean_ms": round(sum(lat) / n * 1000, 3) if n else float("nan"),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "non_2xx": sum(v for k, v in statuses.items() if not 200 <= k < 300),
        "errors": dict(errors),
    }


# ---------------------------------------------------------------------------------------
# Python engine (asyncio streams)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; returns (status, keep_alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    chunked = False
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            keep_alive = False
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, keep_alive


class Client:
    """One keep-alive connection that reconnects after errors or `Connection: close`."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, data: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(data)
        try:
            status, keep_alive = await asyncio.wait_for(read_response(self.reader), self.timeout_s)
        except BaseException:
            self.close()
            raise
        if not keep_alive:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def python_engine(
    target: Target,
    *,
    concurrency: int,
    duration_s: float | None,
    requests: int | None,
    rate: float | None,
    timeout_s: float,
    send_log: str | None = None,
) -> dict[str, Any]:
    host, port, _ = target.parts
    if target.lines_file:
        target.lines()  # read the file before the clock starts
    latencies: list[float] = []
    service: list[float] = []  # from the moment the request is written (open loop only differs)
    send_lag: list[float] = []  # scheduled start to actual write (open loop: pacer/queue lag)
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    counter = iter(range(1 << 62))
    started = [0]
    log_rows: list[tuple[int, float, float, int]] = []
    clock = time.perf_counter
    start = clock()
    deadline = start + duration_s if duration_s else float("inf")

    async def one(client: Client, scheduled: float) -> None:
        i = next(counter)
        started[0] += 1
        data = target.request_bytes(i)
        sent = clock()
        wall = time.time() if send_log else 0.0
        send_lag.append(sent - scheduled)
        try:
            status = await client.request(data)
        except TimeoutError:
            errors["timeout"] += 1
            if send_log:
                log_rows.append((i, wall, -1.0, -1))
            return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            errors[type(exc).__name__] += 1
            if send_log:
                log_rows.append((i, wall, -1.0, -1))
            return
        done = clock()
        if send_log:
            log_rows.append((i, wall, time.time(), status))
        latencies.append(done - scheduled)
        service.append(done - sent)
        statuses[status] += 1

    if rate is None:
        budget = {"left": requests if requests is not None else -1}

        async def closed(client: Client) -> None:
            while clock() < deadline and budget["left"] != 0:
                budget["left"] -= 1
                await one(client, clock())
            client.close()

        await asyncio.gather(*(closed(Client(host, port, timeout_s)) for _ in range(concurrency)))
        elapsed = clock() - start
        _write_send_log(send_log, target, log_rows)
        return summarize(latencies, elapsed, statuses, errors) | {"mode": "closed", "sent": started[0]}

    # Open loop: a pacer queues scheduled start times; connections take them in order.
    due_times: asyncio.Queue[float | None] = asyncio.Queue()
    total = requests if requests is not None else int(rate * (duration_s or 0))

    async def pacer() -> None:
        for i in range(total):
            due = start + i / rate
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            due_times.put_nowait(due)
        for _ in range(concurrency):
            due_times.put_nowait(None)

    async def open_worker(client: Client) -> None:
        while (due := await due_times.get()) is not None:
            await one(client, due)
        client.close()

    await asyncio.gather(pacer(), *(open_worker(Client(host, port, timeout_s)) for _ in range(concurrency)))
    out = summarize(latencies, clock() - start, statuses, errors)
    _write_send_log(send_log, target, log_rows)
    svc, lag = sorted(service), sorted(send_lag)
    return out | {
        "mode": "open",
        "sent": started[0],
        "target_rate": rate,
        "scheduled": total,
        # Latency counted from the write instead of the schedule, and the gap between the two
        # (waiting for a free connection, or this process being starved of CPU).
        "service_p50_ms": round(percentile(svc, 50) * 1000, 3),
        "service_p99_ms": round(percentile(svc, 99) * 1000, 3),
        "send_lag_p50_ms": round(percentile(lag, 50) * 1000, 3),
        "send_lag_p99_ms": round(percentile(lag, 99) * 1000, 3),
    }


def _write_send_log(path: str | None, target: Target, rows: list[tuple[int, float, float, int]]) -> None:
    if not path:
        return
    with open(path, "w") as f:
        for i, sent, done, status in rows:
            line = target.line_index(i) if target.lines_file else i
            f.write(f"{line}\t{sent:.6f}\t{done:.6f}\t{status}\n")


def run_python(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    coro = python_engine(
        target,
        concurrency=args.concurrency,
        duration_s=args.duration,
        requests=args.requests,
        rate=args.rate,
        timeout_s=args.timeout,
        send_log=args.send_log,
    )
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(coro)
    except ImportError:
        result = asyncio.run(coro)
    return result | {"engine": "python", "concurrency": args.concurrency}


# ---------------------------------------------------------------------------------------
# wrk engine


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for ASCII


def wrk_script(target: Target, threads: int) -> str:
    _, _, path = target.parts
    headers = "\n".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in target.headers.items())
    return f"""
wrk.method = {lua_string(target.method)}
{headers}
local path = {lua_string(path)}
local tpl = {lua_string(target.body)}
local customers = {target.customers}
local offset = {target.offset}
local nthreads = {threads}
local linesfile = {lua_string(target.lines_file or "")}
local lineheader = {lua_string(target.line_header)}
local values, bodies, nlines = {{}}, {{}}, 0
local hdrs = {{}}
local threads = {{}}
counter = 0
statuses = {{}}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = tid
  if linesfile ~= "" then
    -- Pre-built requests: "<header value>\\t<body>" per line, read once before the run.
    for line in io.lines(linesfile) do
      local tab = string.find(line, "\\t", 1, true)
      nlines = nlines + 1
      values[nlines] = string.sub(line, 1, tab - 1)
      bodies[nlines] = string.sub(line, tab + 1)
    end
    for k, v in pairs(wrk.headers) do hdrs[k] = v end
  end
end

function request()
  if nlines > 0 then
    local k = (offset + counter) % nlines + 1
    counter = counter + nthreads
    hdrs[lineheader] = values[k]
    return wrk.format(nil, path, hdrs, bodies[k])
  end
  local n = offset + (counter % customers)
  counter = counter + nthreads
  local body = (string.gsub(tpl, "{PLACEHOLDER}", tostring(n)))
  return wrk.format(nil, path, nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local parts = {{}}
  local sent = 0
  for _, t in ipairs(threads) do
    sent = sent + (t:get("counter") - t:get("tid")) / nthreads
    local s = t:get("statuses")
    for code, count in pairs(s) do
      parts[code] = (parts[code] or 0) + count
    end
  end
  local codes = {{}}
  for code, count in pairs(parts) do
    table.insert(codes, string.format('"%d":%d', code, count))
  end
  local e = summary.errors
  io.write(string.format(
    '\\n{RESULT_MARK}{{"requests":%d,"sent":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f,"statuses":{{%s}},"errors":{{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}}}\\n',
    summary.requests, sent, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, table.concat(codes, ","),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def run_wrk(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    if args.requests is not None or args.rate is not None or args.send_log:
        raise SystemExit("bench.load: wrk runs for a duration at full speed; use --engine python")
    threads = 1
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(wrk_script(target, threads))
        script = f.name
    try:
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{args.concurrency}",
            f"-d{max(1, round(args.duration))}s",
            f"--timeout={max(1, round(args.timeout))}s",
            "-s",
            script,
            target.url,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        os.unlink(script)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)), None)
    if line is None:
        raise SystemExit(f"bench.load: wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    raw = json.loads(line[len(RESULT_MARK) :])
    elapsed = raw["duration_us"] / 1e6
    statuses = {str(k): v for k, v in sorted(raw["statuses"].items(), key=lambda kv: int(kv[0]))}
    errors = {k: v for k, v in raw["errors"].items() if v and k != "status"}
    return {
        "engine": "wrk",
        "mode": "closed",
        "concurrency": args.concurrency,
        "requests": raw["requests"],
        "sent": raw["sent"],
        "elapsed_s": round(elapsed, 3),
        "rps": round(raw["requests"] / elapsed, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "mean_ms": round(raw["mean_us"] / 1000, 3),
        "statuses": statuses,
        "non_2xx": sum(v for k, v in statuses.items() if not 200 <= int(k) < 300),
        "errors": errors,
    }


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


# ---------------------------------------------------------------------------------------
# Entry points


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    p.add_argument("url")
    p.add_argument("--method", default="GET")
    p.add_argument("--header", action="append", default=[], help="'Name: value' (repeatable)")
    p.add_argument("--body", default="", help=f"request body; {PLACEHOLDER} becomes a customer number")
    p.add_argument("--customers", type=int, default=1_000)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=None, help="seconds")
    p.add_argument("--requests", type=int, default=None, help="send exactly this many (python engine)")
    p.add_argument("--rate", type=float, default=None, help="open loop at this many requests/s (python engine)")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--engine", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--lines-file", default=None, help="pre-built requests: '<header value>TAB<body>' per line")
    p.add_argument("--line-header", default="X-Twilio-Signature", help="header that gets each line's value")
    p.add_argument("--send-log", default=None, help="write per-request send/answer times here (python engine)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.duration is None and args.requests is None:
        args.duration = 10.0
    headers = {}
    for h in args.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    target = Target(
        args.url,
        args.method.upper(),
        headers,
        args.body,
        args.customers,
        args.offset,
        lines_file=args.lines_file,
        line_header=args.line_header,
    )
    engine = args.engine
    if engine == "auto":
        closed = args.requests is None and args.rate is None and args.send_log is None
        engine = "wrk" if have_wrk() and closed else "python"
    result = run_wrk(args, target) if engine == "wrk" else run_python(args, target)
    print(json.dumps(result))
    return 0


def run(
    target: Target,
    *,
    concurrency: int,
    duration_s: float | None = None,
    requests: int | None = None,
    rate: float | None = None,
    engine: str = "auto",
    timeout_s: float = 10.0,
    send_log: str | None = None,
) -> dict[str, Any]:
    """Run the load generator in a child process and return its JSON result."""
    cmd = [sys.executable, "-m", "bench.load", target.url, "--method", target.method, "--engine", engine]
    for k, v in target.headers.items():
        cmd += ["--header", f"{k}: {v}"]
    cmd += ["--body", target.body, "--customers", str(target.customers), "--offset", str(target.offset)]
    cmd += ["--concurrency", str(concurrency), "--timeout", str(timeout_s)]
    if duration_s is not None:
        cmd += ["--duration", str(duration_s)]
    if requests is not None:
        cmd += ["--requests", str(requests)]
    if rate is not None:
        cmd += ["--rate", str(rate)]
    if target.lines_file:
        cmd += ["--lines-file", target.lines_file, "--line-header", target.line_header]
    if send_log:
        cmd += ["--send-log", send_log]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    # CPU used by the load generator (and wrk under it), start-up included.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["client_cpu_s"] = round(cpu, 3)
    return result


if __name__ == "__main__":
    sys.exit(main())
