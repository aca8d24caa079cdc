"""Knowledge API (SPEC §6.2): upload, list, read and archive documents; search them.

Uploads never hold the event loop: decoding, validation and chunking run in the thread
pool, and documents over `INLINE_MAX_BYTES` are stored as text and indexed by a worker job
(status "indexing" until it is done).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from agent_core import knowledge
from agent_core.knowledge import DocumentError, DocumentText, KnowledgeDocument, documents, parsing
from agent_core.models import KnowledgeConfig
from agent_core.store import AsyncStore
from gateway.api.common import load_agent, store_of
from gateway.api.routing import Endpoint, Query, cursor_query
from gateway.auth import ADMIN, OPERATOR
from gateway.errors import NotFound, PayloadTooLarge, Unprocessable, envelope
from gateway.http import limit_param, page, parse_body, query_bool, validate

UPLOAD_PATH = "/v1/knowledge/documents"
# Room for multipart boundaries, part headers and the other form fields around the file.
ENVELOPE_SLACK = 64 * 1024
# The largest request body an upload can need (the app's MAX_BODY_BYTES must allow it on UPLOAD_PATH).
MAX_REQUEST_BYTES = knowledge.MAX_DOCUMENT_BYTES + ENVELOPE_SLACK
MAX_QUERY_CHARS = 2000

# parsing.check_name, .check_text and .detect_content_type as the OpenAPI document states them.
# A name has a non-space character and no control characters but tab and form feed.
_NAME_CHARS = r"\x00-\x08\x0a\x0b\x0d-\x1f\x7f"
NAME_PATTERN = f"^[^{_NAME_CHARS}]*[^\\s{_NAME_CHARS}][^{_NAME_CHARS}]*$"
# Without a specific content_type, a '.pdf' name is refused (PDF is not supported).
PDF_NAME = r"\.[Pp][Dd][Ff][/\\]*$"
# Text has a non-space character and no NUL. The server also refuses text with more than 1% other
# control characters; the document allows none but tab, newline, carriage return and form feed.
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0e-\x1f\x7f]*[^\s\x00-\x08\x0b\x0e-\x1f\x7f][^\x00-\x08\x0b\x0e-\x1f\x7f]*$"
DECLARED_TYPES = sorted(set(parsing.ALIASES) | parsing.GENERIC)


class CreateDocumentBody(BaseModel):
    """A document given as text (JSON); files are uploaded as multipart/form-data instead."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="Shown with every passage retrieved from it",
        max_length=parsing.MAX_NAME_CHARS,
        json_schema_extra={"pattern": NAME_PATTERN, "not": {"pattern": PDF_NAME}},
    )
    text: str = Field(
        description="UTF-8 text. HTML, CSV or Markdown with no text to index (only markup, scripts or "
        "empty rows) is a 422, and so is text with NULs or over 1% other control characters",
        json_schema_extra={"pattern": TEXT_PATTERN},
    )
    content_type: str | None = Field(
        default=None,
        description="text/plain | text/markdown | text/csv | text/html (default: from the name)",
        json_schema_extra={"enum": [*DECLARED_TYPES, None]},
    )


def _one_source_rule(schema: dict[str, Any]) -> None:
    # SearchBody._one_source: exactly one of agent_uuid and document_ids (null counts as absent).
    schema["oneOf"] = [
        {"required": [name], "properties": {name: {"type": kind}}}
        for name, kind in (("agent_uuid", "string"), ("document_ids", "array"))
    ]


class SearchBody(BaseModel):
    """`document_ids` must name stored documents (archived ones too); others are a 422."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_source_rule)

    agent_uuid: str | None = Field(default=None, min_length=1, max_length=100)
    document_ids: list[str] | None = Field(default=None, min_length=1, max_length=200)
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, json_schema_extra={"pattern": r"\S"})
    top_k: int | None = Field(default=None, ge=1, le=20)
    relevance_threshold: float | None = Field(default=None, ge=0, le=1)

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> SearchBody:
        if (self.agent_uuid is None) == (self.document_ids is None):
            raise ValueError("give exactly one of agent_uuid and document_ids")
        return self


class Passage(BaseModel):
    document_id: str
    document_name: str
    text: str
    score: float


class SearchResult(BaseModel):
    items: list[Passage]


def upload_limit(request: Request) -> int:
    """MAX_DOCUMENT_BYTES, unless the app sets `state.knowledge_max_bytes`."""
    return int(getattr(request.app.state, "knowledge_max_bytes", knowledge.MAX_DOCUMENT_BYTES))


def _too_large(field: str, size: int, limit: int) -> str:
    return f"{field}: {parsing.human_size(size)} is larger than the {parsing.human_size(limit)} document limit"


def _rejected(exc: DocumentError) -> Exception:
    messages = knowledge.messages_of(exc)
    return PayloadTooLarge(*messages) if exc.too_large else Unprocessable(*messages)


def _prepare_upload(
    raw: bytes, name: str | None, declared: str | None, filename: str | None, limit: int
) -> tuple[DocumentText, list[str] | None]:
    doc = knowledge.read_upload(raw, name=name, declared_type=declared, filename=filename, limit=limit)
    return doc, knowledge.inline_chunks(doc, "file")


def _prepare_json(raw: bytes, limit: int) -> tuple[DocumentText, list[str] | None]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Unprocessable(f"body: not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise Unprocessable(f"body: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(value, dict):
        raise Unprocessable("body: must be a JSON object")
    body = validate(CreateDocumentBody, value)
    doc = knowledge.read_text(body.text, name=body.name, content_type=body.content_type, limit=limit)
    return doc, knowledge.inline_chunks(doc, "text")


async def _read_multipart(request: Request, limit: int) -> tuple[DocumentText, list[str] | None]:
    async with request.form(max_files=1, max_fields=10, max_part_size=64 * 1024) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Unprocessable("file: a file part named 'file' is required")
        name = form.get("name")
        declared = form.get("content_type")
        if name is not None and not isinstance(name, str):
            raise Unprocessable("name: must be a text field")
        if declared is not None and not isinstance(declared, str):
            raise Unprocessable("content_type: must be a text field")
        if upload.size is not None and upload.size > limit:
            parsing.check_size(upload.size, limit)
        raw = await upload.read(limit + 1)
        return await run_in_threadpool(
            _prepare_upload, raw, name or None, declared or upload.content_type, upload.filename, limit
        )


async def create_document(request: Request) -> Response:
    limit = upload_limit(request)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + ENVELOPE_SLACK:
        raise PayloadTooLarge(_too_large("body", int(length), limit))
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if ctype == "multipart/form-data":
            doc, chunks = await _read_multipart(request, limit)
        elif ctype in ("", "application/json") or ctype.endswith("+json"):
            raw = await request.body()
            if not raw.strip():
                raise Unprocessable("body: a JSON object {name, text} or a multipart file upload is required")
            if len(raw) > limit + ENVELOPE_SLACK:
                raise PayloadTooLarge(_too_large("body", len(raw), limit))
            doc, chunks = await run_in_threadpool(_prepare_json, raw, limit)
        else:
            raise Unprocessable(
                f"body: expected multipart/form-data (a 'file' part) or application/json, got '{ctype}'"
            )
    except DocumentError as exc:
        raise _rejected(exc) from None
    result = await store_of(request).run(knowledge.save(doc, chunks=chunks))
    return envelope(result.document.model_dump(mode="json"))


async def list_documents(request: Request) -> Response:
    archived = query_bool(request, "archived")
    try:
        items, cursor = await store_of(request).run(
            documents.list_page(
                limit=limit_param(request), cursor=request.query_params.get("cursor"), archived=archived
            )
        )
    except ValueError:
        raise Unprocessable("cursor: not a cursor this API issued") from None
    return envelope(page([d.model_dump(mode="json") for d in items], cursor))


async def _load(store: AsyncStore, doc_id: str) -> KnowledgeDocument:
    doc = await store.run(documents.get(doc_id)) if documents.looks_like_id(doc_id) else None
    if doc is None:
        raise NotFound(f"document_id: no document with id '{doc_id[:80]}'")
    return doc


async def get_document(request: Request) -> Response:
    doc = await _load(store_of(request), request.path_params["document_id"])
    return envelope(doc.model_dump(mode="json"))


async def delete_document(request: Request) -> Response:
    store = store_of(request)
    doc_id = request.path_params["document_id"]
    await _load(store, doc_id)
    doc = await store.run(documents.archive(doc_id))
    if doc is None:
        raise NotFound(f"document_id: no document with id '{doc_id[:80]}'")
    return envelope(doc.model_dump(mode="json"))


async def search(request: Request) -> Response:
    """Exactly what retrieval gives an agent (or a set of documents) for a query."""
    body = await parse_body(request, SearchBody)
    store = store_of(request)
    if body.agent_uuid is not None:
        agent = await load_agent(store, body.agent_uuid)
        doc_ids = agent.knowledge.document_ids
        top_k = body.top_k or agent.knowledge.top_k
        threshold = body.relevance_threshold
        if threshold is None:
            threshold = agent.knowledge.relevance_threshold
    else:
        doc_ids = body.document_ids or []
        problems = await store.run(documents.check_document_ids(doc_ids, field="document_ids", allow_archived=True))
        if problems:
            raise Unprocessable(*problems)
        defaults = KnowledgeConfig()
        top_k = body.top_k or defaults.top_k
        threshold = defaults.relevance_threshold if body.relevance_threshold is None else body.relevance_threshold
    corpus = await store.run(knowledge.load_corpus(doc_ids))
    # Building an index that is not cached yet is CPU work: keep it off the event loop.
    passages = await run_in_threadpool(corpus.search, body.query, top_k, threshold)
    items = [
        {"document_id": p.document_id, "document_name": p.document_name, "text": p.text, "score": p.score}
        for p in passages
    ]
    return envelope({"items": items})


DOCUMENT_PAGE = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/KnowledgeDocument"}},
        "next_cursor": {"type": ["string", "null"]},
    },
}

ENDPOINTS = [
    Endpoint(
        "POST",
        UPLOAD_PATH,
        create_document,
        "Upload a document: multipart/form-data (a 'file' part, optional 'name') or JSON {name, text}",
        ADMIN,
        "knowledge",
        body=CreateDocumentBody,
        response=KnowledgeDocument,
        errors=(401, 403, 413, 422),
    ),
    Endpoint(
        "GET",
        "/v1/knowledge/documents",
        list_documents,
        "List documents (creation order)",
        OPERATOR,
        "knowledge",
        response=DOCUMENT_PAGE,
        query=(
            Query("archived", "true | false", {"type": "boolean"}),
            Query("limit", "Page size (1-200, default 50)", {"type": "integer", "minimum": 1, "maximum": 200}),
            cursor_query("the last document's id"),
        ),
    ),
    Endpoint(
        "GET",
        "/v1/knowledge/documents/{document_id}",
        get_document,
        "A document",
        OPERATOR,
        "knowledge",
        description="Archived documents are still answered (archived: true).",
        response=KnowledgeDocument,
    ),
    Endpoint(
        "DELETE",
        "/v1/knowledge/documents/{document_id}",
        delete_document,
        "Archive a document (it is never retrieved again)",
        ADMIN,
        "knowledge",
        description="Archives, it does not erase: the document stays readable and listed (archived: true) "
        "and agents no longer retrieve from it. DELETE again answers the same.",
        response={
            "allOf": [
                {"$ref": "#/components/schemas/KnowledgeDocument"},
                {"properties": {"archived": {"const": True}}},
            ]
        },
    ),
    Endpoint(
        "POST",
        "/v1/knowledge/search",
        search,
        "What retrieval returns for a query (debugging): an agent's documents or the given ones",
        OPERATOR,
        "knowledge",
        body=SearchBody,
        response=SearchResult,
    ),
]
