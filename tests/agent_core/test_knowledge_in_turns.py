"""Knowledge reaches the agent: retrieved passages in the prompt, the search tool, the offline
responder, and agents that reference documents (API and `agents apply`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from agent_core.store import Store, agents
from tests import procs
from tests.fakes import FakeLLM, completion
from tests.helpers import send

FAQ = """# Returns
You can return unused items within 30 days of delivery for a full refund. We email a prepaid label.

# Shipping
Standard shipping takes 3 to 5 business days. Express shipping takes 1 to 2 business days.
"""


def upload(client: TestClient, admin: dict[str, str], text: str = FAQ, name: str = "Help center") -> str:
    r = client.post(
        "/v1/knowledge/documents", json={"name": name, "text": text, "content_type": "text/markdown"}, headers=admin
    )
    assert r.status_code == 200, r.text
    return r.json()["data"]["id"]  # type: ignore[no-any-return]


class TestWithModel:
    @pytest.fixture
    def llm_key(self) -> str:
        return "sk-test"

    def test_retrieved_passage_is_in_the_prompt_and_unrelated_questions_get_none(
        self, client: TestClient, admin: dict[str, str], fake_llm: FakeLLM, workers: Any
    ) -> None:
        doc = upload(client, admin)
        agent = client.post(
            "/v1/agents", json={"name": "A", "knowledge": {"document_ids": [doc]}}, headers=admin
        ).json()["data"]
        send(client, admin, agent["id"], "How long does express shipping take?", customer="c")
        system = fake_llm.requests[-1]["messages"][0]["content"]
        assert "Relevant knowledge" in system and "[Help center]" in system
        assert "Express shipping takes 1 to 2 business days" in system
        send(client, admin, agent["id"], "Who won the football match yesterday?", customer="c")
        assert "Relevant knowledge" not in fake_llm.requests[-1]["messages"][0]["content"]
        assert "search_knowledge" in {t["function"]["name"] for t in fake_llm.requests[-1]["tools"]}

    def test_search_knowledge_tool_returns_passages_to_the_model(
        self, client: TestClient, admin: dict[str, str], fake_llm: FakeLLM, workers: Any
    ) -> None:
        doc = upload(client, admin)
        agent = client.post(
            "/v1/agents", json={"name": "A", "knowledge": {"document_ids": [doc]}}, headers=admin
        ).json()["data"]

        def handler(body: dict[str, Any]) -> dict[str, Any]:
            if body["messages"][-1]["role"] == "tool":
                return completion("found: " + body["messages"][-1]["content"])
            return completion(None, [("search_knowledge", {"query": "refund prepaid label"})])

        fake_llm.handler = handler
        reply = send(client, admin, agent["id"], "hello", customer="c")["reply"]
        assert reply.startswith("found: ") and "prepaid label" in reply and "Help center" in reply

    def test_archived_documents_are_no_longer_retrieved(
        self, client: TestClient, admin: dict[str, str], fake_llm: FakeLLM, workers: Any
    ) -> None:
        doc = upload(client, admin)
        agent = client.post(
            "/v1/agents", json={"name": "A", "knowledge": {"document_ids": [doc]}}, headers=admin
        ).json()["data"]
        send(client, admin, agent["id"], "How long does standard shipping take?", customer="c")
        assert "3 to 5 business days" in fake_llm.requests[-1]["messages"][0]["content"]
        assert client.delete(f"/v1/knowledge/documents/{doc}", headers=admin).status_code == 200
        send(client, admin, agent["id"], "How long does standard shipping take?", customer="c")
        assert "3 to 5 business days" not in fake_llm.requests[-1]["messages"][0]["content"]


def test_offline_responder_answers_from_knowledge(client: TestClient, admin: dict[str, str], workers: Any) -> None:
    doc = upload(client, admin)
    agent = client.post("/v1/agents", json={"name": "A", "knowledge": {"document_ids": [doc]}}, headers=admin).json()[
        "data"
    ]
    reply = send(client, admin, agent["id"], "Can I return an item for a refund?", customer="c")["reply"]
    assert reply.startswith("Here's what I found in Help center:") and "30 days" in reply


def test_agents_reject_unknown_documents(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/v1/agents", json={"name": "A", "knowledge": {"document_ids": ["doc_nope"]}}, headers=admin)
    assert r.status_code == 422
    assert r.json()["errors"] == ["knowledge.document_ids[0]: no document with id 'doc_nope'"]


def test_agents_apply_attaches_knowledge_files_once(redis_url: str, store: Store, tmp_path: Path) -> None:
    (tmp_path / "faq.md").write_text(FAQ)
    path = tmp_path / "agents.yaml"
    path.write_text("- id: agent_kb\n  name: KB\n  knowledge: {files: [faq.md], top_k: 2}\n")
    environ = procs.env(REDIS_URL=redis_url)
    for _ in range(2):
        procs.chatgw("agents", "apply", str(path), environ=environ, cwd=tmp_path)
    agent = store.run(agents.get("agent_kb"))
    assert agent is not None and len(agent.knowledge.document_ids) == 1 and agent.knowledge.top_k == 2
    import redis

    docs = [k for k in redis.Redis.from_url(redis_url, decode_responses=True).scan_iter("gw:kdoc:*")]
    assert len({d.split(":")[2] for d in docs}) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: Bad\n  knowledge: {files: [missing.md]}\n")
    import subprocess

    out = subprocess.run(
        [str(procs.BIN / "chatgw"), "agents", "apply", str(bad)],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "agents[0].knowledge.files: missing.md: cannot be read" in out.stderr


def test_demo_agent_knows_the_help_center(
    store: Store, client: TestClient, admin: dict[str, str], workers: Any
) -> None:
    from gateway.cli.demo import ensure_demo

    assert ensure_demo(store) == ensure_demo(store) == "agent_demo"
    reply = send(client, admin, "agent_demo", "how much does express shipping cost?", customer="c")["reply"]
    assert "$14.99" in reply
