"""Small helpers for tests: wait for a condition (tests may poll; the product must not)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import uvicorn

from tests.fakes import free_port

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


def send(client: Any, headers: dict[str, str], agent_id: str, text: str, customer: str = "c1", wait: float = 10) -> Any:
    """A customer message through POST /v1/chat/inbound; returns `data`."""
    r = client.post(
        f"/v1/chat/inbound?wait={wait}",
        json={"agent_uuid": agent_id, "customer_id": customer, "content": text},
        headers=headers,
    )
    assert r.status_code in (200, 202), r.text
    return r.json()["data"]


def thread(client: Any, headers: dict[str, str], sid: str, private: bool = True) -> list[dict[str, Any]]:
    """A session's messages (with whispers, drafts and tool calls when `private`)."""
    q = "?include_private=1&limit=200" if private else "?limit=200"
    return client.get(f"/v1/chat/session/{sid}/messages{q}", headers=headers).json()["data"]["items"]  # type: ignore[no-any-return]


@contextmanager
def serving(app: Any, port: int | None = None) -> Iterator[str]:
    """`app` under a real uvicorn server on a thread (for streams); yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    eventually(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        runner.join(5)
