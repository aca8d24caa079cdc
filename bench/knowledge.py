"""Knowledge retrieval: index build time, query latency over 10,000 chunks, prompt assembly.

`python -m bench.knowledge [--chunks N] [--queries N] [--upload-mb N]`

What runs: a private redis-server (EmbeddedRedis, appendonly off). A synthetic but realistic
help center (one Markdown manual per product: overview, setup, troubleshooting with error
codes, maintenance, warranty, specifications; plus a shipping/returns policy) is chunked
and stored through the real store operations until it reaches --chunks chunks, and attached
to one agent. Then, each figure on that agent:

1. Index build: `load_corpus` (read the chunks from Redis) and the BM25 build, cold.
2. Retrieval latency (cached index, the steady state of a worker): `retrieve()` end to end
   (one Redis GET of the version counter + BM25 scoring + top-k), p50/p99 over --queries
   questions; plus the in-memory search alone.
3. Quality on the same corpus: share of generated questions whose target chunk is the top
   passage (score >= the default threshold 0.3), and share of unrelated questions that
   retrieve anything.
4. Prompt assembly per turn: `agent_core.prompts.build_messages` for a realistic session
   (40-message thread, memory, context, 3 passages, whispers), p50/p99; and retrieval +
   assembly together.
5. Event-loop stall during a large upload: the real app (ASGI, in this process) receives a
   --upload-mb Markdown document while another task pings /healthz every 5 ms; reported:
   the upload's own time and the worst /healthz latency during it.
No asserts: it prints figures (and JSON on the last line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

CATEGORIES = [
    ("air purifier", "filter", "fan speed", "air quality sensor"),
    ("robot vacuum", "brush roll", "suction power", "cliff sensor"),
    ("coffee maker", "water tank", "brew strength", "descaling indicator"),
    ("smart thermostat", "backplate", "temperature schedule", "humidity sensor"),
    ("electric bike", "battery pack", "pedal assist level", "torque sensor"),
    ("noise-cancelling headphones", "ear cushions", "noise cancelling mode", "wear detection sensor"),
    ("mesh wifi router", "satellite node", "channel width", "signal strength indicator"),
    ("high-speed blender", "blade assembly", "pulse mode", "lid lock sensor"),
    ("security camera", "mounting bracket", "motion detection zone", "infrared night sensor"),
    ("dishwasher", "spray arm", "eco wash cycle", "rinse aid sensor"),
    ("portable projector", "lens cover", "keystone correction", "ambient light sensor"),
    ("electric toothbrush", "brush head", "cleaning mode", "pressure sensor"),
]
NAMES = [
    "Nimbus", "Aria", "Vega", "Orion", "Lumen", "Cascade", "Summit", "Harbor", "Juniper", "Quartz",
    "Sierra", "Tundra", "Willow", "Zephyr", "Atlas", "Beacon", "Cobalt", "Delta", "Ember", "Falcon",
    "Glacier", "Helix", "Iris", "Jade", "Kestrel", "Lyra", "Meridian", "Nova", "Onyx", "Pioneer",
]  # fmt: skip
PROBLEMS = [
    ("does not turn on", "check that the power adapter is seated firmly and hold the power button for ten seconds"),
    ("makes a grinding noise", "remove the {part} and clear any debris caught around the housing"),
    ("loses its wifi connection", "move it closer to the router and reconnect it in the Acme Home app"),
    ("shows a blinking red light", "reset it by holding the reset button for fifteen seconds"),
    ("overheats after an hour", "clean the vents and keep at least ten centimetres of space around it"),
    ("stops responding to the app", "update the firmware from Settings and restart the app"),
    ("drains the battery quickly", "lower the {setting} and turn off the {sensor} when not needed"),
    ("reports a sensor fault", "wipe the {sensor} with a dry cloth and recalibrate it from the app"),
]
UNRELATED = [
    "What's the weather like in Paris tomorrow?",
    "Who won the football game last night?",
    "What is the capital of Australia?",
    "How do I bake sourdough bread at home?",
    "Can you recommend a good movie for tonight?",
    "tell me a joke",
    "What is the meaning of life?",
    "How tall is Mount Everest?",
    "hello there",
    "I like pizza with pineapple",
]


class Lexicon:
    """Filler prose with natural-language statistics: 30,000 pseudo-words drawn by Zipf's law."""

    SYLLABLES = [c + v for c in "bcdfghklmnprstvwz" for v in "aeiou"] + ["an", "er", "in", "on", "st", "th"]
    ENDINGS = ("x", "q", "zh", "kv", "oj", "uv")

    def __init__(self, rng: random.Random, size: int = 30_000) -> None:
        words: set[str] = set()
        while len(words) < size:
            stem = "".join(rng.choice(self.SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3))))
            # Endings English rarely has keep the filler from colliding with real questions.
            words.add(stem + rng.choice(self.ENDINGS))
        self.words = sorted(words, key=lambda w: (len(w), w))
        total = 0.0
        self.cum: list[float] = []
        for rank in range(1, size + 1):
            total += rank**-1.07
            self.cum.append(total)

    def sentence(self, rng: random.Random, topic: list[str]) -> str:
        words = rng.choices(self.words, cum_weights=self.cum, k=rng.randint(8, 22))
        for _ in range(rng.randint(0, 2)):
            words.insert(rng.randrange(len(words)), rng.choice(topic))
        return " ".join(words).capitalize() + "."

    def paragraph(self, rng: random.Random, topic: list[str], sentences: int) -> str:
        return " ".join(self.sentence(rng, topic) for _ in range(sentences))


def _product_manual(
    rng: random.Random, lexicon: Lexicon, model: str, category: tuple[str, str, str, str]
) -> tuple[str, list[Any]]:
    kind, part, setting, sensor = category
    codes = rng.sample(range(10, 99), 3)
    months = rng.choice([2, 3, 4, 6, 12])
    years = rng.choice([1, 2, 3, 5])
    weight = round(rng.uniform(0.3, 25), 1)
    watts = rng.choice([15, 40, 65, 120, 450, 900, 1200])
    problems = rng.sample(PROBLEMS, 3)
    fix = {k: v.format(part=part, setting=setting, sensor=sensor) for k, v in problems}
    lines = [
        f"# {model} {kind}",
        "",
        f"The {model} is our {rng.choice(['best-selling', 'newest', 'most compact', 'premium'])} {kind}. "
        f"It pairs with the Acme Home app, supports voice assistants and adjusts its {setting} automatically "
        f"using the built-in {sensor}.",
        "",
        "## Setup",
        "",
        f"1. Unpack the {model} and remove the protective film from the {part}.",
        "2. Plug it in and wait until the status light turns white.",
        "3. Open the Acme Home app, tap Add device and follow the steps to join your wifi network.",
        f"4. Choose a default {setting}; you can change it later in the app.",
        "",
        "## Troubleshooting",
        "",
    ]
    questions: list[Any] = []
    for code, (problem, _) in zip(codes, problems, strict=True):
        lines += [
            f"### Error E{code}: the {kind} {problem}",
            "",
            f"If your {model} {problem} and the display shows E{code}, {fix[problem]}. "
            f"If error E{code} comes back, contact support with the serial number from the label under the {part}.",
            "",
        ]
        questions.append((f"My {model} {kind} shows error E{code}, what should I do?", f"Error E{code}"))
    lines += [
        "## Maintenance",
        "",
        f"Replace the {part} of the {model} every {months} months, or sooner if the app says so. "
        f"Clean the {sensor} once a month with a soft dry cloth. Never use water or solvents on the electronics.",
        "",
        "## Warranty",
        "",
        f"The {model} {kind} has a {years}-year limited warranty covering manufacturing defects. "
        "Wear parts and accidental damage are not covered. Register the product in the app to extend "
        "the warranty by six months.",
        "",
        "## Specifications",
        "",
        f"- Weight: {weight} kg",
        f"- Power: {watts} W",
        f"- Connectivity: wifi 2.4 GHz, Bluetooth {rng.choice(['5.0', '5.2', '5.3'])}",
        f"- Colours: {', '.join(rng.sample(['white', 'black', 'graphite', 'sage', 'sand', 'navy'], 2))}",
        "",
        "## Usage notes",
        "",
        lexicon.paragraph(rng, [kind, part, setting, sensor], rng.randint(3, 5)),
        "",
        lexicon.paragraph(rng, [kind, part, setting, sensor], rng.randint(3, 5)),
        "",
    ]
    questions.append((f"How often do I need to replace the {part} on my {model}?", "Maintenance"))
    questions.append((f"how long is the warranty on the {model} {kind}", "Warranty"))
    return "\n".join(lines), questions


POLICY = """# Shipping and returns

## Shipping
Standard shipping takes 3 to 5 business days; express shipping takes 1 to 2 business days. Shipping is
free on orders over $50.

## Returns
You can return any product within 30 days of delivery for a full refund, as long as it is unused and in
its original packaging. Start a return from Order History in your account.

## Refunds
Refunds go back to the original payment method within 5 business days of receiving the return.
"""


def synthetic_documents(target_chunks: int, seed: int = 7) -> tuple[list[tuple[str, str]], list[Any]]:
    """(name, markdown) documents totalling about `target_chunks` chunks, and questions
    (text, the heading expected in the top passage, the document name)."""
    from agent_core.knowledge import ContentType, chunk_document

    rng = random.Random(seed)
    lexicon = Lexicon(rng)
    docs: list[tuple[str, str]] = [("shipping-and-returns.md", POLICY)]
    questions: list[Any] = [
        ("How long does standard shipping take?", "Shipping", "shipping-and-returns.md"),
        ("what is your return policy", "Returns", "shipping-and-returns.md"),
    ]
    total = len(chunk_document(POLICY, ContentType.markdown))
    n = 0
    while total < target_chunks:
        category = CATEGORIES[n % len(CATEGORIES)]
        model = f"{NAMES[(n // len(CATEGORIES)) % len(NAMES)]} {100 + n // (len(CATEGORIES) * len(NAMES))}"
        text, qs = _product_manual(rng, lexicon, model, category)
        name = f"{model.lower().replace(' ', '-')}-{category[0].replace(' ', '-')}.md"
        docs.append((name, text))
        questions += [(q, head, name) for q, head in qs]
        total += len(chunk_document(text, ContentType.markdown))
        n += 1
    return docs, questions


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(_pct(values, 50) * 1000, 3), "p99_ms": round(_pct(values, 99) * 1000, 3)}


def load_documents(store: Any, docs: list[tuple[str, str]]) -> list[str]:
    from agent_core.knowledge import chunks_of, read_text, save

    ids = []
    for name, text in docs:
        doc = read_text(text, name=name, content_type=None)
        ids.append(store.run(save(doc, chunks=chunks_of(doc))).document.id)
    return ids


def bench_retrieval(store: Any, ids: list[str], questions: list[Any], n_queries: int) -> dict[str, Any]:
    from agent_core.knowledge import IndexCache, load_corpus, retrieve
    from agent_core.models import KnowledgeConfig

    config = KnowledgeConfig(document_ids=ids)
    cache = IndexCache()
    t0 = time.perf_counter()
    corpus = store.run(load_corpus(ids, cache))
    t1 = time.perf_counter()
    index = corpus.index()
    t2 = time.perf_counter()
    rng = random.Random(3)
    sample = [rng.choice(questions) for _ in range(n_queries)]
    for q, _, _ in sample[:20]:
        retrieve(store, config, q, cache)
    end_to_end = []
    for q, _, _ in sample:
        s = time.perf_counter()
        retrieve(store, config, q, cache)
        end_to_end.append(time.perf_counter() - s)
    in_memory = []
    for q, _, _ in sample:
        s = time.perf_counter()
        index.search(q, config.top_k, config.relevance_threshold)
        in_memory.append(time.perf_counter() - s)
    found = 0
    for q, head, name in sample:
        passages = retrieve(store, config, q, cache)
        if passages and passages[0].document_name == name and head in passages[0].text.split("\n", 1)[0]:
            found += 1
    unrelated_hits = sum(bool(retrieve(store, config, q, cache)) for q in UNRELATED)
    return {
        "chunks": index.size,
        "documents": len(ids),
        "load_chunks_from_redis_ms": round((t1 - t0) * 1000, 1),
        "index_build_ms": round((t2 - t1) * 1000, 1),
        "retrieve_cached": _ms(end_to_end),
        "search_in_memory": _ms(in_memory),
        "top_passage_is_the_target": round(found / len(sample), 3),
        "unrelated_questions_retrieving_anything": f"{unrelated_hits}/{len(UNRELATED)}",
    }


def bench_prompt(store: Any, ids: list[str], questions: list[Any], n: int) -> dict[str, Any]:
    from agent_core.knowledge import IndexCache, retrieve
    from agent_core.models import Agent, Message, Session
    from agent_core.prompts import PromptInputs, build_messages

    agent = Agent.model_validate(
        {
            "id": "agent_bench",
            "chat_agent_id": 1,
            "name": "Acme Support",
            "created_at": "2026-01-01T00:00:00.000Z",
            "updated_at": "2026-01-01T00:00:00.000Z",
            "prompt": {"type": "single", "text": "You are Acme's friendly support agent. " * 20},
            "knowledge": {"document_ids": ids},
        }
    )
    at = "2026-01-01T00:00:00.000Z"
    session = Session.model_validate(
        {
            "id": "00000000-0000-4000-8000-000000000001",
            "chat_agent_id": 1,
            "account_id": 1,
            "customer_id": "+15550001234",
            "mode": "ai",
            "help_requested": False,
            "status": "active",
            "current_state": "default",
            "metadata": {
                "input_fields": {"name": "Dana", "plan": "premium", "order": "A-10442"},
                "state_fields": {},
                "context": ["Customer called last week about a late delivery.", "VIP since 2021."],
            },
            "active_human": None,
            "created_at": at,
            "updated_at": at,
            "agent_id": "agent_bench",
            "channel": "whatsapp",
            "customer_address": "whatsapp:+15550001234",
            "last_customer_message_at": at,
            "last_activity_at": at,
            "help_requested_at": None,
            "help_reason": None,
            "summary": None,
            "closed_reason": None,
            "opted_out": False,
        }
    )
    rng = random.Random(5)
    thread = [
        Message.model_validate(
            {
                "id": f"msg_{i}",
                "session_id": session.id,
                "seq": i + 1,
                "role": "customer" if i % 2 == 0 else "agent",
                "text": rng.choice(questions)[0] + " " + "Thanks for the quick help so far. " * rng.randint(0, 3),
                "created_at": at,
            }
        )
        for i in range(40)
    ]
    memory = ["Bought a Nimbus 100 air purifier in March; asked about filters.", "Prefers WhatsApp."]
    whispers = ["Offer the 10% loyalty discount if they ask about replacement parts."]
    cache = IndexCache()
    retrieve(store, agent.knowledge, "warm up", cache)
    assemble, turn = [], []
    for _ in range(n):
        question = rng.choice(questions)[0]
        s = time.perf_counter()
        passages = retrieve(store, agent.knowledge, question, cache)
        m = time.perf_counter()
        inputs = PromptInputs(
            agent=agent, session=session, thread=thread, memory=memory, passages=passages, whispers=whispers
        )
        messages = build_messages(inputs)
        e = time.perf_counter()
        assemble.append(e - m)
        turn.append(e - s)
    return {
        "thread_messages": len(thread),
        "system_prompt_chars": len(messages[0]["content"]),
        "build_messages": _ms(assemble),
        "retrieve_plus_build_messages": _ms(turn),
    }


async def _upload_stall(redis_url: str, upload_mb: float) -> dict[str, Any]:
    import httpx
    import redis

    from agent_core import knowledge
    from agent_core.knowledge import CACHE
    from agent_core.settings import AppSettings, LLMSettings, RedisSettings, Settings, TwilioSettings
    from agent_core.store import Store, tokens
    from agent_core.store.tokens import TokenRole
    from gateway.api import knowledge as knowledge_api
    from gateway.api.routing import build_routes
    from gateway.app import create_app

    settings = Settings(
        app=AppSettings(
            _env_file=None,  # type: ignore[call-arg]
            public_base_url="http://bench.local",
            secret_key="bench-secret-key-0123456789",  # type: ignore[arg-type]
            max_body_bytes=64 * 1024 * 1024,
            log_format="console",  # type: ignore[arg-type]
            log_level="WARNING",
        ),
        redis=RedisSettings(_env_file=None, url=redis_url),  # type: ignore[call-arg]
        twilio=TwilioSettings(_env_file=None, account_sid=None, auth_token=None),  # type: ignore[call-arg]
        llm=LLMSettings(_env_file=None, openai_api_key=None),  # type: ignore[call-arg]
    )
    app = create_app(settings, redis_url)
    if "/v1/knowledge/documents" not in {getattr(r, "path", "") for r in app.router.routes}:
        app.router.routes.extend(build_routes(knowledge_api.ENDPOINTS))
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    token, _ = Store(sync).run(tokens.create("bench", TokenRole.admin))
    docs, _ = synthetic_documents(int(upload_mb * 1024 * 1024 / 330))
    text = "\n\n".join(t for _, t in docs)
    while len(text.encode()) < upload_mb * 1024 * 1024:
        text += "\n\n" + text[: int(upload_mb * 1024 * 1024) - len(text)]
    body = text.encode()[: int(upload_mb * 1024 * 1024)].decode("utf-8", "ignore")
    CACHE.clear()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench.local") as client:
            await client.get("/healthz")
            pings: list[tuple[float, float]] = []
            done = asyncio.Event()

            async def ping() -> None:
                while not done.is_set():
                    s = time.perf_counter()
                    await client.get("/healthz")
                    pings.append((s, time.perf_counter() - s))
                    await asyncio.sleep(0.005)

            pinger = asyncio.create_task(ping())
            await asyncio.sleep(0.05)
            s = time.perf_counter()
            r = await client.post(
                "/v1/knowledge/documents",
                files={"file": ("manual.md", body.encode(), "text/markdown")},
                headers={"API-Token": token},
            )
            upload_s = time.perf_counter() - s
            await asyncio.sleep(0.05)
            done.set()
            await pinger
        doc = r.json()["data"]
        store = Store(sync)
        j = time.perf_counter()
        status = knowledge.index_document(store, doc["id"])
        job_s = time.perf_counter() - j
        indexed = store.run(knowledge.documents.get(doc["id"]))
    sync.close()
    during = [d for start, d in pings if start + d >= s and start <= s + upload_s] or [0.0]
    return {
        "upload_mb": upload_mb,
        "upload_status": doc["status"],
        "upload_request_ms": round(upload_s * 1000, 1),
        "healthz_pings_during_upload": len(during),
        "healthz_during_upload": {**_ms(during), "max_ms": round(max(during) * 1000, 3)},
        "index_job_ms": round(job_s * 1000, 1),
        "index_job_result": f"{status}, {indexed.chunks if indexed else 0} chunks",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.knowledge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--upload-mb", type=float, default=5.0)
    args = parser.parse_args(argv)

    import redis

    from agent_core.store import Store
    from gateway.cli.redis_server import EmbeddedRedis

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(data_dir=Path(tmp), appendonly=False).start()
        try:
            client = redis.Redis.from_url(server.url, decode_responses=True)
            store = Store(client)
            docs, questions = synthetic_documents(args.chunks)
            s = time.perf_counter()
            ids = load_documents(store, docs)
            results["store_documents_ms"] = round((time.perf_counter() - s) * 1000, 1)
            results["retrieval"] = bench_retrieval(store, ids, questions, args.queries)
            results["prompt"] = bench_prompt(store, ids, questions, min(args.queries, 1000))
            client.flushdb()
            if args.upload_mb > 0:
                results["upload"] = asyncio.run(_upload_stall(server.url, args.upload_mb))
            client.close()
        finally:
            server.stop()
    r = results["retrieval"]
    print(f"corpus: {r['chunks']} chunks in {r['documents']} documents (stored in {results['store_documents_ms']} ms)")
    print(f"index build (cold): load chunks {r['load_chunks_from_redis_ms']} ms + BM25 {r['index_build_ms']} ms")
    print(
        f"retrieve (cached index, incl. 1 Redis GET): p50 {r['retrieve_cached']['p50_ms']} ms, "
        f"p99 {r['retrieve_cached']['p99_ms']} ms; in-memory search p50 {r['search_in_memory']['p50_ms']} ms, "
        f"p99 {r['search_in_memory']['p99_ms']} ms"
    )
    print(
        f"quality: top passage is the target for {r['top_passage_is_the_target']:.1%} of questions; "
        f"unrelated questions retrieving anything: {r['unrelated_questions_retrieving_anything']}"
    )
    p = results["prompt"]
    print(
        f"prompt assembly ({p['thread_messages']} messages, {p['system_prompt_chars']} system chars): "
        f"p50 {p['build_messages']['p50_ms']} ms, p99 {p['build_messages']['p99_ms']} ms; "
        f"retrieve + assemble p50 {p['retrieve_plus_build_messages']['p50_ms']} ms, "
        f"p99 {p['retrieve_plus_build_messages']['p99_ms']} ms"
    )
    if "upload" in results:
        u = results["upload"]
        h = u["healthz_during_upload"]
        print(
            f"upload {u['upload_mb']} MB: request {u['upload_request_ms']} ms ({u['upload_status']}); /healthz during "
            f"it: {u['healthz_pings_during_upload']} pings, p50 {h['p50_ms']} ms, max {h['max_ms']} ms; "
            f"indexing job {u['index_job_ms']} ms ({u['index_job_result']})"
        )
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
