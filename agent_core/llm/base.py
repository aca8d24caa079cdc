"""The LLM seams: `complete(LLMRequest) -> LLMResponse` (sync), and its async, streaming
twin `stream(LLMRequest)` (text as the model produces it, then the whole response)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]

    def openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Passage:
    document_id: str
    document_name: str
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class LLMRequest:
    model: str
    messages: list[dict[str, Any]]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: Literal["auto", "none"] = "auto"
    temperature: float = 0.3
    max_tokens: int = 512
    # What retrieval found, for providers that answer without a model (offline).
    passages: list[Passage] = field(default_factory=list)
    purpose: Literal["chat", "voice", "summary"] = "chat"


@dataclass(frozen=True, slots=True)
class LLMResponse:
    text: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    model: str = ""
    usage: dict[str, int] = field(default_factory=dict)


class LLMError(Exception):
    """The model call failed for good (after the provider's own retries)."""


class LLMTimeout(LLMError):
    pass


class LLMUnavailable(LLMError):
    """Rate limited, 5xx or unreachable."""


class LLMProvider(Protocol):
    name: str

    def complete(self, request: LLMRequest) -> LLMResponse: ...


@dataclass(frozen=True, slots=True)
class LLMChunk:
    """One piece of a streamed answer: a text delta, or — last, with no text — the whole
    `response` (the deltas joined, tool calls assembled, usage)."""

    text: str = ""
    response: LLMResponse | None = None


class AsyncLLMProvider(Protocol):
    """The async, streaming seam. `stream` is a context manager so that leaving it — done,
    `break`, an error or cancellation — closes the HTTP response at once, not when the
    garbage collector finds the generator; every failure is an `LLMError`, raised while
    iterating."""

    name: str

    def stream(self, request: LLMRequest) -> AbstractAsyncContextManager[AsyncIterator[LLMChunk]]: ...

    async def complete(self, request: LLMRequest) -> LLMResponse: ...


class ChunkStream:
    """`stream` and `complete` of an AsyncLLMProvider, for one that implements `_chunks`."""

    def _chunks(self, request: LLMRequest) -> AsyncGenerator[LLMChunk, None]:
        raise NotImplementedError

    def stream(self, request: LLMRequest) -> AbstractAsyncContextManager[AsyncIterator[LLMChunk]]:
        return aclosing(self._chunks(request))

    async def complete(self, request: LLMRequest) -> LLMResponse:
        async with self.stream(request) as chunks:
            return await collect(chunks)


async def collect(chunks: AsyncIterator[LLMChunk]) -> LLMResponse:
    """The response a stream ends with (its text deltas are already in it)."""
    async for chunk in chunks:
        if chunk.response is not None:
            return chunk.response
    raise LLMError("the stream ended without a response")
