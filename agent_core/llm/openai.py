"""Any OpenAI-compatible Chat Completions endpoint, through the official SDK: `OpenAIProvider`
(sync, one JSON answer) and `AsyncOpenAIProvider` (async, streamed as server-sent events)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai as openai_sdk
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from agent_core.llm.base import (
    ChunkStream,
    LLMChunk,
    LLMError,
    LLMRequest,
    LLMResponse,
    LLMTimeout,
    LLMUnavailable,
    ToolCall,
)

# The SDK numbers each attempt of a request in this header: 0 for the first, then 1, 2, …
RETRY_COUNT_HEADER = "x-stainless-retry-count"


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        http_client: httpx.Client,
        base_url: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        """`on_retry` is called for each retry the SDK makes (it retries inside `complete`,
        out of our sight, so a request hook on `http_client` spots the retried attempts)."""
        if on_retry is not None:
            http_client.event_hooks = {
                **http_client.event_hooks,
                "request": [*http_client.event_hooks.get("request", []), _retry_hook(on_retry)],
            }
        self.client = openai_sdk.OpenAI(
            api_key=api_key,
            base_url=base_url,
            http_client=http_client,
            timeout=timeout_s,
            max_retries=max_retries,
        )

    def complete(self, request: LLMRequest) -> LLMResponse:
        try:
            completion = self.client.chat.completions.create(**_create_args(request))
        except openai_sdk.OpenAIError as exc:
            raise _llm_error(exc) from exc
        if not completion.choices:
            raise LLMError("the model returned no choices")
        message = completion.choices[0].message
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
            for c in (message.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        usage = completion.usage.model_dump() if completion.usage else {}
        return LLMResponse(
            text=message.content,
            tool_calls=calls,
            model=completion.model,
            usage={k: v for k, v in usage.items() if isinstance(v, int)},
        )


class AsyncOpenAIProvider(ChunkStream):
    """The same endpoint with `stream=True`: text deltas as the server sends them, then the
    response with the tool calls assembled from their fragments and the usage."""

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        http_client: httpx.AsyncClient,
        base_url: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        on_retry: Callable[[], None] | None = None,
        include_usage: bool = True,
    ) -> None:
        """`timeout_s` bounds each wait (connecting, and each gap between streamed bytes), not
        the whole answer: a budget for that is the caller's (`asyncio.timeout`). The SDK
        retries only before the first byte of a stream; `on_retry` as for `OpenAIProvider`.
        `include_usage=False` for servers that refuse `stream_options` (older Azure versions)."""
        self.include_usage = include_usage
        if on_retry is not None:
            http_client.event_hooks = {
                **http_client.event_hooks,
                "request": [*http_client.event_hooks.get("request", []), _async_retry_hook(on_retry)],
            }
        self.client = openai_sdk.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            http_client=http_client,
            timeout=timeout_s,
            max_retries=max_retries,
        )

    async def _chunks(self, request: LLMRequest) -> AsyncGenerator[LLMChunk, None]:
        kwargs = _create_args(request)
        if self.include_usage:
            kwargs["stream_options"] = {"include_usage": True}
        try:
            # `**kwargs` leaves the SDK's overloads undecided (Any): name the stream's type.
            events: openai_sdk.AsyncStream[ChatCompletionChunk] = await self.client.chat.completions.create(
                **kwargs, stream=True
            )
        except openai_sdk.OpenAIError as exc:
            raise _llm_error(exc) from exc
        reply = _StreamedReply()
        # Closing `events` closes the HTTP response: on the last event, and when the consumer
        # leaves early (aclose() lands on a `yield` below) or is cancelled mid-read.
        async with events:
            try:
                async for event in events:
                    text = reply.add(event)
                    if text:
                        yield LLMChunk(text=text)
            # Past the response headers the SDK no longer wraps httpx's errors: a stalled or
            # dropped stream surfaces as the transport's own exception.
            except openai_sdk.OpenAIError as exc:
                raise _llm_error(exc) from exc
            except httpx.TimeoutException as exc:
                raise LLMTimeout(f"the stream stalled: {exc!r}") from exc
            except httpx.TransportError as exc:
                raise LLMUnavailable(f"the stream broke off: {exc!r}") from exc
            except json.JSONDecodeError as exc:
                raise LLMError(f"a streamed event is not JSON: {exc}") from exc
        yield LLMChunk(response=reply.response())


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def add(self, part: ChoiceDeltaToolCall) -> None:
        # OpenAI sends the id and name once, in a call's first fragment, then the arguments in
        # pieces; a name in several pieces is joined, as the SDK's own accumulator does.
        if part.id and not self.id:
            self.id = part.id
        if part.function is not None:
            self.name += part.function.name or ""
            self.arguments.append(part.function.arguments or "")


@dataclass
class _StreamedReply:
    """A Chat Completions answer put together from its `chat.completion.chunk` events."""

    model: str = ""
    text: list[str] = field(default_factory=list)
    # A tool-call answer streams `"content": null`, a text answer `""` first: keep the difference.
    has_text: bool = False
    calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    finished: bool = False

    def add(self, event: ChatCompletionChunk) -> str:
        """Take one event in; return its text delta."""
        self.model = event.model or self.model
        if event.usage is not None:
            self.usage = {k: v for k, v in event.usage.model_dump().items() if isinstance(v, int)}
        delta_text = ""
        for choice in event.choices:
            if choice.index != 0:
                continue
            if choice.delta.content is not None:
                self.has_text = True
                self.text.append(choice.delta.content)
                delta_text += choice.delta.content
            for part in choice.delta.tool_calls or []:
                self.calls.setdefault(part.index, _ToolCallParts()).add(part)
            self.finished = self.finished or choice.finish_reason is not None
        return delta_text

    def response(self) -> LLMResponse:
        if not self.finished:
            # Without a finish_reason the answer may be cut short: never pass it off as whole.
            raise LLMUnavailable("the stream ended before the model finished")
        calls = [
            ToolCall(id=parts.id or f"call_{index}", name=parts.name, arguments="".join(parts.arguments) or "{}")
            for index, parts in sorted(self.calls.items())
            if parts.name
        ]
        text = "".join(self.text) if self.has_text else None
        return LLMResponse(text=text, tool_calls=calls, model=self.model, usage=self.usage)


def _create_args(request: LLMRequest) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if request.tools:
        kwargs["tools"] = [t.openai() for t in request.tools]
        kwargs["tool_choice"] = request.tool_choice
    return kwargs


def _llm_error(exc: openai_sdk.OpenAIError) -> LLMError:
    if isinstance(exc, openai_sdk.APITimeoutError):
        return LLMTimeout(str(exc))
    if isinstance(exc, openai_sdk.APIConnectionError | openai_sdk.RateLimitError | openai_sdk.InternalServerError):
        return LLMUnavailable(str(exc))
    if isinstance(exc, openai_sdk.APIStatusError):
        return LLMError(f"{exc.status_code}: {exc.message}")
    return LLMError(str(exc))


def _retry_hook(on_retry: Callable[[], None]) -> Callable[[httpx.Request], None]:
    def hook(request: httpx.Request) -> None:
        # Only the SDK's requests carry the header; others on the same client pass untouched.
        if request.headers.get(RETRY_COUNT_HEADER, "0") != "0":
            on_retry()

    return hook


def _async_retry_hook(on_retry: Callable[[], None]) -> Callable[[httpx.Request], Awaitable[None]]:
    sync_hook = _retry_hook(on_retry)

    async def hook(request: httpx.Request) -> None:
        # httpx.AsyncClient awaits its event hooks.
        sync_hook(request)

    return hook
