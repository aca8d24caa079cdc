"""Delivery mechanics: the per-sender throttle and the send lock (the rest is covered end to end
in tests/gateway/test_twilio.py)."""

from __future__ import annotations

import time
from typing import Any

from agent_core import delivery
from agent_core.models import AgentSpec, Channel, Role
from agent_core.store import Change, Store, agents, sessions
from channels.models import OutboundMessage, SendReceipt


class Recorder:
    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    def parts(self, message: OutboundMessage) -> int:
        return 1

    def send(self, message: OutboundMessage) -> SendReceipt:
        self.sent.append(message)
        return SendReceipt(channel_message_ids=[f"SM{len(self.sent):032d}"], parts=1, status="queued")


class Later:
    """The queue's scheduler, as the Deliverer sees it: records each retry asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, int, float, bool]] = []

    def __call__(self, session_id: str, message_id: str, attempt: int, delay_s: float, slot_held: bool) -> None:
        self.asked.append((session_id, message_id, attempt, delay_s, slot_held))


def deliverer(store: Store, senders: dict[Any, Any], config: delivery.DeliveryConfig, **kw: Any) -> delivery.Deliverer:
    return delivery.Deliverer(
        store=store, senders=senders, config=config, retry_later=kw.pop("later", Later()), backoff_s=(2, 5), **kw
    )


def pending_reply(store: Store, customer: str, text: str = "hello") -> tuple[str, str]:
    agent = store.run(agents.get("agent_t")) or store.run(agents.create(AgentSpec(name="T"), agent_id="agent_t")).agent
    assert agent is not None
    msg = sessions.new_message(Role.customer, "hi", created_at="2026-01-01T00:00:00.000Z")
    res = store.run(
        sessions.ingest(
            customer_id=customer,
            channel=Channel.sms,
            message=msg,
            agent_id=agent.id,
            customer_address=customer,
            agent_address="+15550001111",
        )
    )
    assert res.session_id is not None
    reply = sessions.new_message(
        Role.agent, text, created_at="2026-01-01T00:00:00.000Z", delivery={"status": "pending", "updated_at": "x"}
    )
    store.run(sessions.commit(res.session_id, Change(messages=[reply])))
    return res.session_id, reply["id"]


def now_ms() -> int:
    """The wall clock as the throttle reads it; readings around a call bracket the call's own reading."""
    return int(time.time() * 1000)


def test_sender_throttle_spaces_sends(store: Store) -> None:
    # 0.1/s: one slot every 10 s, far longer than a call takes, so all four sends fall in one burst.
    interval_ms = 10_000
    config = delivery.DeliveryConfig(status_callback_url=None, messages_per_second=0.1, max_wait_s=60)
    recorder = Recorder()
    sleeps: list[float] = []
    sender = deliverer(store, {Channel.sms: recorder}, config, sleep=sleeps.append)
    windows: list[tuple[int, int]] = []
    for i in range(4):
        sid, mid = pending_reply(store, f"+1555000000{i}")
        start = now_ms()
        assert sender.deliver(sid, mid) == "sent"
        windows.append((start, now_ms()))
    assert len(recorder.sent) == 4
    # The first send goes at once; send i waits until slot i, `interval_ms` after slot i - 1. The
    # throttle read the clock inside each call's window, so each wait lies within these bounds.
    assert len(sleeps) == 3
    (first_start, first_end), *later = windows
    for i, (waited, (start, end)) in enumerate(zip(sleeps, later, strict=True), start=1):
        slot_earliest, slot_latest = first_start + i * interval_ms, first_end + i * interval_ms
        assert slot_earliest - end <= round(waited * 1000) <= slot_latest - start


def test_a_wait_beyond_the_limit_holds_the_slot_and_is_rescheduled_for_it_not_slept(store: Store) -> None:
    config = delivery.DeliveryConfig(status_callback_url=None, messages_per_second=0.1)
    recorder = Recorder()
    slept: list[float] = []
    later = Later()
    sender = deliverer(store, {Channel.sms: recorder}, config, sleep=slept.append, later=later)
    sid, mid = pending_reply(store, "+15550000009")
    first_start = now_ms()
    assert sender.deliver(sid, mid) == "sent"
    first_end = now_ms()
    # One slot every 10 s: the second message's slot is 10 s after the first send.
    sid2, mid2 = pending_reply(store, "+15550000008")
    start = now_ms()
    assert sender.deliver(sid2, mid2) == "throttled"
    end = now_ms()
    assert slept == [] and len(recorder.sent) == 1
    # Its slot is held for it: it is rescheduled for exactly then, to send without asking again
    # (a throttled attempt is not a failed one: the same attempt number).
    ((asked_sid, asked_mid, attempt, delay, held),) = later.asked
    assert (asked_sid, asked_mid, attempt, held) == (sid2, mid2, 0, True)
    assert first_start + 10_000 - end <= round(delay * 1000) <= first_end + 10_000 - start
    # A third message gets the slot after it, 20 s after the first send: no two share a slot.
    sid3, mid3 = pending_reply(store, "+15550000007")
    start = now_ms()
    assert sender.deliver(sid3, mid3) == "throttled"
    end = now_ms()
    assert first_start + 20_000 - end <= round(later.asked[-1][3] * 1000) <= first_end + 20_000 - start
    # When its time comes, the held slot is used as it is: sent, and no later slot is taken.
    assert sender.deliver(sid2, mid2, 0, slot_held=True) == "sent"
    assert [m.to for m in recorder.sent] == ["+15550000009", "+15550000008"]
    sid4, mid4 = pending_reply(store, "+15550000006")
    start = now_ms()
    assert sender.deliver(sid4, mid4) == "throttled"
    end = now_ms()
    assert first_start + 30_000 - end <= round(later.asked[-1][3] * 1000) <= first_end + 30_000 - start


def test_delivering_twice_sends_once(store: Store) -> None:
    config = delivery.DeliveryConfig(status_callback_url=None, messages_per_second=1000)
    recorder = Recorder()
    sender = deliverer(store, {Channel.sms: recorder}, config)
    sid, mid = pending_reply(store, "+15550000007")
    assert sender.deliver(sid, mid) == "sent"
    assert sender.deliver(sid, mid) == "already"
    assert len(recorder.sent) == 1
