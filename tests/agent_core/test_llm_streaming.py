"""The async, streaming LLM seam. OpenAI is mocked at the HTTP seam with respx answering a real
`text/event-stream` body (`data: {chat.completion.chunk}` events, then `data: [DONE]`), sent
part by part by a byte stream the test controls; the offline responder needs no network."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpcore
import httpx
import pytest
import respx

from agent_core.llm import (
    AsyncOfflineProvider,
    LLMChunk,
    LLMError,
    LLMRequest,
    LLMTimeout,
    LLMUnavailable,
    OfflineProvider,
    Passage,
    ToolCall,
    ToolSpec,
)
from agent_core.llm.openai import AsyncOpenAIProvider
from tests.conftest import LLM_BASE

REQUEST = LLMRequest(model="gpt-test", messages=[{"role": "user", "content": "Where is my order?"}])
USAGE = {"prompt_tokens": 42, "completion_tokens": 3, "total_tokens": 45}
HUMAN = ToolSpec(
    name="request_human",
    description="Ask a person to join.",
    parameters={"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
)
LOOKUP = ToolSpec(
    name="lookup_order",
    description="Find an order.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One `chat.completion.chunk`, as OpenAI streams it with `include_usage` (usage null)."""
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-test-2024-08-06",
        "system_fingerprint": "fp_test",
        "service_tier": "default",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def usage_event() -> dict[str, Any]:
    """The last chunk `include_usage` adds: no choices, the usage."""
    return {
        **event({}),
        "choices": [],
        "usage": {
            **USAGE,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    }


def text_events(*pieces: str) -> list[dict[str, Any]]:
    return [
        event({"role": "assistant", "content": "", "refusal": None}),
        *(event({"content": piece}) for piece in pieces),
        event({}, finish="stop"),
        usage_event(),
    ]


def sse(events: list[dict[str, Any]], *, done: bool = True) -> list[bytes]:
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + ([b"data: [DONE]\n\n"] if done else [])


class ServerBody(httpx.AsyncByteStream):
    """A response body the server sends part by part: before part `hold_at` it waits for
    `release`; after the last part it raises `fail` (as the transport would), if given."""

    def __init__(self, parts: list[bytes], *, hold_at: int | None = None, fail: Exception | None = None) -> None:
        self.parts = parts
        self.hold_at = hold_at
        self.fail = fail
        self.release = asyncio.Event()
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index, part in enumerate(self.parts):
            if index == self.hold_at:
                await self.release.wait()
            self.sent += 1
            yield part
        if self.fail is not None:
            raise self.fail

    async def aclose(self) -> None:
        self.closed = True


def streamed(body: ServerBody) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"}, stream=body)


def provider(http: httpx.AsyncClient, **kwargs: Any) -> AsyncOpenAIProvider:
    return AsyncOpenAIProvider(api_key="sk-test", http_client=http, base_url=LLM_BASE, max_retries=0, **kwargs)


async def chunks_of(llm: AsyncOpenAIProvider | AsyncOfflineProvider, request: LLMRequest) -> list[LLMChunk]:
    async with llm.stream(request) as chunks:
        return [chunk async for chunk in chunks]


def test_text_deltas_arrive_in_order_and_the_last_chunk_is_the_whole_response() -> None:
    wire = b"".join(sse(text_events("Your order ", "left the ", "warehouse", " today.")))
    # Network reads do not follow event boundaries: cut the body every 7 bytes.
    bodies = [ServerBody([wire[i : i + 7] for i in range(0, len(wire), 7)]) for _ in range(2)]

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                route = router.post("/chat/completions").mock(side_effect=[streamed(b) for b in bodies])
                llm = provider(http)
                chunks = await chunks_of(llm, REQUEST)
                completed = await llm.complete(REQUEST)

        assert [c.text for c in chunks[:-1]] == ["Your order ", "left the ", "warehouse", " today."]
        assert all(c.response is None for c in chunks[:-1])
        final = chunks[-1]
        assert final.text == ""
        assert final.response is not None
        assert final.response.text == "Your order left the warehouse today."
        assert final.response.tool_calls == []
        assert final.response.model == "gpt-test-2024-08-06"
        assert final.response.usage == USAGE
        assert completed == final.response
        sent = json.loads(route.calls[0].request.content)
        assert sent["stream"] is True
        assert sent["stream_options"] == {"include_usage": True}
        assert sent["messages"] == REQUEST.messages
        assert all(b.closed for b in bodies)

    run(scenario)


def test_tool_calls_split_across_events_are_assembled_by_index() -> None:
    # As OpenAI streams parallel calls: id, type and name once, then argument fragments.
    events = [
        event(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                        "type": "function",
                        "function": {"name": "lookup_order", "arguments": ""},
                    }
                ],
                "refusal": None,
            }
        ),
        event({"tool_calls": [{"index": 0, "function": {"arguments": '{"ord'}}]}),
        event({"tool_calls": [{"index": 0, "function": {"arguments": 'er_id": "A-'}}]}),
        event({"tool_calls": [{"index": 0, "function": {"arguments": '1042"}'}}]}),
        event(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_Zq5b1Vd0YpWSfcGVvNl1OMKq",
                        "type": "function",
                        "function": {"name": "request_human", "arguments": ""},
                    }
                ]
            }
        ),
        event({"tool_calls": [{"index": 1, "function": {"arguments": '{"reason": "refund '}}]}),
        event({"tool_calls": [{"index": 1, "function": {"arguments": 'over limit"}'}}]}),
        event({}, finish="tool_calls"),
        usage_event(),
    ]
    request = LLMRequest(model="gpt-test", messages=REQUEST.messages, tools=[LOOKUP, HUMAN])

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                route = router.post("/chat/completions").mock(return_value=streamed(ServerBody(sse(events))))
                chunks = await chunks_of(provider(http), request)

        assert len(chunks) == 1
        response = chunks[0].response
        assert response is not None
        assert response.text is None
        assert response.tool_calls == [
            ToolCall(id="call_DdmO9pD3xa9XTPNJ32zg2hcA", name="lookup_order", arguments='{"order_id": "A-1042"}'),
            ToolCall(
                id="call_Zq5b1Vd0YpWSfcGVvNl1OMKq", name="request_human", arguments='{"reason": "refund over limit"}'
            ),
        ]
        sent = json.loads(route.calls[0].request.content)
        assert [t["function"]["name"] for t in sent["tools"]] == ["lookup_order", "request_human"]
        assert sent["tool_choice"] == "auto"

    run(scenario)


@pytest.mark.parametrize(
    ("status", "kind", "error_type"),
    [
        (400, LLMError, "invalid_request_error"),
        (401, LLMError, "invalid_request_error"),
        (429, LLMUnavailable, "requests"),
        (503, LLMUnavailable, "server_error"),
    ],
)
def test_an_error_status_raises_the_matching_llm_error(status: int, kind: type[LLMError], error_type: str) -> None:
    body = {"error": {"message": "The model said no.", "type": error_type, "param": None, "code": None}}

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                router.post("/chat/completions").mock(return_value=httpx.Response(status, json=body))
                with pytest.raises(LLMError) as raised:
                    await chunks_of(provider(http), REQUEST)

        assert type(raised.value) is kind
        assert "The model said no." in str(raised.value)

    run(scenario)


def test_an_error_event_in_the_stream_raises_llm_error() -> None:
    parts = [*sse(text_events("Let me"))[:2], b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n']

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                body = ServerBody(parts)
                router.post("/chat/completions").mock(return_value=streamed(body))
                with pytest.raises(LLMError, match="overloaded"):
                    await chunks_of(provider(http), REQUEST)
        assert body.closed

    run(scenario)


def test_a_connect_timeout_raises_llm_timeout() -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                router.post("/chat/completions").mock(side_effect=httpx.ConnectTimeout("timed out"))
                with pytest.raises(LLMTimeout):
                    await chunks_of(provider(http), REQUEST)

    run(scenario)


def test_a_stream_that_stalls_raises_llm_timeout_after_the_text_so_far() -> None:
    # httpcore raises ReadTimeout when no byte came within the read timeout; httpx maps it.
    body = ServerBody(sse(text_events("Your order"))[:2], fail=httpcore.ReadTimeout("timed out"))

    async def scenario() -> None:
        seen: list[str] = []
        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                router.post("/chat/completions").mock(return_value=streamed(body))
                with pytest.raises(LLMTimeout):
                    async with provider(http).stream(REQUEST) as chunks:
                        async for chunk in chunks:
                            seen.append(chunk.text)
        assert seen == ["Your order"]
        assert body.closed

    run(scenario)


@pytest.mark.parametrize(
    "body",
    [
        # The connection drops mid-body: httpcore's incomplete chunked read.
        lambda: ServerBody(sse(text_events("Your order"))[:2], fail=httpcore.RemoteProtocolError("peer closed")),
        # The body ends cleanly but before any finish_reason: the answer may be cut short.
        lambda: ServerBody(sse(text_events("Your order"))[:2]),
    ],
    ids=["connection-dropped", "no-finish-reason"],
)
def test_a_stream_cut_short_raises_llm_unavailable(body: Callable[[], ServerBody]) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                router.post("/chat/completions").mock(return_value=streamed(body()))
                with pytest.raises(LLMUnavailable):
                    await chunks_of(provider(http), REQUEST)

    run(scenario)


def test_the_first_delta_arrives_while_the_server_still_holds_the_rest() -> None:
    parts = sse(text_events("Hello", " there"))
    body = ServerBody(parts, hold_at=2)  # the role event and "Hello" go out; the rest waits

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                router.post("/chat/completions").mock(return_value=streamed(body))
                async with provider(http).stream(REQUEST) as chunks:
                    # A guard against hanging, not a timing assertion: a provider that waits
                    # for the whole body never gets here, since nothing releases the server.
                    first = await asyncio.wait_for(anext(chunks), timeout=10)
                    assert first.text == "Hello"
                    assert body.sent == 2
                    assert not body.release.is_set()
                    body.release.set()
                    rest = [chunk async for chunk in chunks]
        assert [c.text for c in rest[:-1]] == [" there"]
        assert rest[-1].response is not None
        assert rest[-1].response.text == "Hello there"
        assert body.sent == len(parts)

    run(scenario)


def test_leaving_the_stream_early_closes_the_response() -> None:
    body = ServerBody(sse(text_events("Hello", " there")), hold_at=2)

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                router.post("/chat/completions").mock(return_value=streamed(body))
                async with provider(http).stream(REQUEST) as chunks:
                    first = await asyncio.wait_for(anext(chunks), timeout=10)  # a guard against hanging
                    assert first.text == "Hello"
                    assert not body.closed
                # The consumer stopped iterating: leaving the block is all it does.
                assert body.closed

    run(scenario)


def test_cancelling_the_consumer_mid_stream_closes_the_response() -> None:
    body = ServerBody(sse(text_events("Hello", " there")), hold_at=2)

    async def scenario() -> None:
        heard: list[str] = []
        first = asyncio.Event()

        async def speak(llm: AsyncOpenAIProvider) -> None:
            async with llm.stream(REQUEST) as chunks:
                async for chunk in chunks:
                    heard.append(chunk.text)
                    first.set()

        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                router.post("/chat/completions").mock(return_value=streamed(body))
                task = asyncio.create_task(speak(provider(http)))
                await asyncio.wait_for(first.wait(), timeout=10)
                assert not body.closed
                task.cancel()  # as a caller's `interrupt` does
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert body.closed
        assert heard == ["Hello"]

    run(scenario)


def test_retries_before_the_stream_starts_are_reported() -> None:
    retries: list[None] = []
    busy = httpx.Response(
        503, headers={"retry-after-ms": "1"}, json={"error": {"message": "busy", "type": "server_error"}}
    )

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                router.post("/chat/completions").mock(side_effect=[busy, streamed(ServerBody(sse(text_events("Hi"))))])
                llm = AsyncOpenAIProvider(
                    api_key="sk-test",
                    http_client=http,
                    base_url=LLM_BASE,
                    max_retries=1,
                    on_retry=lambda: retries.append(None),
                )
                response = await llm.complete(REQUEST)
        assert response.text == "Hi"
        assert len(retries) == 1

    run(scenario)


def test_servers_that_refuse_stream_options_are_not_sent_them() -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            with respx.mock(base_url=LLM_BASE) as router:
                events = text_events("Hi")[:-1]  # no usage event is streamed without the option
                route = router.post("/chat/completions").mock(return_value=streamed(ServerBody(sse(events))))
                response = await provider(http, include_usage=False).complete(REQUEST)
        sent = json.loads(route.calls[0].request.content)
        assert sent["stream"] is True
        assert "stream_options" not in sent
        assert response.text == "Hi"
        assert response.usage == {}

    run(scenario)


OFFLINE_REQUESTS = {
    "greeting": LLMRequest(model="offline", messages=[{"role": "user", "content": ""}]),
    "clarifying": REQUEST,
    "knowledge": LLMRequest(
        model="offline",
        messages=REQUEST.messages,
        passages=[
            Passage(
                document_id="doc_1",
                document_name="Shipping FAQ",
                text="Orders leave the warehouse within two working days and arrive in three to five.",
                score=0.8,
            )
        ],
    ),
    "summary": LLMRequest(
        model="offline",
        messages=[{"role": "user", "content": "customer: Where is my order?\nagent: Checking.\ncustomer: Thanks"}],
        purpose="summary",
    ),
}


@pytest.mark.parametrize("request_", OFFLINE_REQUESTS.values(), ids=OFFLINE_REQUESTS.keys())
def test_offline_streams_word_by_word_the_text_complete_returns(request_: LLMRequest) -> None:
    async def scenario() -> None:
        llm = AsyncOfflineProvider()
        chunks = await chunks_of(llm, request_)
        completed = await llm.complete(request_)

        pieces = [c.text for c in chunks[:-1]]
        final = chunks[-1].response
        assert final is not None
        assert final.text
        assert len(pieces) == len(final.text.split()) > 1
        assert all(len(piece.split()) == 1 for piece in pieces)
        assert "".join(pieces) == final.text == completed.text == OfflineProvider().complete(request_).text

    run(scenario)


def test_offline_tool_call_streams_no_text_and_the_same_call() -> None:
    request = LLMRequest(
        model="offline", messages=[{"role": "user", "content": "Can I talk to a human please?"}], tools=[HUMAN]
    )

    async def scenario() -> None:
        chunks = await chunks_of(AsyncOfflineProvider(), request)
        assert len(chunks) == 1
        response = chunks[0].response
        expected = OfflineProvider().complete(request)
        assert response is not None
        assert response.text is None
        assert [(c.name, c.arguments) for c in response.tool_calls] == [
            (c.name, c.arguments) for c in expected.tool_calls
        ]
        assert [c.name for c in response.tool_calls] == ["request_human"]

    run(scenario)


def test_offline_stream_lets_other_tasks_run_between_words() -> None:
    async def scenario() -> None:
        order: list[str] = []
        done = asyncio.Event()

        async def other_task() -> None:
            while not done.is_set():
                order.append("tick")
                await asyncio.sleep(0)

        ticker = asyncio.create_task(other_task())
        async with AsyncOfflineProvider().stream(REQUEST) as chunks:
            async for chunk in chunks:
                order.append("word" if chunk.text else "end")
        done.set()
        await ticker

        words = order.count("word")
        assert words > 5
        # Between any two words the other task ran: the stream never held the loop.
        assert "word,word" not in ",".join(order)

    run(scenario)
