"""Process plumbing shared by the benchmarks: a private Redis, the real `chatgw web` and
`chatgw worker` processes, the bare baseline, tokens and agents, CPU and RSS readings.

Every benchmark runs its own redis-server (`EmbeddedRedis`, appendonly off) in a temporary
directory and passes REDIS_URL to the processes it starts, so it never touches ./var or a
developer's data. Product processes run from that directory with OPENAI_API_KEY and the
Twilio credentials removed from their environment: the worker uses the offline responder
(deterministic, ~zero latency) and no `.env` is read. A benchmark can add variables back
with `Stack.extra_env` (the webhook benchmark sets PUBLIC_BASE_URL and Twilio credentials
that point at its local fake Twilio, `start_fake_twilio`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import redis

from gateway.cli.redis_server import EmbeddedRedis, free_port
from workers.worker import BACKGROUND_WORKERS

ROOT = Path(__file__).resolve().parent.parent
SCRUBBED = (
    "REDIS_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_BASE_URL",
    "CHATGW_DATA_DIR",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
RESULTS = ROOT / "bench" / "results"
RECORD_START = re.compile(r"\d{4}-\d\d-\d\dT|\{")
# Lines in a process log that deserve a look (tracebacks, errors, warnings).
SUSPICIOUS = re.compile(
    r"Traceback|\[\s*(?:warn|warning|error|critical|exception)\s*\]|\"level\":\s*\"(?:warning|error|critical)",
    re.IGNORECASE,
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log_file.close()

    def suspicious_lines(self, limit: int = 60) -> list[str]:
        """Warning/error records of this process's log, each with its traceback lines."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        out: list[str] = []
        inside = False
        for line in text.splitlines():
            if SUSPICIOUS.search(line):
                inside = True
            elif RECORD_START.match(line):
                inside = False
            if inside:
                out.append(line)
        return out[:limit]


@dataclass
class Stack:
    """A private Redis plus the processes a benchmark starts; `stop()` ends them all."""

    tmp: Path
    redis_server: EmbeddedRedis
    procs: list[Proc] = field(default_factory=list)
    stopped_logs: dict[str, list[str]] = field(default_factory=dict)
    # Added to every process's environment after scrubbing (e.g. the webhook benchmark's
    # PUBLIC_BASE_URL and Twilio credentials pointing at its local fake Twilio).
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return self.redis_server.url

    def client(self, decode: bool = True) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=decode)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        # One token plays every API client: its rate limit is checked on every request (the
        # cost is measured) but never binds.
        limits = {"API_RATE_PER_S": "1000000", "API_RATE_BURST": "1000000"}
        return (
            env
            | limits
            | self.extra_env
            | {"REDIS_URL": self.redis_url, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
        )

    def spawn(self, name: str, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> Proc:
        """`python args…`, logging to a file; `env` is added to (and overrides) `self.env()`."""
        log_path = self.tmp / f"{name}-{len(self.procs)}.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 (closed by Proc.stop)
        popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd or self.tmp,
            env=self.env() | (env or {}),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        proc = Proc(name, popen, log_path, log_file)
        self.procs.append(proc)
        return proc

    def chatgw(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            cwd=self.tmp,
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def admin_token(self) -> str:
        return self.chatgw("tokens", "create", "--name", "bench", "--role", "admin").strip().splitlines()[-1]

    def start_web(self, port: int | None = None) -> tuple[Proc, str]:
        port = port or free_port()
        proc = self.spawn("web", ["-m", "gateway.cli", "web", "--host", "127.0.0.1", "--port", str(port)])
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", proc)
        return proc, base

    def start_baseline(self) -> tuple[Proc, str]:
        port = free_port()
        proc = self.spawn("baseline", ["-m", "bench.baseline", "--port", str(port)], cwd=ROOT)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/json", proc, method="POST")
        return proc, base

    def start_fake_twilio(self, account_sid: str) -> tuple[Proc, str]:
        port = free_port()
        proc = self.spawn(
            "faketwilio", ["-m", "bench.faketwilio", "--port", str(port), "--account-sid", account_sid], cwd=ROOT
        )
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", proc)
        return proc, base

    def start_worker(self, concurrency: int | None, *, wait_ready: bool = True) -> Proc:
        """`chatgw worker`, with `--concurrency` unless None (its default)."""
        extra = [] if concurrency is None else ["--concurrency", str(concurrency)]
        proc = self.spawn("worker", ["-m", "gateway.cli", "worker", *extra])
        if wait_ready:
            wait_workers(self.client(), proc)
        return proc

    def stop_proc(self, proc: Proc) -> None:
        proc.stop()
        lines = proc.suspicious_lines()
        if lines:
            self.stopped_logs[f"{proc.name}-{proc.pid}"] = lines

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if not proc.log_file.closed:
                self.stop_proc(proc)
        self.redis_server.stop()

    def log_findings(self) -> dict[str, list[str]]:
        """Suspicious log records of every process started (running ones read as they are).

        When there are any, all process logs are copied to bench/results/logs/ for a look.
        """
        out = dict(self.stopped_logs)
        for proc in self.procs:
            if not proc.log_file.closed:
                lines = proc.suspicious_lines()
                if lines:
                    out[f"{proc.name}-{proc.pid}"] = lines
        if out:
            dest = RESULTS / "logs" / self.tmp.name
            dest.mkdir(parents=True, exist_ok=True)
            for proc in self.procs:
                if proc.log_path.exists():
                    shutil.copy(proc.log_path, dest / proc.log_path.name)
            out["saved_logs"] = [str(dest.relative_to(ROOT))]
        return out


@contextmanager
def stack(keep: bool = False) -> Iterator[Stack]:
    tmp = Path(tempfile.mkdtemp(prefix="chatgw-bench-"))
    server = EmbeddedRedis(data_dir=tmp / "redis", appendonly=False).start()
    st = Stack(tmp=tmp, redis_server=server)
    try:
        yield st
    finally:
        st.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def wait_http(url: str, proc: Proc, method: str = "GET", timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; see {proc.log_path}")
        try:
            httpx.request(method, url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout_s:.0f}s")


def wait_workers(client: redis.Redis, proc: Proc, count: int = BACKGROUND_WORKERS, timeout_s: float = 30.0) -> None:
    """Until `count` RQ workers of this process are registered (they are then idle or busy;
    its TurnPool starts with them)."""
    deadline = time.monotonic() + timeout_s
    marker = f".{proc.pid}."
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"worker exited with {proc.popen.returncode}; see {proc.log_path}")
        names = [str(k) for k in client.smembers("rq:workers")]  # type: ignore[union-attr]
        if sum(marker in n for n in names) >= count:
            return
        time.sleep(0.02)
    raise RuntimeError(f"worker did not register {count} RQ workers within {timeout_s:.0f}s")


def create_agent(base: str, token: str, name: str = "Bench", **fields: Any) -> str:
    body = {"name": name, **fields}
    r = httpx.post(f"{base}/v1/agents", json=body, headers={"API-Token": token}, timeout=10)
    r.raise_for_status()
    return str(r.json()["data"]["id"])


def redis_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])  # type: ignore[index]


def redis_pid(st: Stack) -> int:
    assert st.redis_server.process is not None
    return st.redis_server.process.pid


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before[name], 3) for name in before}


def round_dict(d: dict[str, Any], digits: int = 3) -> dict[str, Any]:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in d.items()}
