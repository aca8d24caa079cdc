"""A real gateway for browser tests: `chatgw web` and `chatgw worker` as the Procfile runs them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests import procs
from tests.fakes import free_port


class Gateway:
    """Web + worker processes on `redis_url`, without Twilio or LLM keys (dev outbox, offline LLM)."""

    def __init__(self, data_dir: Path, redis_url: str, **environ: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.environ = procs.env(
            REDIS_URL=redis_url,
            PORT=str(self.port),
            PUBLIC_BASE_URL=self.url,
            CHATGW_DATA_DIR=str(data_dir / "var"),
            # Fixed, so console cookies outlive a restart of the web process (restart_web).
            SECRET_KEY="browser-tests-secret-key-0123456789",
            **environ,
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Gateway:
        cmds = procs.procfile()
        web = procs.start(cmds["web"], self.environ, self.data_dir)
        self.procs.append(web)
        self.procs.append(procs.start(cmds["worker"], self.environ, self.data_dir))
        procs.wait_http(f"{self.url}/healthz", proc=web)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            try:
                procs.stop(proc)
            except AssertionError:
                pass

    def restart_web(self, while_down: Callable[[], object], on_down: Callable[[], object]) -> None:
        """Stop the web process, wait for `on_down`, do `while_down`, start it again on the same port."""
        procs.stop(self.procs[0])
        on_down()
        while_down()
        web = procs.start(procs.procfile()["web"], self.environ, self.data_dir)
        self.procs[0] = web
        procs.wait_http(f"{self.url}/healthz", proc=web)

    def token(self, role: str, name: str = "") -> str:
        """A new API token with `role` (admin, operator or api), made by the real CLI."""
        out = procs.chatgw(
            "tokens", "create", "--name", name or role, "--role", role, environ=self.environ, cwd=self.data_dir
        )
        return out.strip().splitlines()[-1]
