"""Knowledge documents in Redis (store operations, run by `Store` or `AsyncStore`).

Keys (prefix `gw:`):
- `kdoc:{id}` hash: the document (id, name, content_type, chunks, created_at, archived,
  status, size_bytes, sha256, error);
- `kchunks:{id}` list: its chunk texts, written once, in the same step that makes it ready;
- `kraw:{id}`: the text of a document waiting for its indexing job (deleted once indexed);
- `kdocs` sorted set: every document id by creation time (listing order);
- `kdochash:{sha256}`: the latest document with that name and text (idempotent imports);
- `kversion`: incremented by every change that can alter retrieval (a document becoming
  ready or archived), so each process can tell whether its cached indexes are current.
Every write is one Lua script, so a failed request leaves nothing half-written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from agent_core.knowledge.parsing import ContentType, DocumentText
from agent_core.models import new_id, now_iso
from agent_core.store import TurnJob, keys
from agent_core.store.runner import Batch, Cmd, Op
from agent_core.store.sessions import now_ms

DOCS = keys.P + "kdocs"
VERSION = keys.P + "kversion"
ID_PREFIX = "doc"


def doc_key(doc_id: str) -> str:
    return f"{keys.P}kdoc:{doc_id}"


def chunks_key(doc_id: str) -> str:
    return f"{keys.P}kchunks:{doc_id}"


def raw_key(doc_id: str) -> str:
    return f"{keys.P}kraw:{doc_id}"


def hash_key(sha256: str) -> str:
    return f"{keys.P}kdochash:{sha256}"


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


# Lua scripts are sent with EVAL (Redis caches them by digest): they belong to this package,
# not to the store's shared script set.
_PUSH = """
local function push_all(key, first)
  for i = first, #ARGV, 1000 do
    redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
end
"""

# KEYS: doc, chunks, raw, docs, version, hash, [job key, job queue]
# ARGV: params JSON, raw text ('' if indexed now), job payload ('' if none), chunk texts...
_CREATE = (
    _PUSH
    + """
local a = cjson.decode(ARGV[1])
if a.dedupe then
  local existing = redis.call('GET', KEYS[6])
  if existing then
    local v = redis.call('HMGET', 'gw:kdoc:' .. existing, 'archived', 'status')
    if v[1] == '0' and v[2] ~= 'failed' then return {'exists', existing} end
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'conflict', a.id} end
redis.call('HSET', KEYS[1], unpack(a.fields))
push_all(KEYS[2], 4)
if ARGV[2] ~= '' then redis.call('SET', KEYS[3], ARGV[2]) end
redis.call('ZADD', KEYS[4], a.created_ms, a.id)
redis.call('SET', KEYS[6], a.id)
if a.job then
  redis.call('HSET', KEYS[7], unpack(a.job.fields))
  redis.call('HSET', KEYS[7], 'data', ARGV[3])
  redis.call('RPUSH', KEYS[8], a.job.id)
  redis.call('SADD', 'rq:queues', KEYS[8])
end
redis.call('INCR', KEYS[5])
return {'ok', a.id}
"""
)

# KEYS: doc, chunks, raw, version. ARGV: status, error, chunk texts...
_FINISH = (
    _PUSH
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'indexing' then return 0 end
redis.call('DEL', KEYS[2])
local n = 0
if ARGV[1] == 'ready' then
  push_all(KEYS[2], 3)
  n = #ARGV - 2
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'chunks', n, 'error', ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('INCR', KEYS[4])
return 1
"""
)

# KEYS: doc, version. ARGV: now_iso
_ARCHIVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'archived') ~= '1' then
  redis.call('HSET', KEYS[1], 'archived', '1', 'archived_at', ARGV[1])
  redis.call('INCR', KEYS[2])
end
return 1
"""


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
    doc: DocumentText,
    *,
    chunks: list[str] | None,
    doc_id: str | None = None,
    job: TurnJob | None = None,
    dedupe: bool = False,
) -> Op[CreateResult]:
    """Store a validated document: `ready` with its chunks, or `indexing` with its text and
    the job (`job`, prepared for this document id) that will chunk it.

    With `dedupe`, a live document with the same name and text is returned instead.
    """
    if chunks is None and job is None:
        raise ValueError("a document without chunks needs an indexing job")
    doc_id = doc_id or new_document_id()
    status = DocumentStatus.ready if chunks is not None else DocumentStatus.indexing
    document = KnowledgeDocument(
        id=doc_id,
        name=doc.name,
        content_type=doc.content_type,
        chunks=len(chunks or []),
        created_at=now_iso(),
        archived=False,
        status=status,
        size_bytes=doc.size_bytes,
    )
    fields = _flat({**document.model_dump(mode="json", exclude={"error"}), "sha256": doc.sha256})
    params: dict[str, Any] = {"id": doc_id, "fields": fields, "created_ms": now_ms(), "dedupe": dedupe}
    script_keys = [doc_key(doc_id), chunks_key(doc_id), raw_key(doc_id), DOCS, VERSION, hash_key(doc.sha256)]
    payload: bytes | str = ""
    if chunks is None and job is not None:
        params["job"] = {"id": job.id, "fields": job.fields}
        script_keys += [job.key, job.queue_key]
        payload = job.data
    reply = yield Cmd(
        "EVAL",
        _CREATE,
        len(script_keys),
        *script_keys,
        json.dumps(params, separators=(",", ":")),
        doc.text if chunks is None else "",
        payload,
        *(chunks or []),
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
    reply = yield Cmd(
        "EVAL",
        _FINISH,
        4,
        doc_key(doc_id),
        chunks_key(doc_id),
        raw_key(doc_id),
        VERSION,
        status.value,
        error or "",
        *(chunks or []),
    )
    return bool(reply)


def pending_text(doc_id: str) -> Op[str | None]:
    raw = yield Cmd("GET", raw_key(doc_id))
    return raw  # type: ignore[no-any-return]


def get(doc_id: str) -> Op[KnowledgeDocument | None]:
    h = yield Cmd("HGETALL", doc_key(doc_id))
    return parse_document(h)


def get_many(doc_ids: list[str]) -> Op[list[KnowledgeDocument | None]]:
    if not doc_ids:
        return []
    hs = yield Batch(*(Cmd("HGETALL", doc_key(i)) for i in doc_ids))
    return [parse_document(h) for h in hs]


def archive(doc_id: str) -> Op[KnowledgeDocument | None]:
    """Archive a document (idempotent): it is never retrieved again. None if unknown."""
    found = yield Cmd("EVAL", _ARCHIVE, 2, doc_key(doc_id), VERSION, now_iso())
    if not found:
        return None
    return (yield from get(doc_id))


def chunk_texts(doc_id: str) -> Op[list[str]]:
    texts = yield Cmd("LRANGE", chunks_key(doc_id), 0, -1)
    return list(texts)


def list_page(
    *, limit: int, cursor: str | None, archived: bool | None = None
) -> Op[tuple[list[KnowledgeDocument], str | None]]:
    """Documents in creation order; the cursor is the last document id of the previous page."""
    start = 0
    if cursor:
        rank = yield Cmd("ZRANK", DOCS, cursor)
        if rank is None:
            raise ValueError("unknown cursor")
        start = int(rank) + 1
    out: list[KnowledgeDocument] = []
    total = int((yield Cmd("ZCARD", DOCS)))
    while len(out) < limit and start < total:
        ids = yield Cmd("ZRANGE", DOCS, start, start + limit * 2 - 1)
        if not ids:
            break
        docs = yield from get_many(list(ids))
        for doc in docs:
            start += 1
            if doc is None or (archived is not None and doc.archived is not archived):
                continue
            out.append(doc)
            if len(out) >= limit:
                break
    return out, (out[-1].id if out and start < total else None)


def version() -> Op[int]:
    raw = yield Cmd("GET", VERSION)
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
