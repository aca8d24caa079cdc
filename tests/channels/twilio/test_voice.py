"""Twilio Voice forms, TwiML and ConversationRelay frames: parsed in, built out."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from channels.models import CallStatus, OutboundCall
from channels.twilio import InvalidTwilioRequest
from channels.twilio import relay as frames
from channels.twilio.calls import create_call_params
from channels.twilio.voice import (
    Speech,
    call_status_form,
    connect_relay,
    parse_call_status,
    parse_caller_turn,
    read_twiml,
    say_and_hang_up,
    say_and_listen,
    say_and_redirect,
    voice_form,
)

SID = "CA" + "0" * 32
SPEECH = Speech("Polly.Joanna", "en-US")


def status_form(value: str, duration: int | None = None) -> dict[str, str]:
    return call_status_form(
        call_sid=SID,
        account_sid="AC" + "1" * 32,
        from_="+1555",
        to="+1666",
        status=value,
        duration_s=duration,
        sequence=1,
    )


@pytest.mark.parametrize(
    ("sent", "status"),
    [
        ("initiated", CallStatus.queued),
        ("queued", CallStatus.queued),
        ("ringing", CallStatus.ringing),
        ("answered", CallStatus.in_progress),
        ("in-progress", CallStatus.in_progress),
        ("completed", CallStatus.completed),
        ("no-answer", CallStatus.no_answer),
        ("busy", CallStatus.busy),
        ("canceled", CallStatus.canceled),
        ("failed", CallStatus.failed),
    ],
)
def test_call_statuses_parse_to_the_neutral_ranked_status(sent: str, status: CallStatus) -> None:
    update = parse_call_status(status_form(sent, 12))
    assert update.status is status and update.call_sid == SID and update.duration_s == 12 and update.sequence == 1


def test_ranks_never_go_backwards_and_every_end_is_final() -> None:
    assert CallStatus.queued.rank < CallStatus.ringing.rank < CallStatus.in_progress.rank < CallStatus.completed.rank
    assert all(s.terminal for s in (CallStatus.completed, CallStatus.busy, CallStatus.no_answer, CallStatus.failed))
    assert not CallStatus.in_progress.terminal


def test_bad_status_callbacks_name_the_field() -> None:
    with pytest.raises(InvalidTwilioRequest, match="CallStatus"):
        parse_call_status(status_form("exploded"))
    with pytest.raises(InvalidTwilioRequest, match="CallSid"):
        parse_call_status({**status_form("completed"), "CallSid": "SM123"})


def test_caller_turn_reads_speech_digits_and_silence() -> None:
    form = voice_form(call_sid=SID, account_sid="AC" + "1" * 32, from_="+1555", to="+1666", speech=" hello\x00 ")
    turn = parse_caller_turn(form)
    assert turn.speech == "hello" and not turn.silent and turn.confidence == 0.9
    plain = voice_form(call_sid=SID, account_sid="AC" + "1" * 32, from_="+1555", to="+1666")
    assert parse_caller_turn(plain).silent
    assert parse_caller_turn({**plain, "Digits": "1x#"}).digits == "1#"


def test_twiml_builders_and_reader_agree() -> None:
    listen = ET.fromstring(say_and_listen("Hi there", action="https://gw/turn", speech=SPEECH))
    gather = listen.find("Gather")
    assert gather is not None and gather.get("input") == "speech" and gather.get("action") == "https://gw/turn"
    assert gather.get("speechTimeout") == "auto" and gather.findtext("Say") == "Hi there"
    assert [s.kind for s in read_twiml(say_and_listen("Hi", action="u", speech=SPEECH))] == [
        "say",
        "listen",
        "redirect",
    ]
    assert [s.kind for s in read_twiml(say_and_redirect("Wait", url="u", speech=SPEECH))] == ["say", "redirect"]
    assert [s.kind for s in read_twiml(say_and_hang_up("Bye"))] == ["say", "hangup"]
    relay = read_twiml(connect_relay(socket_url="wss://gw/r", action="https://gw/e", greeting="Hello", speech=SPEECH))
    assert relay[0].kind == "relay" and relay[0].url == "wss://gw/r" and relay[0].text == "Hello"


def test_calls_create_gets_only_the_reference_parameters() -> None:
    call = OutboundCall(
        to="+1666", from_number="+1555", url="https://gw/v", status_callback="https://gw/s", time_limit_s=60
    )
    params = create_call_params(call)
    assert set(params) == {"to", "from_", "url", "status_callback", "status_callback_event", "time_limit"}
    assert params["status_callback_event"] == ["initiated", "ringing", "answered", "completed"]


def test_relay_frames_parse_and_serialise() -> None:
    setup = frames.parse_frame(frames.setup_message(call_sid=SID, account_sid="AC1", from_="+1", to="+2"))
    assert isinstance(setup, frames.RelaySetup) and setup.call_sid == SID
    prompt = frames.parse_frame(frames.prompt_message("hi", last=False))
    assert isinstance(prompt, frames.RelayPrompt) and prompt.text == "hi" and not prompt.final
    interrupt = frames.parse_frame(frames.interrupt_message("Our ref", 300))
    assert isinstance(interrupt, frames.RelayInterrupt) and interrupt.heard == "Our ref" and interrupt.after_ms == 300
    assert isinstance(frames.parse_frame(frames.dtmf_message("5")), frames.RelayDigit)
    assert isinstance(frames.parse_frame('{"type":"info"}'), frames.RelayOther)
    with pytest.raises(InvalidTwilioRequest):
        frames.parse_frame("not json")
    with pytest.raises(InvalidTwilioRequest, match="type"):
        frames.parse_frame("[1]")
    assert json.loads(frames.text_frame("Hi ", False)) == {"type": "text", "token": "Hi ", "last": False}
    end = json.loads(frames.end_frame({"call_id": "c"}))
    assert end["type"] == "end" and json.loads(end["handoffData"]) == {"call_id": "c"}
