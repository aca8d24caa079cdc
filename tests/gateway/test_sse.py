"""Server-Sent Events on a live server (uvicorn): new messages and session changes stream out."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from tests.helpers import serving


@pytest.fixture
def live(settings: Any, redis_url: str, ctx: Any) -> Iterator[str]:
    with serving(create_app(settings, redis_url)) as url:
        yield url


def read_events(
    url: str,
    headers: dict[str, str],
    want: int,
    out: list[tuple[str, dict[str, Any]]],
    connected: threading.Event | None = None,
) -> None:
    """Collect `want` events into `out`; `connected` is set once the stream is open (it opens with
    its `retry:` line, sent only after the server subscribed to the session's notices)."""
    with httpx.stream("GET", url, headers=headers, timeout=20) as r:
        event = None
        for line in r.iter_lines():
            if line.startswith("retry: ") and connected is not None:
                connected.set()
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                out.append((event, json.loads(line[6:])))
                if len(out) >= want:
                    return


def test_stream_carries_messages_and_session_changes(
    live: str, admin: dict[str, str], operator: dict[str, str], api: dict[str, str], workers: Any
) -> None:
    agent = httpx.post(live + "/v1/agents", json={"name": "A"}, headers=admin).json()["data"]
    sid = httpx.post(
        live + "/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "c"}, headers=api
    ).json()["data"]["id"]
    got: list[tuple[str, dict[str, Any]]] = []
    connected = threading.Event()
    reader = threading.Thread(
        target=read_events, args=(f"{live}/v1/chat/session/{sid}/events", api, 3, got, connected), daemon=True
    )
    reader.start()
    assert connected.wait(10), "the event stream did not open"
    httpx.post(
        live + "/v1/chat/inbound",
        json={"agent_uuid": agent["id"], "customer_id": "c", "content": "hello"},
        headers=api,
        timeout=20,
    )
    httpx.post(
        f"{live}/v1/chat/session/{sid}/support", json={"command": "whisper", "message": "psst"}, headers=operator
    )
    httpx.post(f"{live}/v1/chat/session/{sid}/support", json={"command": "takeover"}, headers=operator)
    reader.join(20)
    kinds = [(k, d.get("role") or d.get("mode")) for k, d in got]
    assert kinds[:3] == [("message", "customer"), ("message", "agent"), ("session", "support")]
    assert all("psst" not in json.dumps(d) for _, d in got)


def test_replay_after_seq_and_private_needs_operator(live: str, admin: dict[str, str], api: dict[str, str]) -> None:
    agent = httpx.post(live + "/v1/agents", json={"name": "A", "welcome_message": "Welcome!"}, headers=admin).json()[
        "data"
    ]
    sid = httpx.post(
        live + "/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "c"}, headers=api
    ).json()["data"]["id"]
    got: list[tuple[str, dict[str, Any]]] = []
    read_events(f"{live}/v1/chat/session/{sid}/events?after_seq=0", api, 1, got)
    assert got == [("message", got[0][1])] and got[0][1]["text"] == "Welcome!"
    r = httpx.get(f"{live}/v1/chat/session/{sid}/events?include_private=1", headers=api)
    assert r.status_code == 403
