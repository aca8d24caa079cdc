"""Twilio Voice: the call webhooks' forms (in and, for `chatgw call` and tests, out) and the
TwiML that answers them, built with the SDK's `VoiceResponse` (SPEC §8).

Nothing past this module sees a Twilio voice field name: webhooks get a `CallerTurn` or a
`CallStatusUpdate`, and answer with the builders below.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from twilio.twiml.voice_response import VoiceResponse

from channels.models import CallerTurn, CallStatus, CallStatusUpdate
from channels.twilio.errors import InvalidTwilioRequest
from channels.twilio.forms import API_VERSION

# Twilio ends a <Gather> after this much silence once the caller stopped speaking ("auto"
# is its own end-of-speech detection), and waits `GATHER_TIMEOUT_S` for speech to start.
SPEECH_TIMEOUT = "auto"
GATHER_TIMEOUT_S = 6
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
_STATUS_VALUES = {s.value: s for s in CallStatus}
# Twilio's callbacks say "initiated" for a call it has queued.
_STATUS_ALIASES = {"initiated": CallStatus.queued, "answered": CallStatus.in_progress}


@dataclass(frozen=True)
class Speech:
    """How the voice agent speaks: Twilio `<Say>` voice (e.g. Polly.Joanna) and language."""

    voice: str
    language: str


def _say(node: object, text: str, speech: Speech) -> None:
    node.say(text, voice=speech.voice, language=speech.language)  # type: ignore[attr-defined]


def _gather(response: VoiceResponse, action: str, speech: Speech, text: str) -> None:
    gather = response.gather(
        input="speech",
        action=action,
        method="POST",
        speech_timeout=SPEECH_TIMEOUT,
        timeout=GATHER_TIMEOUT_S,
        language=speech.language,
        action_on_empty_result=True,
    )
    if text:
        _say(gather, text, speech)


def say_and_listen(text: str, *, action: str, speech: Speech) -> str:
    """Speak `text`, then listen; the answer (or silence) is POSTed to `action`."""
    response = VoiceResponse()
    _gather(response, action, speech, text)
    # Reached only if Twilio skipped the Gather's action (it posts it even when empty with
    # actionOnEmptyResult); counts as silence there.
    response.redirect(action, method="POST")
    return str(response)


def say_and_redirect(text: str, *, url: str, speech: Speech) -> str:
    """A short filler while the answer is prepared, then fetch it from `url`."""
    response = VoiceResponse()
    if text:
        _say(response, text, speech)
    response.redirect(url, method="POST")
    return str(response)


def say_and_hang_up(text: str, speech: Speech | None = None) -> str:
    response = VoiceResponse()
    if text:
        _say(response, text, speech or Speech("Polly.Joanna", "en-US"))
    response.hangup()
    return str(response)


def connect_relay(*, socket_url: str, action: str, greeting: str, speech: Speech) -> str:
    """Hand the call to ConversationRelay over `socket_url` (wss://…); `action` is requested
    when the relay session ends."""
    response = VoiceResponse()
    connect = response.connect(action=action, method="POST")
    connect.conversation_relay(
        url=socket_url,
        welcome_greeting=greeting,
        language=speech.language,
        interruptible="any",
        dtmf_detection=True,
    )
    return str(response)


def parse_caller_turn(params: Mapping[str, str]) -> CallerTurn:
    """A voice webhook (answer, Gather action, Redirect): the call and what the caller said."""
    sid = params.get("CallSid", "")
    if not sid.startswith("CA"):
        raise InvalidTwilioRequest("CallSid", "missing or not a call SID")
    confidence = params.get("Confidence")
    try:
        conf = float(confidence) if confidence else None
    except ValueError:
        conf = None
    return CallerTurn(
        call_sid=sid,
        speech=(params.get("SpeechResult") or "").replace("\x00", "").strip(),
        digits="".join(c for c in params.get("Digits", "") if c in "0123456789*#"),
        confidence=conf,
    )


def parse_call_status(params: Mapping[str, str]) -> CallStatusUpdate:
    """A call status callback (`StatusCallback` of calls.create)."""
    sid = params.get("CallSid", "")
    if not sid.startswith("CA"):
        raise InvalidTwilioRequest("CallSid", "missing or not a call SID")
    raw = params.get("CallStatus", "")
    status = _STATUS_VALUES.get(raw) or _STATUS_ALIASES.get(raw)
    if status is None:
        raise InvalidTwilioRequest("CallStatus", f"unknown call status {raw!r}")

    def integer(name: str) -> int | None:
        value = params.get(name, "")
        return int(value) if value.isdigit() else None

    return CallStatusUpdate(
        call_sid=sid, status=status, duration_s=integer("CallDuration"), sequence=integer("SequenceNumber")
    )


def voice_form(
    *, call_sid: str, account_sid: str, from_: str, to: str, status: str = "in-progress", speech: str | None = None
) -> dict[str, str]:
    """A voice webhook form as Twilio posts it for an outbound call (`chatgw call`, tests)."""
    form = {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "CallSid": call_sid,
        "CallStatus": status,
        "Called": to,
        "Caller": from_,
        "Direction": "outbound-api",
        "From": from_,
        "To": to,
    }
    if speech is not None:
        form.update(SpeechResult=speech, Confidence="0.9")
    return form


def call_status_form(
    *, call_sid: str, account_sid: str, from_: str, to: str, status: str, duration_s: int | None, sequence: int
) -> dict[str, str]:
    """A call status callback as Twilio posts it."""
    form = {
        **voice_form(call_sid=call_sid, account_sid=account_sid, from_=from_, to=to, status=status),
        "SequenceNumber": str(sequence),
        "CallbackSource": "call-progress-events",
        "Timestamp": "Mon, 01 Dec 2026 00:00:00 +0000",
    }
    if duration_s is not None:
        form["CallDuration"] = str(duration_s)
    return form


@dataclass(frozen=True)
class Step:
    """One thing a TwiML answer asks for, as `chatgw call` plays it: `say` text; `listen`
    (a Gather posting to `url`); `redirect` to `url`; `hangup`; `relay` (a ConversationRelay
    socket at `url`, spoken `text` first)."""

    kind: str
    text: str = ""
    url: str = ""


def read_twiml(xml: str) -> list[Step]:
    """The steps of a TwiML answer, in order (what a caller would hear and do)."""
    root = ET.fromstring(xml)
    steps: list[Step] = []
    for node in root:
        if node.tag == "Say":
            steps.append(Step("say", text=node.text or ""))
        elif node.tag == "Gather":
            steps.extend(Step("say", text=s.text or "") for s in node if s.tag == "Say")
            steps.append(Step("listen", url=node.get("action", "")))
        elif node.tag == "Redirect":
            steps.append(Step("redirect", url=node.text or ""))
        elif node.tag == "Hangup":
            steps.append(Step("hangup"))
        elif node.tag == "Connect":
            for relay in node:
                if relay.tag == "ConversationRelay":
                    steps.append(Step("relay", text=relay.get("welcomeGreeting", ""), url=relay.get("url", "")))
    return steps
