"""Turning validated documents into stored, searchable ones: inline when small, by a job when large."""

from __future__ import annotations

from pathlib import Path

from agent_core.knowledge.chunking import chunk_document
from agent_core.knowledge.parsing import (
    MAX_DOCUMENT_BYTES,
    DocumentError,
    DocumentText,
    check_size,
    read_text,
    read_upload,
)
from agent_core.store import Op, Store, documents
from agent_core.store.documents import CreateResult, DocumentStatus

# Documents up to this size are chunked while the upload request waits (a few ms of CPU);
# larger ones are stored as text and chunked by a worker job.
INLINE_MAX_BYTES = 256 * 1024


def chunks_of(doc: DocumentText, field: str = "file") -> list[str]:
    """The document's chunks; a document with no indexable text is refused."""
    chunks = chunk_document(doc.text, doc.content_type)
    if not chunks:
        raise DocumentError(f"{field}: has no text to index (only markup, scripts or empty rows)")
    return chunks


def inline_chunks(doc: DocumentText, field: str = "file") -> list[str] | None:
    """Chunks now for a small document, None when it should go to the indexing job."""
    return chunks_of(doc, field) if doc.size_bytes <= INLINE_MAX_BYTES else None


def save(
    doc: DocumentText, *, chunks: list[str] | None, doc_id: str | None = None, dedupe: bool = False
) -> Op[CreateResult]:
    """Store a validated document: ready with `chunks`, or (None) indexing, its index job
    queued in the same write. With `dedupe`, a live one with the same name and text is kept."""
    return documents.create(
        name=doc.name,
        content_type=doc.content_type,
        text=doc.text,
        sha256=doc.sha256,
        size_bytes=doc.size_bytes,
        chunks=chunks,
        doc_id=doc_id,
        dedupe=dedupe,
    )


def index_document(store: Store, doc_id: str) -> str:
    """Chunk an `indexing` document's stored text and make it ready (the job's body).

    Idempotent: a document that is not indexing any more is left alone.
    """
    doc = store.run(documents.get(doc_id))
    if doc is None:
        return "missing"
    if doc.status is not DocumentStatus.indexing:
        return doc.status.value
    text = store.run(documents.pending_text(doc_id))
    if text is None:
        store.run(documents.finish_indexing(doc_id, None, "the document's text was lost before indexing"))
        return DocumentStatus.failed.value
    chunks = chunk_document(text, doc.content_type)
    if not chunks:
        store.run(documents.finish_indexing(doc_id, None, "no text to index (only markup, scripts or empty rows)"))
        return DocumentStatus.failed.value
    store.run(documents.finish_indexing(doc_id, chunks))
    return DocumentStatus.ready.value


def create_document_from_path(
    store: Store, path: Path, name: str | None = None, limit: int = MAX_DOCUMENT_BYTES
) -> CreateResult:
    """Import a file (for `chatgw agents apply`): validated, chunked here, stored ready.

    Idempotent by name and content: importing the same file again returns the document it
    created before (`created` False) unless that one was archived.
    Raises DocumentError (with the path in the message) for a missing or unacceptable file.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    check_size(size, limit, str(path))
    try:
        raw = path.read_bytes()
        doc = read_upload(raw, name=name or path.name, declared_type=None, filename=path.name, limit=limit)
        chunks = chunks_of(doc)
    except DocumentError as exc:
        raise DocumentError(f"{path}: {str(exc).removeprefix('file: ')}", too_large=exc.too_large) from None
    except OSError as exc:
        raise DocumentError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return store.run(save(doc, chunks=chunks, dedupe=True))


def create_document_from_text(
    store: Store, name: str, text: str, content_type: str | None = None, limit: int = MAX_DOCUMENT_BYTES
) -> CreateResult:
    """Import a document given as text (seeding a demo agent, config files): chunked here,
    stored ready, idempotent by name and content like `create_document_from_path`."""
    doc = read_text(text, name=name, content_type=content_type, limit=limit)
    return store.run(save(doc, chunks=chunks_of(doc, "text"), dedupe=True))
