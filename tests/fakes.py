"""Fakes at the network seam: OpenAI Chat Completions with its real JSON (respx side effect
or a real HTTP server for tests that run other processes)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def completion(text: str | None = None, tool_calls: list[tuple[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """An OpenAI `chat.completion` object, as the API returns it."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    finish = "stop"
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for name, args in tool_calls
        ]
        finish = "tool_calls"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "gpt-test-2024-08-06",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
        "system_fingerprint": "fp_test",
    }


def last_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body["messages"]):
        if msg["role"] == "user":
            return str(msg["content"])
    return ""


def echo(body: dict[str, Any]) -> dict[str, Any]:
    return completion(f"echo: {last_user_text(body)}")


class FakeLLM:
    """Records every request body; answers with `handler` (default: echo the last user text)."""

    def __init__(self, handler: Handler = echo) -> None:
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.status = 200

    def _record(self, body: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _done(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def respond(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self._record(body)
        try:
            if self.status != 200:
                return httpx.Response(self.status, json={"error": {"message": "boom", "type": "server_error"}})
            return httpx.Response(200, json=self.handler(body))
        finally:
            self._done()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeOpenAIServer:
    """A real HTTP server speaking the Chat Completions API, for other processes to call."""

    def __init__(self, llm: FakeLLM) -> None:
        self.llm = llm
        self.port = free_port()

        async def chat(request: Request) -> JSONResponse:
            body = await request.json()
            self.llm._record(body)
            try:
                import anyio

                result = await anyio.to_thread.run_sync(self.llm.handler, body)
                return JSONResponse(result)
            finally:
                self.llm._done()

        app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
