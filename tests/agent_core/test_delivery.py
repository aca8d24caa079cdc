"""Delivery mechanics: the per-sender throttle and the send lock (the rest is covered end to end
in tests/gateway/test_twilio.py)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from agent_core import delivery
from agent_core.models import AgentSpec, Channel
from agent_core.store import Store, agents, sessions
from channels.models import OutboundMessage, SendReceipt
from workers.queues import turn_job


class Recorder:
    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    def send(self, message: OutboundMessage) -> SendReceipt:
        self.sent.append(message)
        return SendReceipt(channel_message_ids=[f"SM{len(self.sent):032d}"], parts=1, status="queued")


def pending_reply(store: Store, customer: str, text: str = "hello") -> tuple[str, str]:
    agent = store.run(agents.get("agent_t")) or store.run(agents.create(AgentSpec(name="T"), agent_id="agent_t")).agent
    assert agent is not None
    msg = sessions.new_message("customer", "hi", created_at="2026-01-01T00:00:00.000Z")
    res = store.run(
        sessions.ingest(
            customer_id=customer,
            channel=Channel.sms,
            message=msg,
            job=turn_job(),
            agent_id=agent.id,
            customer_address=customer,
            agent_address="+15550001111",
        )
    )
    assert res.session_id is not None
    reply = sessions.new_message(
        "agent", text, created_at="2026-01-01T00:00:00.000Z", delivery={"status": "pending", "updated_at": "x"}
    )
    store.run(sessions.commit(res.session_id, messages=[reply]))
    return res.session_id, reply["id"]


def test_sender_throttle_spaces_sends(store: Store) -> None:
    sleeps: list[float] = []
    config = delivery.DeliveryConfig(status_callback_url=None, messages_per_second=2.0, max_wait_s=5)
    recorder = Recorder()
    senders: dict[str, Any] = {"sms": recorder}
    for i in range(4):
        sid, mid = pending_reply(store, f"+1555000000{i}")
        assert delivery.deliver(store, senders, config, sid, mid, sleep=sleeps.append) == "sent"
    assert len(recorder.sent) == 4
    # Reservations are 500 ms apart: the first goes at once, the others wait their turn.
    assert sleeps[0] > 0 and all(b > a for a, b in pairwise(sleeps))
    assert 1.2 <= sleeps[-1] <= 1.6


def test_a_wait_beyond_the_limit_is_rescheduled_not_slept(store: Store) -> None:
    config = delivery.DeliveryConfig(status_callback_url=None, messages_per_second=0.1)
    recorder = Recorder()
    senders: dict[str, Any] = {"sms": recorder}
    sid, mid = pending_reply(store, "+15550000009")
    assert delivery.deliver(store, senders, config, sid, mid) == "sent"
    sid2, mid2 = pending_reply(store, "+15550000008")
    slept: list[float] = []
    with pytest.raises(delivery.Throttled) as info:
        delivery.deliver(store, senders, config, sid2, mid2, sleep=slept.append)
    assert 9 < info.value.retry_after <= 10 and slept == []
    # Nothing was reserved for the throttled attempt: the next slot is still 10 s after the first.
    with pytest.raises(delivery.Throttled) as again:
        delivery.deliver(store, senders, config, sid2, mid2)
    assert again.value.retry_after <= info.value.retry_after
    assert len(recorder.sent) == 1


def test_delivering_twice_sends_once(store: Store) -> None:
    config = delivery.DeliveryConfig(status_callback_url=None, messages_per_second=1000)
    recorder = Recorder()
    sid, mid = pending_reply(store, "+15550000007")
    assert delivery.deliver(store, {"sms": recorder}, config, sid, mid) == "sent"
    assert delivery.deliver(store, {"sms": recorder}, config, sid, mid) == "already"
    assert len(recorder.sent) == 1
