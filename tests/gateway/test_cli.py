"""`chatgw tokens` and `chatgw agents` against a real Redis."""

from __future__ import annotations

from pathlib import Path

from agent_core.store import Store, agents, tokens
from tests import procs


def test_tokens_create_prints_the_token_alone_on_the_last_line(redis_url: str, store: Store, tmp_path: Path) -> None:
    environ = procs.env(REDIS_URL=redis_url)
    out = procs.chatgw(
        "tokens", "create", "--name", "alice@example.com", "--role", "operator", environ=environ, cwd=tmp_path
    )
    token = out.rstrip("\n").splitlines()[-1]
    assert token.startswith("cgw_") and " " not in token
    record = store.run(tokens.lookup(token))
    assert record is not None and record.name == "alice@example.com" and record.role.value == "operator"
    listing = procs.chatgw("tokens", "list", environ=environ, cwd=tmp_path)
    assert "alice@example.com" in listing and token not in listing
    procs.chatgw("tokens", "revoke", "alice@example.com", environ=environ, cwd=tmp_path)
    assert store.run(tokens.lookup(token)) is None


AGENTS_YAML = """
agents:
  - id: agent_support
    name: Support
    welcome_message: Hello!
    channels: {numbers: ["+15550004444"]}
  - name: Sales
    prompt: {type: single, text: You sell things.}
"""


def test_agents_apply_twice_gives_the_same_agents(redis_url: str, store: Store, tmp_path: Path) -> None:
    environ = procs.env(REDIS_URL=redis_url)
    path = tmp_path / "agents.yaml"
    path.write_text(AGENTS_YAML)
    first = procs.chatgw("agents", "apply", str(path), environ=environ, cwd=tmp_path)
    assert first.count("created") == 2
    second = procs.chatgw("agents", "apply", str(path), environ=environ, cwd=tmp_path)
    assert second.count("unchanged") == 2
    listed = store.run(agents.get_many(store.run(agents.all_ids())))
    assert sorted(a.name for a in listed) == ["Sales", "Support"]
    assert store.run(agents.get("agent_support")) is not None


def test_agents_apply_rejects_a_bad_file_and_writes_nothing(redis_url: str, store: Store, tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "bad.yaml"
    path.write_text("- name: Good\n- name: ''\n  llm: {temperature: 9}\n")
    out = subprocess.run(
        [str(procs.BIN / "chatgw"), "agents", "apply", str(path)],
        env=procs.env(REDIS_URL=redis_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "agents[1].name: String should have at least 1 character" in out.stderr
    assert "agents[1].llm.temperature" in out.stderr
    assert store.run(agents.all_ids()) == []
