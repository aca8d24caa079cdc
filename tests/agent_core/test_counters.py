"""Indexes and stats counters never drift from the session hashes."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import redis

from agent_core import lifecycle
from agent_core.models import AgentSpec, Channel, Role
from agent_core.store import Change, Store, agents, keys, sessions
from agent_core.store.sessions import SessionFilter


def recount(r: redis.Redis) -> tuple[dict[str, Counter[str]], dict[str, set[str]]]:
    counts: dict[str, Counter[str]] = {}
    index: dict[str, set[str]] = {}
    for key in r.scan_iter("gw:s:*"):
        s = r.hgetall(key)
        for scope in ("*", s["agent_id"]):
            c = counts.setdefault(scope, Counter())
            c["total"] += 1
            c[s["status"]] += 1
            c["help_requested"] += s["help_requested"] == "1"
            c["support"] += s["mode"] == "support"
            for name in (
                "all",
                f"status:{s['status']}",
                f"mode:{s['mode']}",
                f"help:{s['help_requested']}",
                f"channel:{s['channel']}",
                f"cust:{s['customer_id']}",
            ):
                index.setdefault(keys.index(scope, name), set()).add(s["id"])
    return counts, index


def assert_consistent(store: Store, r: redis.Redis) -> None:
    counts, index = recount(r)
    for scope, expected in counts.items():
        stats = store.run(sessions.stats(None if scope == "*" else scope))
        assert stats == {f: expected.get(f, 0) for f in sessions.STAT_FIELDS}, scope
    stored = {k: set(r.zrange(k, 0, -1)) for k in r.scan_iter("gw:ix:*")}
    assert {k: v for k, v in stored.items() if v} == index
    for agent_key in r.scan_iter("gw:open:*"):
        for cust, sid in r.hgetall(agent_key).items():
            s = r.hgetall(keys.session(sid))
            assert s["status"] != "closed" and s["customer_id"] == cust


def test_counters_equal_a_recount_after_random_changes(store: Store, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    rng = random.Random(7)
    agent_ids = [store.run(agents.create(AgentSpec(name=f"A{i}"))).agent.id for i in range(3)]  # type: ignore[union-attr]
    customers = [f"c{i}" for i in range(12)]
    for step in range(300):
        op = rng.choice(["inbound", "inbound", "open", "help", "support", "dormant", "close", "sweep"])
        agent_id, cust = rng.choice(agent_ids), rng.choice(customers)
        if op == "inbound":
            msg = sessions.new_message(Role.customer, f"m{step}", created_at="2026-01-01T00:00:00.000Z")
            store.run(
                sessions.ingest(customer_id=cust, channel=rng.choice(list(Channel)), message=msg, agent_id=agent_id)
            )
        elif op == "open":
            store.run(
                sessions.open_session(
                    agent_id=agent_id,
                    customer_id=cust,
                    channel=Channel.api,
                    input_fields=None,
                    context=[],
                    welcome=None,
                )
            )
        else:
            sid = store.run(sessions.open_session_id(agent_id, cust))
            if sid is None:
                continue
            changes: dict[str, Any] = {
                "help": {"help_requested": rng.random() < 0.6},
                "support": {"mode": rng.choice(["ai", "support"])},
                "dormant": {"status": "dormant"},
                "close": sessions.closing("test", "2026-01-01T00:00:00.000Z"),
                "sweep": {},
            }[op]
            if op == "sweep":
                lifecycle.sweep(store, now_ms=4_000_000_000_000)
            else:
                store.run(sessions.commit(sid, Change(set=changes, touch=rng.random() < 0.5)))
        if step % 50 == 0:
            assert_consistent(store, r)
    assert_consistent(store, r)


def test_filters_combine_and_paginate_newest_first(store: Store) -> None:
    a = store.run(agents.create(AgentSpec(name="A"))).agent
    assert a is not None
    sids = []
    for i in range(7):
        msg = sessions.new_message(Role.customer, "x", created_at="2026-01-01T00:00:00.000Z")
        res = store.run(
            sessions.ingest(
                customer_id=f"c{i}",
                channel=Channel.sms if i % 2 else Channel.api,
                message=msg,
                agent_id=a.id,
                at_ms=1_000 + i,
            )
        )
        sids.append(res.session_id)
    got: list[str] = []
    cursor = None
    while True:
        items, cursor = store.run(
            sessions.list_page(SessionFilter(agent_id=a.id, channel="sms", status="active"), limit=2, cursor=cursor)
        )
        got += [s.id for s in items]
        if cursor is None:
            break
    assert got == [sids[5], sids[3], sids[1]]
    items, _ = store.run(sessions.list_page(SessionFilter(q="C4"), limit=10, cursor=None))
    assert [s.id for s in items] == [sids[4]]
