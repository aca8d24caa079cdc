"""Knowledge documents in Redis (store operations, run by `Store` or `AsyncStore`).

Keys (prefix `gw:`, named in keys.py):
- `kdoc:{id}` hash: the document (id, name, content_type, chunks, created_at, archived,
  status, size_bytes, sha256, error);
- `kchunks:{id}` list: its chunk texts, written once, in the same step that makes it ready;
- `kraw:{id}`: the text of a document waiting for its indexing job (deleted once indexed);
- `kdocs` sorted set: every document id by creation time (listing order);
- `kdochash:{sha256}`: the latest document with that name and text (idempotent imports);
- `kversion`: incremented by every change that can alter retrieval (a document becoming
  ready or archived), so each process can tell whether its cached indexes are current.
Every write is one Lua script (lua/document_*.lua), so a failed request leaves nothing
half-written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from agent_core.models import ContentType, new_id, now_iso, now_ms
from agent_core.store import keys
from agent_core.store.pages import in_creation_order
from agent_core.store.runner import Batch, Cmd, Lua, Op
from agent_core.store.work import Work

ID_PREFIX = "doc"


class DocumentStatus(StrEnum):
    ready = "ready"
    indexing = "indexing"
    failed = "failed"


class KnowledgeDocument(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    content_type: ContentType
    chunks: int
    created_at: str
    archived: bool
    status: DocumentStatus
    size_bytes: int
    error: str | None = None


def parse_document(h: dict[str, str] | None) -> KnowledgeDocument | None:
    if not h or "id" not in h:
        return None
    return KnowledgeDocument(
        id=h["id"],
        name=h["name"],
        content_type=ContentType(h["content_type"]),
        chunks=int(h.get("chunks") or 0),
        created_at=h["created_at"],
        archived=h.get("archived") == "1",
        status=DocumentStatus(h["status"]),
        size_bytes=int(h.get("size_bytes") or 0),
        error=h.get("error") or None,
    )


def new_document_id() -> str:
    return new_id(ID_PREFIX)


def looks_like_id(value: str) -> bool:
    return value.startswith(ID_PREFIX + "_") and 4 < len(value) <= 64 and value.isprintable()


@dataclass(frozen=True, slots=True)
class CreateResult:
    document: KnowledgeDocument
    created: bool


def _flat(fields: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for k, v in fields.items():
        out += [k, "1" if v is True else "0" if v is False else "" if v is None else str(v)]
    return out


def create(
    *,
    name: str,
    content_type: ContentType,
    text: str,
    sha256: str,
    size_bytes: int,
    chunks: list[str] | None,
    doc_id: str | None = None,
    dedupe: bool = False,
) -> Op[CreateResult]:
    """Store a validated document: `ready` with its chunks, or (`chunks` None) `indexing`
    with its text and an index job queued in the same step.

    With `dedupe`, a live document with the same name and text is returned instead.
    """
    doc_id = doc_id or new_document_id()
    status = DocumentStatus.ready if chunks is not None else DocumentStatus.indexing
    document = KnowledgeDocument(
        id=doc_id,
        name=name,
        content_type=content_type,
        chunks=len(chunks or []),
        created_at=now_iso(),
        archived=False,
        status=status,
        size_bytes=size_bytes,
    )
    fields = _flat({**document.model_dump(mode="json", exclude={"error"}), "sha256": sha256})
    params = {
        "id": doc_id,
        "fields": fields,
        "sha256": sha256,
        "created_ms": now_ms(),
        "dedupe": dedupe,
        "chunks": len(chunks or []),
    }
    reply = yield Lua(
        "document_create",
        json.dumps(params, separators=(",", ":")),
        text if chunks is None else "",
        *(chunks or []),
        work=[Work.index(doc_id)] if chunks is None else [],
    )
    if reply[0] == "exists":
        existing = yield from get(reply[1])
        if existing is not None:
            return CreateResult(existing, created=False)
    if reply[0] != "ok":
        raise RuntimeError(f"document {doc_id} could not be stored ({reply[0]})")
    return CreateResult(document, created=True)


def finish_indexing(doc_id: str, chunks: list[str] | None, error: str | None = None) -> Op[bool]:
    """Store the chunks of an `indexing` document and make it ready (or mark it failed)."""
    status = DocumentStatus.ready if chunks is not None else DocumentStatus.failed
    reply = yield Lua("document_finish", doc_id, status.value, error or "", *(chunks or []))
    return bool(reply)


def pending_text(doc_id: str) -> Op[str | None]:
    raw = yield Cmd("GET", keys.document_text(doc_id))
    return raw  # type: ignore[no-any-return]


def get(doc_id: str) -> Op[KnowledgeDocument | None]:
    h = yield Cmd("HGETALL", keys.document(doc_id))
    return parse_document(h)


def get_many(doc_ids: list[str]) -> Op[list[KnowledgeDocument | None]]:
    if not doc_ids:
        return []
    hs = yield Batch(*(Cmd("HGETALL", keys.document(i)) for i in doc_ids))
    return [parse_document(h) for h in hs]


def archive(doc_id: str) -> Op[KnowledgeDocument | None]:
    """Archive a document (idempotent): it is never retrieved again. None if unknown."""
    found = yield Lua("document_archive", doc_id, now_iso())
    if not found:
        return None
    return (yield from get(doc_id))


def chunk_texts(doc_id: str) -> Op[list[str]]:
    texts = yield Cmd("LRANGE", keys.document_chunks(doc_id), 0, -1)
    return list(texts)


def list_page(
    *, limit: int, cursor: str | None, archived: bool | None = None
) -> Op[tuple[list[KnowledgeDocument], str | None]]:
    """Documents in creation order; the cursor is the last document id of the previous page."""
    return (
        yield from in_creation_order(
            keys.DOCUMENTS,
            get_many,
            lambda d: archived is None or d.archived is archived,
            limit=limit,
            cursor=cursor,
        )
    )


def version() -> Op[int]:
    raw = yield Cmd("GET", keys.DOCUMENTS_VERSION)
    return int(raw or 0)


def check_document_ids(
    doc_ids: list[str], field: str = "knowledge.document_ids", *, allow_archived: bool = False
) -> Op[list[str]]:
    """Validation messages (empty if all good) for document ids an agent wants to attach:
    every unknown (or, unless allowed, archived) id is named with its position."""
    if not doc_ids:
        return []
    docs = yield from get_many([i for i in doc_ids if looks_like_id(i)])
    by_id = {d.id: d for d in docs if d is not None}
    problems = []
    for i, doc_id in enumerate(doc_ids):
        doc = by_id.get(doc_id)
        if doc is None:
            problems.append(f"{field}[{i}]: no document with id '{doc_id[:80]}'")
        elif doc.archived and not allow_archived:
            problems.append(f"{field}[{i}]: document '{doc_id}' is archived")
    return problems


def live_ids(requested: tuple[str, ...]) -> Op[tuple[str, ...]]:
    """The ones of `requested` that are ready and not archived (what retrieval searches)."""
    rows = yield Batch(*(Cmd("HMGET", keys.document(i), "status", "archived") for i in requested))
    return tuple(
        doc_id
        for doc_id, (status, archived) in zip(requested, rows, strict=True)
        if status == DocumentStatus.ready.value and archived != "1"
    )


def names_and_chunks(doc_ids: tuple[str, ...]) -> Op[list[tuple[str, str, list[str]]]]:
    """(id, name, chunk texts) of each document, in one round trip."""
    replies = yield Batch(
        *(Cmd("HGET", keys.document(i), "name") for i in doc_ids),
        *(Cmd("LRANGE", keys.document_chunks(i), 0, -1) for i in doc_ids),
    )
    names, texts = replies[: len(doc_ids)], replies[len(doc_ids) :]
    return [(d, n or d, list(t)) for d, n, t in zip(doc_ids, names, texts, strict=True)]
