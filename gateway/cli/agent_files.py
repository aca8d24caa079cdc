"""Agents as code: `chatgw agents apply agents.yaml` creates or updates agents idempotently.

The file holds a list of agents (or `{agents: [...]}`), each with the keys of
`POST /v1/agents` plus an optional `id`. An entry with an `id` is that agent (created with
that id if new); one without is matched by `name`. `knowledge.files` lists documents by
path (relative to the file); they are imported once (by name and content) and attached.
Applying the same file twice changes nothing the second time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent_core import knowledge
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
    specs: list[tuple[str | None, AgentSpec, list[Path]]] = []
    problems: list[str] = []
    for i, entry in enumerate(entries):
        entry = dict(entry)
        agent_id = entry.pop("id", None)
        files, file_problems = _knowledge_files(entry, path.parent, f"agents[{i}].knowledge.files")
        problems += file_problems
        if agent_id is not None and (not isinstance(agent_id, str) or not agent_id.startswith("agent_")):
            problems.append(f"agents[{i}].id: must be a string starting with 'agent_'")
            continue
        try:
            spec = AgentSpec.model_validate(entry)
        except ValidationError as exc:
            problems += [f"agents[{i}].{m}" for m in validation_messages(exc)]
            continue
        if spec.knowledge.document_ids:
            problems += store.run(
                knowledge.check_document_ids(list(spec.knowledge.document_ids), f"agents[{i}].knowledge.document_ids")
            )
        specs.append((agent_id, spec, files))
    if problems:
        raise AgentFileError(f"{path}: nothing applied:\n  " + "\n  ".join(problems))
    existing = store.run(agents.get_many(store.run(agents.all_ids())))
    by_name = {a.name: a for a in existing}
    by_id = {a.id: a for a in existing}
    results: list[tuple[str, Agent]] = []
    for agent_id, spec, files in specs:
        if files:
            doc_ids = list(spec.knowledge.document_ids)
            for file in files:
                doc_id = knowledge.create_document_from_path(store, file).document.id
                if doc_id not in doc_ids:
                    doc_ids.append(doc_id)
            spec = spec.model_copy(update={"knowledge": spec.knowledge.model_copy(update={"document_ids": doc_ids})})
        current = by_id.get(agent_id) if agent_id else by_name.get(spec.name)
        if current is None:
            res = store.run(agents.create(spec, agent_id=agent_id))
            action = "created"
        elif current.model_dump(include=set(AgentSpec.model_fields)) == _keyed_like(spec, current).model_dump():
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


def _keyed_like(spec: AgentSpec, current: Agent) -> AgentSpec:
    """`spec` with the widget key the stored agent has (a file never sets it; the store keeps it)."""
    widget = spec.widget.model_copy(update={"public_key": current.widget.public_key})
    return spec.model_copy(update={"widget": widget})


def _knowledge_files(entry: dict[str, Any], base: Path, where: str) -> tuple[list[Path], list[str]]:
    """Take `knowledge.files` out of an entry; check every file can be imported."""
    section = entry.get("knowledge")
    if not isinstance(section, dict) or "files" not in section:
        return [], []
    section = dict(section)
    raw = section.pop("files")
    entry["knowledge"] = section
    if not isinstance(raw, list) or not all(isinstance(f, str) for f in raw):
        return [], [f"{where}: must be a list of file paths"]
    files, problems = [], []
    for name in raw:
        file = (base / name).resolve()
        try:
            knowledge.read_upload(file.read_bytes(), name=file.name, declared_type=None, filename=file.name)
        except OSError as exc:
            problems.append(f"{where}: {name}: cannot be read ({exc.strerror or exc})")
            continue
        except knowledge.DocumentError as exc:
            problems.append(f"{where}: {name}: {str(exc).removeprefix('file: ')}")
            continue
        files.append(file)
    return files, problems
