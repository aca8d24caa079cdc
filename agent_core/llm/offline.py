"""The embedded responder used when no model is configured: deterministic, no network.

It answers from retrieved knowledge (best passage), asks for a human or a call through
the same tools a model would use, and otherwise asks a clarifying question.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncGenerator

from agent_core.intents import agrees_to_call, asks_for_human, phone_number_in, says_goodbye
from agent_core.llm.base import ChunkStream, LLMChunk, LLMRequest, LLMResponse, ToolCall

OFFLINE_MODEL = "offline"


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _trim(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


class OfflineProvider:
    name = "offline"

    def complete(self, request: LLMRequest) -> LLMResponse:
        if request.purpose == "summary":
            return LLMResponse(text=self._summary(request), model=OFFLINE_MODEL)
        msgs = request.messages
        last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=-1)
        customer = " ".join(_text(m.get("content")) for m in msgs[last_user:] if m.get("role") == "user")
        since = msgs[last_user + 1 :] if last_user >= 0 else []
        used_tools = [m.get("name") or "" for m in since if m.get("role") == "tool"]
        results = {m.get("name") or "": _text(m.get("content")) for m in since if m.get("role") == "tool"}
        offered = {t.name for t in request.tools} if request.tool_choice == "auto" else set()

        if "request_human" in used_tools:
            return self._say("I've asked a member of our team to join — they'll reply here shortly.")
        if "request_call" in used_tools:
            refused = results.get("request_call", "")
            if refused.startswith("error:"):
                why = refused.rsplit(": ", 1)[-1]
                return self._say(f"Sorry, I couldn't arrange the call: {why}")
            return self._say("Great — we'll call you shortly.")
        if "end_call" in used_tools:
            return self._say("Thanks for talking with me. Goodbye!")
        if "end_call" in offered and says_goodbye(customer):
            return self._call("end_call", {"reason": "the caller said goodbye"})
        if "request_human" in offered and asks_for_human(customer):
            return self._call("request_human", {"reason": "customer asked for a person"})
        if "request_call" in offered and agrees_to_call(customer):
            arguments = {"reason": "customer agreed to a phone call"}
            number = phone_number_in(customer)
            if number:
                arguments["phone_number"] = number
            return self._call("request_call", arguments)
        if request.passages:
            best = max(request.passages, key=lambda p: p.score)
            limit = 300 if request.purpose == "voice" else 700
            return self._say(f"Here's what I found in {best.document_name}: {_trim(best.text, limit)}")
        if not customer.strip():
            return self._say("Hi! How can I help you today?")
        return self._say(
            f'Thanks for your message. So I can help with "{_trim(customer, 120)}", '
            "could you tell me a bit more about what you need?"
        )

    @staticmethod
    def _say(text: str) -> LLMResponse:
        return LLMResponse(text=text, model=OFFLINE_MODEL)

    @staticmethod
    def _call(name: str, arguments: dict[str, str]) -> LLMResponse:
        call = ToolCall(id="call_" + uuid.uuid4().hex[:24], name=name, arguments=json.dumps(arguments))
        return LLMResponse(text=None, tool_calls=[call], model=OFFLINE_MODEL)

    @staticmethod
    def _summary(request: LLMRequest) -> str:
        lines = [_text(m.get("content")) for m in request.messages if m.get("role") == "user"]
        transcript = lines[-1] if lines else ""
        said = [ln.split(": ", 1)[1] for ln in transcript.splitlines() if ln.startswith("customer: ")]
        if not said:
            return "No customer messages."
        first, last = said[0], said[-1]
        if first == last:
            return f"The customer wrote: {_trim(first, 200)}"
        return f"The customer first wrote: {_trim(first, 160)} Latest: {_trim(last, 160)}"


# Split before each word that follows whitespace: the pieces join back to the exact text.
_WORD_STARTS = re.compile(r"(?<=\s)(?=\S)")


class AsyncOfflineProvider(ChunkStream):
    """`OfflineProvider`'s answers through the async seam, streamed a word at a time.

    Each piece waits `delay_s` (to stand in for a model's pace in tests and benchmarks);
    with 0 it still yields to the event loop, so a long answer never holds the loop.
    """

    name = "offline"

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self._answers = OfflineProvider()

    async def _chunks(self, request: LLMRequest) -> AsyncGenerator[LLMChunk, None]:
        response = self._answers.complete(request)
        for piece in _WORD_STARTS.split(response.text or ""):
            await asyncio.sleep(self.delay_s)
            if piece:
                yield LLMChunk(text=piece)
        yield LLMChunk(response=response)
