"""What one inbound message, one turn and one delivery cost Redis (for docs/scaling.md).

A private redis-server; N inbound SMS (the webhook's own parse → `inbound.receive`, each from
a new customer to one agent number), then the N turns on a TurnPool (offline responder), each
delivering its reply inline through the dev outbox sender (the Twilio sender minus HTTP) when
the sender's rate allows (see below).
`INFO commandstats` deltas per phase: commands per item by name, Redis CPU µs per item (the
server's own `usec`, Lua included), bytes in/out; then memory per session and per message
(`INFO memory` used_memory delta over the N sessions of one message plus one reply each).
Then the status callbacks Twilio posts for each reply, `sent` then `delivered`, through what
the web's `/twilio/messages/status` does (`parse_status(form)` then `delivery.apply_status`),
per callback; and two cheap abnormal cases per reply: `delivered` again (a retried callback:
the dedupe mark stops it) and a late `sending` after `delivered` (first seen, looked up, not
applied: statuses never move backwards).

Before the callbacks, outside their figures: the sender's rate (10/s per number, 0.25 s wait)
sends only the first few replies inline and reschedules the rest (`replies_delivered_inline`;
so the turn figures are mostly a turn plus a rescheduled delivery); those are delivered now,
on the slot already held for them, as their job would. And the dev outbox sender's ids
(`SMdev…`) are not Twilio SIDs, which `parse_status` refuses: each reply's parts get generated
`SM` + 32 hex sids, recorded as the Deliverer records a Twilio receipt (`outbound.record_ids`
and the message's `channel_message_id`/`sids`), so `apply_status` finds them as in production.

`redis-benchmark` gives the box's ceiling for comparison (SET/GET, 50 clients, pipelined 1).

    python -m bench.rediscost [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from agent_core import delivery, inbound
from agent_core.models import AgentSpec
from agent_core.settings import AppSettings, LLMSettings, RedisSettings, Settings, TwilioSettings
from agent_core.store import agents, keys, messages, outbound
from channels.twilio.forms import inbound_form, status_form
from channels.twilio.parse import parse_inbound, parse_status
from gateway.cli.redis_server import EmbeddedRedis
from workers import context, jobs
from workers.turnpool import TurnPool

AGENT_NUMBER = "+15550001111"
ACCOUNT = "AC" + "0" * 32


def _stats(r: Any) -> dict[str, Any]:
    info = r.info("commandstats")
    stats = r.info("stats")
    mem = r.info("memory")
    return {
        "cmds": {k.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for k, v in info.items()},
        "in": stats["total_net_input_bytes"],
        "out": stats["total_net_output_bytes"],
        "mem": mem["used_memory"],
    }


def _delta(a: dict[str, Any], b: dict[str, Any], n: int) -> dict[str, Any]:
    per: dict[str, float] = {}
    usec = 0.0
    calls = 0
    for name, (c, u) in b["cmds"].items():
        c0, u0 = a["cmds"].get(name, (0, 0))
        if c - c0 and name not in ("info",):
            per[name] = round((c - c0) / n, 2)
            calls += c - c0
            usec += u - u0
    return {
        "commands_per_item": round(calls / n, 1),
        "by_command": dict(sorted(per.items(), key=lambda kv: -kv[1])),
        # A script's usec includes the commands it calls, which are counted on their own too.
        "lua_usec_per_item": round((b["cmds"].get("evalsha", (0, 0))[1] - a["cmds"].get("evalsha", (0, 0))[1]) / n, 1),
        "usec_all_commands_per_item_upper_bound": round(usec / n, 1),
        "bytes_in_per_item": round((b["in"] - a["in"]) / n),
        "bytes_out_per_item": round((b["out"] - a["out"]) / n),
        "memory_bytes_per_item": round((b["mem"] - a["mem"]) / n),
    }


def _deliver_rest(ctx: Any, session_ids: list[str]) -> int:
    """Deliver now the replies the sender's rate pushed to a later job (the slot is already
    held for them, as when that job runs); returns how many were already delivered inline."""
    inline = 0
    for sid in session_ids:
        for raw in ctx.redis.hgetall(keys.messages(sid)).values():
            msg = json.loads(raw)
            status = (msg.get("delivery") or {}).get("status")
            if status == "pending":
                assert ctx.deliverer.deliver(sid, msg["id"], slot_held=True) is delivery.DeliveryOutcome.sent
            elif status is not None:
                inline += 1
    return inline


def _twilio_ids(store: Any, r: Any, session_ids: list[str]) -> list[tuple[str, str]]:
    """Give each session's delivered reply generated Twilio SIDs, one per part, recorded as the
    Deliverer records a real receipt; returns (sid, customer number) for every part."""
    out: list[tuple[str, str]] = []
    for sid in session_ids:
        for seq, raw in r.hgetall(keys.messages(sid)).items():
            msg = json.loads(raw)
            if not (msg.get("meta") or {}).get("sids"):
                continue
            ids = ["SM" + uuid.uuid4().hex for _ in range(int(msg.get("parts") or 1))]
            store.run(messages.update(sid, int(seq), delivery._record(channel_message_id=ids[0], sids=ids)))
            assert not store.run(outbound.record_ids(sid, int(seq), ids))
            out.extend((cmid, (msg.get("route") or {}).get("to") or "") for cmid in ids)
    return out


def _callbacks(store: Any, parts: list[tuple[str, str]], statuses: tuple[str, ...]) -> Counter[str]:
    """What the web's message_status does for each callback: parse the form, apply it."""
    outcomes: Counter[str] = Counter()
    for status in statuses:
        for cmid, customer in parts:
            form = status_form(message_sid=cmid, account_sid=ACCOUNT, status=status, from_=AGENT_NUMBER, to=customer)
            outcomes[store.run(delivery.apply_status(parse_status(form))).value] += 1
    return outcomes


def run(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(data_dir=Path(tmp) / "r", appendonly=False) as rs:
        settings = Settings(
            app=AppSettings(_env_file=None, public_base_url="http://127.0.0.1:9"),  # type: ignore[call-arg]
            redis=RedisSettings(_env_file=None, url=rs.url),  # type: ignore[call-arg]
            twilio=TwilioSettings(_env_file=None, account_sid=None, auth_token=None),  # type: ignore[call-arg]
            llm=LLMSettings(_env_file=None),  # type: ignore[call-arg]
        )
        ctx = context.WorkerContext(settings=settings, redis_url=rs.url)
        context.use(ctx)
        try:
            store, r = ctx.store, ctx.redis
            spec = AgentSpec(name="Cost", debounce_ms=0, channels={"numbers": [AGENT_NUMBER]})
            store.run(agents.create(spec))
            r.config_resetstat()
            s0 = _stats(r)
            session_ids: list[str] = []
            for i in range(n):
                form = inbound_form(
                    message_sid=f"SM{i:032x}", account_sid=ACCOUNT, from_=f"+1555600{i:04d}", to=AGENT_NUMBER, body="hi"
                )
                result = store.run(inbound.receive(inbound.from_channel(parse_inbound(form))))
                assert result.session_id is not None
                session_ids.append(result.session_id)
            s1 = _stats(r)
            TurnPool(ctx.rq_redis, jobs.turn, slots=4).work(burst=True)
            s2 = _stats(r)
            inline = _deliver_rest(ctx, session_ids)
            parts = _twilio_ids(store, r, session_ids)
            s3 = _stats(r)
            normal = _callbacks(store, parts, ("sent", "delivered"))
            s4 = _stats(r)
            duplicate = _callbacks(store, parts, ("delivered",))
            s5 = _stats(r)
            late = _callbacks(store, parts, ("sending",))
            s6 = _stats(r)
            replies = [json.loads(raw) for sid in session_ids for raw in r.hgetall(keys.messages(sid)).values()]
            final = Counter(m["delivery"]["status"] for m in replies if (m.get("meta") or {}).get("sids"))
            out = {
                "n": n,
                "inbound": _delta(s0, s1, n),
                "turn_with_inline_delivery": _delta(s1, s2, n),
                "memory_per_session_with_2_messages_bytes": round((s2["mem"] - s0["mem"]) / n),
                "replies_delivered_inline": inline,
                "reply_parts": len(parts),
                "status_callback_sent_then_delivered": {
                    **_delta(s3, s4, 2 * len(parts)),
                    "outcomes": dict(normal),
                },
                "status_callback_duplicate_delivered": {**_delta(s4, s5, len(parts)), "outcomes": dict(duplicate)},
                "status_callback_late_sending": {**_delta(s5, s6, len(parts)), "outcomes": dict(late)},
                "reply_delivery_status_after": dict(final),
            }
        finally:
            context.use(None)
            ctx.close()
        bench = shutil.which("redis-benchmark")
        if bench:
            port = rs.url.rsplit(":", 1)[1].split("/")[0]
            txt = subprocess.run(
                [bench, "-p", port, "-q", "-n", "100000", "-c", "50", "-t", "set,get,lpush,zadd"],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            out["redis_benchmark"] = [ln.strip() for ln in txt.replace("\r", "\n").splitlines() if "requests per" in ln]
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000)
    print(json.dumps(run(p.parse_args().n), indent=2))


if __name__ == "__main__":
    main()
