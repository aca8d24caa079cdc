"""Agents as code: `chatgw agents apply agents.yaml` creates or updates agents idempotently.

The file holds a list of agents (or `{agents: [...]}`), each with the keys of
`POST /v1/agents` plus an optional `id`. An entry with an `id` is that agent (created with
that id if new); one without is matched by `name`. Applying the same file twice changes
nothing the second time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent_core.models import Agent, AgentSpec
from agent_core.store import Store, agents
from gateway.errors import validation_messages


class AgentFileError(Exception):
    pass


def load(path: Path) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AgentFileError(f"{path}: no such file") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AgentFileError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(data, dict) and "agents" in data:
        data = data["agents"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise AgentFileError(f"{path}: expected a list of agents (or a mapping with an 'agents' list)")
    return data


def apply_file(store: Store, path: Path) -> list[tuple[str, Agent]]:
    """Validate every entry first (nothing is written if one is bad), then create/update."""
    entries = load(path)
    specs: list[tuple[str | None, AgentSpec]] = []
    problems: list[str] = []
    for i, entry in enumerate(entries):
        entry = dict(entry)
        agent_id = entry.pop("id", None)
        if agent_id is not None and (not isinstance(agent_id, str) or not agent_id.startswith("agent_")):
            problems.append(f"agents[{i}].id: must be a string starting with 'agent_'")
            continue
        try:
            specs.append((agent_id, AgentSpec.model_validate(entry)))
        except ValidationError as exc:
            problems += [f"agents[{i}].{m}" for m in validation_messages(exc)]
    if problems:
        raise AgentFileError(f"{path}: nothing applied:\n  " + "\n  ".join(problems))
    existing = store.run(agents.get_many(store.run(agents.all_ids())))
    by_name = {a.name: a for a in existing}
    by_id = {a.id: a for a in existing}
    results: list[tuple[str, Agent]] = []
    for agent_id, spec in specs:
        current = by_id.get(agent_id) if agent_id else by_name.get(spec.name)
        if current is None:
            res = store.run(agents.create(spec, agent_id=agent_id))
            action = "created"
        elif current.model_dump(include=set(AgentSpec.model_fields)) == spec.model_dump():
            results.append(("unchanged", current))
            continue
        else:
            res = store.run(agents.replace(current.id, spec))
            action = "updated"
        if res.status == "route_taken":
            raise AgentFileError(f"{spec.name}: '{res.route}' already routes to agent '{res.owner}'")
        if res.agent is None:
            raise AgentFileError(f"{spec.name}: could not be saved ({res.status})")
        results.append((action, res.agent))
    return results
