"""What one inbound message, one turn and one delivery cost Redis (for docs/scaling.md).

A private redis-server; N inbound SMS (the webhook's own parse → `inbound.receive`, each from
a new customer to one agent number), then the N turns on a TurnPool (offline responder), each
delivering its reply inline through the dev outbox sender (the Twilio sender minus HTTP).
`INFO commandstats` deltas per phase: commands per item by name, Redis CPU µs per item (the
server's own `usec`, Lua included), bytes in/out; then memory per session and per message
(`INFO memory` used_memory delta over the N sessions of one message plus one reply each).
`redis-benchmark` gives the box's ceiling for comparison (SET/GET, 50 clients, pipelined 1).

    python -m bench.rediscost [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from agent_core import inbound
from agent_core.models import AgentSpec
from agent_core.settings import AppSettings, LLMSettings, RedisSettings, Settings, TwilioSettings
from agent_core.store import agents
from channels.twilio.forms import inbound_form
from channels.twilio.parse import parse_inbound
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
            for i in range(n):
                form = inbound_form(
                    message_sid=f"SM{i:032x}", account_sid=ACCOUNT, from_=f"+1555600{i:04d}", to=AGENT_NUMBER, body="hi"
                )
                store.run(inbound.receive(inbound.from_channel(parse_inbound(form))))
            s1 = _stats(r)
            TurnPool(ctx.rq_redis, jobs.turn, slots=4).work(burst=True)
            s2 = _stats(r)
            out = {
                "n": n,
                "inbound": _delta(s0, s1, n),
                "turn_with_inline_delivery": _delta(s1, s2, n),
                "memory_per_session_with_2_messages_bytes": round((s2["mem"] - s0["mem"]) / n),
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
