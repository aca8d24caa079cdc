"""Retrieval over a set of documents, with BM25 indexes cached per process.

Chunks live in Redis (shared by every process, kept across restarts); each process builds
the BM25 index of a document set from them once and keeps it in memory:

- A ready document's chunks never change (documents are immutable; they can only be
  archived), so an index is keyed by the ids of the live documents it covers.
- Which of an agent's documents are live (ready, not archived) is cached per process under
  the Redis `kversion` counter, which every document change increments atomically with the
  change. A retrieval reads that counter (one round trip); only when it moved does it read
  the documents' states again. So an archive in any process takes effect in all of them at
  their next retrieval, and steady-state retrieval costs one GET plus the in-memory search.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from agent_core.knowledge.index import Chunk, ChunkIndex
from agent_core.llm.base import Passage
from agent_core.models import KnowledgeConfig
from agent_core.store import Op, Store, documents

MAX_CACHED_INDEXES = 32
# Bounds the memory of cached indexes (about 2.5 MB per 1,000 chunks, chunk texts included).
MAX_CACHED_CHUNKS = 100_000
MAX_RESOLVED = 4096


class IndexCache:
    """Per-process, thread-safe: resolved live-document sets and built indexes (LRU)."""

    def __init__(self, max_indexes: int = MAX_CACHED_INDEXES, max_chunks: int = MAX_CACHED_CHUNKS) -> None:
        self.max_indexes = max_indexes
        self.max_chunks = max_chunks
        self._lock = threading.Lock()
        self._resolved: dict[tuple[str, ...], tuple[int, tuple[str, ...]]] = {}
        self._indexes: OrderedDict[tuple[str, ...], ChunkIndex] = OrderedDict()
        self._chunks = 0

    def resolved(self, requested: tuple[str, ...], version: int) -> tuple[str, ...] | None:
        with self._lock:
            hit = self._resolved.get(requested)
        return hit[1] if hit is not None and hit[0] == version else None

    def remember(self, requested: tuple[str, ...], version: int, live: tuple[str, ...]) -> None:
        with self._lock:
            if len(self._resolved) >= MAX_RESOLVED:
                self._resolved.clear()
            self._resolved[requested] = (version, live)

    def index(self, live: tuple[str, ...]) -> ChunkIndex | None:
        with self._lock:
            found = self._indexes.get(live)
            if found is not None:
                self._indexes.move_to_end(live)
            return found

    def store(self, live: tuple[str, ...], index: ChunkIndex) -> ChunkIndex:
        with self._lock:
            existing = self._indexes.get(live)
            if existing is not None:
                return existing
            self._indexes[live] = index
            self._chunks += index.size
            while len(self._indexes) > 1 and (len(self._indexes) > self.max_indexes or self._chunks > self.max_chunks):
                _, evicted = self._indexes.popitem(last=False)
                self._chunks -= evicted.size
            return index

    def clear(self) -> None:
        with self._lock:
            self._resolved.clear()
            self._indexes.clear()
            self._chunks = 0


CACHE = IndexCache()


@dataclass(frozen=True)
class Corpus:
    """The live documents of a request and their index (built on first use if not cached)."""

    live: tuple[str, ...]
    cache: IndexCache
    cached: ChunkIndex | None = None
    chunks: tuple[Chunk, ...] = ()

    def index(self) -> ChunkIndex:
        """The BM25 index (CPU-bound when not cached: run it off the event loop)."""
        if self.cached is not None:
            return self.cached
        return self.cache.store(self.live, ChunkIndex(self.chunks))

    def search(self, query: str, top_k: int, threshold: float) -> list[Passage]:
        if not self.live or not query.strip():
            return []
        return [hit.passage() for hit in self.index().search(query, top_k, threshold)]


def load_corpus(doc_ids: list[str], cache: IndexCache = CACHE) -> Op[Corpus]:
    """What searching `doc_ids` needs from Redis: at least one GET, and the live documents'
    chunks only when this process has no index for them yet."""
    requested = tuple(sorted(set(doc_ids)))
    if not requested:
        return Corpus((), cache)
    version = yield from documents.version()
    live = cache.resolved(requested, version)
    if live is None:
        live = yield from documents.live_ids(requested)
        # Cached under the version read before the states: a change in between only makes
        # the next retrieval read them again.
        cache.remember(requested, version, live)
    if not live:
        return Corpus((), cache)
    index = cache.index(live)
    if index is not None:
        return Corpus(live, cache, cached=index)
    rows = yield from documents.names_and_chunks(live)
    chunks = tuple(Chunk(doc_id, name, text) for doc_id, name, texts in rows for text in texts)
    return Corpus(live, cache, chunks=chunks)


def retrieve(store: Store, config: KnowledgeConfig, query: str, cache: IndexCache = CACHE) -> list[Passage]:
    """The agent's passages for `query`: top_k of its live documents above its threshold."""
    if not config.document_ids or not query.strip():
        return []
    corpus = store.run(load_corpus(config.document_ids, cache))
    return corpus.search(query, config.top_k, config.relevance_threshold)
