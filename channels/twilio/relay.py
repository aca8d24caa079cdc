"""Twilio ConversationRelay's WebSocket messages as typed models (SPEC §8): what Twilio sends,
parsed into channel-neutral frames, and what we send, serialised from them.

The field names are Twilio's (reference: shared/reference/twilio-conversationrelay.md); past
`parse_frame` the code sees `RelaySetup`, `RelayPrompt`, `RelayInterrupt`, `RelayDigit`,
`RelayError` and builds answers with `text_frame` and `end_frame`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from channels.twilio.errors import InvalidTwilioRequest


@dataclass(frozen=True)
class RelaySetup:
    call_sid: str
    session_id: str
    custom: dict[str, str]


@dataclass(frozen=True)
class RelayPrompt:
    """The caller spoke: `final` is the whole utterance (partials come with it False)."""

    text: str
    final: bool
    language: str = ""


@dataclass(frozen=True)
class RelayInterrupt:
    """The caller spoke over us: `heard` is what had been spoken of our reply by then."""

    heard: str
    after_ms: int | None = None


@dataclass(frozen=True)
class RelayDigit:
    digit: str


@dataclass(frozen=True)
class RelayError:
    description: str


@dataclass(frozen=True)
class RelayOther:
    """A message type this version does not use (logged, ignored)."""

    type: str


RelayFrame = RelaySetup | RelayPrompt | RelayInterrupt | RelayDigit | RelayError | RelayOther


def parse_frame(raw: str | bytes) -> RelayFrame:
    """One message from Twilio; InvalidTwilioRequest names what is wrong with it."""
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidTwilioRequest("message", f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise InvalidTwilioRequest("type", "a ConversationRelay message is a JSON object with a type")
    kind = data["type"]
    if kind == "setup":
        params = data.get("customParameters") or {}
        return RelaySetup(
            call_sid=str(data.get("callSid") or ""),
            session_id=str(data.get("sessionId") or ""),
            custom={str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {},
        )
    if kind == "prompt":
        return RelayPrompt(
            text=str(data.get("voicePrompt") or "").replace("\x00", ""),
            final=data.get("last", True) is not False,
            language=str(data.get("lang") or ""),
        )
    if kind == "interrupt":
        after = data.get("durationUntilInterruptMs")
        return RelayInterrupt(
            heard=str(data.get("utteranceUntilInterrupt") or ""),
            after_ms=int(after) if isinstance(after, int | float) else None,
        )
    if kind == "dtmf":
        return RelayDigit(digit=str(data.get("digit") or ""))
    if kind == "error":
        return RelayError(description=str(data.get("description") or ""))
    return RelayOther(type=kind)


def text_frame(token: str, last: bool) -> str:
    """A piece of the reply to speak; `last` closes the talk cycle."""
    return json.dumps({"type": "text", "token": token, "last": last}, ensure_ascii=False)


def end_frame(handoff: dict[str, Any]) -> str:
    """End the relay session; Twilio then requests the `<Connect action>` URL."""
    return json.dumps({"type": "end", "handoffData": json.dumps(handoff, ensure_ascii=False)}, ensure_ascii=False)


# What Twilio sends, for `chatgw call` and tests that play Twilio's side of the socket.
def setup_message(*, call_sid: str, account_sid: str, from_: str, to: str) -> str:
    return json.dumps(
        {
            "type": "setup",
            "sessionId": "VX" + call_sid[2:],
            "accountSid": account_sid,
            "callSid": call_sid,
            "from": from_,
            "to": to,
            "direction": "outbound-api",
            "callType": "PSTN",
            "callStatus": "IN-PROGRESS",
            "customParameters": {},
        }
    )


def prompt_message(text: str, *, last: bool = True, lang: str = "en-US") -> str:
    return json.dumps({"type": "prompt", "voicePrompt": text, "lang": lang, "last": last})


def interrupt_message(heard: str, after_ms: int = 0) -> str:
    return json.dumps({"type": "interrupt", "utteranceUntilInterrupt": heard, "durationUntilInterruptMs": after_ms})


def dtmf_message(digit: str) -> str:
    return json.dumps({"type": "dtmf", "digit": digit})


@dataclass(frozen=True)
class Spoken:
    """What we sent, as a client reads it back: a `text` piece (`last` ends a reply), or the end."""

    kind: str
    token: str = ""
    last: bool = False
    handoff: str = ""


def read_sent(raw: str) -> Spoken:
    data = json.loads(raw)
    if data.get("type") == "text":
        return Spoken("text", token=str(data.get("token", "")), last=bool(data.get("last")))
    if data.get("type") == "end":
        return Spoken("end", handoff=str(data.get("handoffData", "")))
    return Spoken(str(data.get("type")))
