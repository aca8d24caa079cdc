"""Knowledge base: documents (upload, chunking, storage in Redis) and BM25 retrieval.

Used by the agent turn (`retrieve`, `search_tool`), the knowledge API (documents, search),
the agents API (`check_document_ids`) and the CLI (`create_document_from_path`).
"""

from agent_core.knowledge.chunking import MAX_CHUNK_CHARS, chunk_document
from agent_core.knowledge.ingest import (
    INLINE_MAX_BYTES,
    chunks_of,
    create_document_from_path,
    create_document_from_text,
    index_document,
    inline_chunks,
    save,
)
from agent_core.knowledge.parsing import (
    MAX_DOCUMENT_BYTES,
    DocumentError,
    DocumentText,
    messages_of,
    read_text,
    read_upload,
)
from agent_core.knowledge.retrieval import CACHE, Corpus, IndexCache, load_corpus, retrieve
from agent_core.knowledge.tool import search_tool, search_tool_result
from agent_core.models import ContentType
from agent_core.store import documents
from agent_core.store.documents import (
    CreateResult,
    DocumentStatus,
    KnowledgeDocument,
    check_document_ids,
    new_document_id,
)

__all__ = [
    "CACHE",
    "INLINE_MAX_BYTES",
    "MAX_CHUNK_CHARS",
    "MAX_DOCUMENT_BYTES",
    "ContentType",
    "Corpus",
    "CreateResult",
    "DocumentError",
    "DocumentStatus",
    "DocumentText",
    "IndexCache",
    "KnowledgeDocument",
    "check_document_ids",
    "chunk_document",
    "chunks_of",
    "create_document_from_path",
    "create_document_from_text",
    "documents",
    "index_document",
    "inline_chunks",
    "load_corpus",
    "messages_of",
    "new_document_id",
    "read_text",
    "read_upload",
    "retrieve",
    "save",
    "search_tool",
    "search_tool_result",
]
