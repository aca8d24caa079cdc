"""BM25 ranking (bm25s) over a fixed set of chunks, with scores normalised per query to 0..1.

Raw BM25 scores have no fixed scale (they grow with the number of query terms and with the
corpus size), so a relevance threshold in 0..1 needs a per-query normalisation:

    score(chunk) = min(1, raw(chunk) / max(raw(best chunk), FULL_MATCH * reference(query)))

`reference(query)` is the raw score an average-length chunk would get if it contained every
query term once: the sum of the terms' idf times the tf part at tf=1 (1 / (1 + k1)). Query
terms no chunk contains count with UNKNOWN_TERM_WEIGHT times the idf of a term found in one
chunk: words the documents never use are evidence the question is about something else.

- A question the documents answer: the best chunk matches at least FULL_MATCH of the
  query's weight, so scores are plain divide-by-top: the best scores 1.0, others their share.
- An unrelated question that shares a word or two with the documents: the best chunk covers
  a small part of the query's weight, the reference wins and every score stays low.
- Absolute floor: if the best chunk scores less than MIN_EVIDENCE times the raw score of
  one *specific* term (a term found in 2% of the chunks, or in one chunk for corpora under
  50 chunks) in an average-length chunk, nothing is returned: a match on words that are
  common in these documents ("name" in every row of a product table) is not evidence,
  however short the question.

Both the reference and the floor are in units of this corpus's own idf, so they mean the
same for a ten-chunk FAQ and a 10,000-chunk manual (a raw BM25 cut-off would not). With the
default threshold 0.3 a good match typically scores 1.0 and an unrelated question nothing. Lexical
matching has known blind spots: a question sharing a specific word with the documents in
another sense ("rain" vs "rain jacket") is retrieved, and a paraphrase with no shared word
("money back" for "refund") is not; the model still judges the passages it is given.
Constants were chosen on a small FAQ, a 10,000-chunk synthetic help center
(bench/knowledge.py) and sets of answered and unrelated questions.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent_core.llm.base import Passage

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

K1 = 1.5
B = 0.75
FULL_MATCH = 0.5
UNKNOWN_TERM_WEIGHT = 0.5
MIN_EVIDENCE = 0.75
# Share of the chunks a term may appear in and still count as specific evidence.
SPECIFIC_SHARE = 0.02
# The tf part of BM25 for a term found once in an average-length chunk.
SATURATION = 1.0 / (1.0 + K1)
TOKEN = re.compile(r"(?u)\b\w\w+\b")
# Chat filler: greetings and politeness carry no topic, yet customers' questions are full of them.
CHAT_FILLER = frozenset(
    [
        "hi",
        "hello",
        "hey",
        "hiya",
        "thanks",
        "thank",
        "thx",
        "please",
        "pls",
        "ok",
        "okay",
        "yes",
        "yeah",
        "yep",
        "no",
        "nope",
        "sure",
        "like",
        "want",
        "wanted",
        "would",
        "could",
        "also",
        "just",
        "really",
        "get",
        "got",
        "know",
        "tell",
        "need",
        "help",
        "question",
    ]
)


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS) | CHAT_FILLER


class Tokenizer:
    """Lower-cased word tokens without stop words, Snowball-stemmed (PyStemmer)."""

    def __init__(self) -> None:
        self.stopwords = _stopwords()
        self._local = threading.local()

    def _stemmer(self) -> Any:
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            import Stemmer

            # One per thread: a Snowball stemmer keeps per-call state.
            stemmer = self._local.stemmer = Stemmer.Stemmer("english")
        return stemmer

    def __call__(self, text: str) -> list[str]:
        words = [w for w in TOKEN.findall(text.lower()) if w not in self.stopwords]
        return self._stemmer().stemWords(words)  # type: ignore[no-any-return]

    def many(self, texts: Sequence[str]) -> list[list[str]]:
        stem = self._stemmer().stemWords
        stop = self.stopwords
        return [stem([w for w in TOKEN.findall(t.lower()) if w not in stop]) for t in texts]


_tokenizer: Tokenizer | None = None
_tokenizer_lock = threading.Lock()


def tokenizer() -> Tokenizer:
    global _tokenizer
    with _tokenizer_lock:
        if _tokenizer is None:
            _tokenizer = Tokenizer()
        return _tokenizer


@dataclass(frozen=True, slots=True)
class Chunk:
    document_id: str
    document_name: str
    text: str


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: Chunk
    raw: float
    score: float

    def passage(self) -> Passage:
        return Passage(self.chunk.document_id, self.chunk.document_name, self.chunk.text, round(self.score, 4))


def idf(df: float, n: int) -> float:
    """Lucene's BM25 idf (what bm25s's "lucene" method uses)."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


class ChunkIndex:
    """BM25 over a fixed list of chunks; immutable once built, safe to share between threads."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        import bm25s

        self.chunks = list(chunks)
        self.size = len(self.chunks)
        corpus = tokenizer().many([c.text for c in self.chunks])
        # Chunks made only of stop words leave nothing to rank (and BM25 would divide by a zero length).
        self.searchable = any(corpus)
        self._bm25 = bm25s.BM25(k1=K1, b=B, method="lucene")
        if self.searchable:
            self._bm25.index(corpus, show_progress=False)
            indptr = self._bm25.scores["indptr"]
            self._df = indptr[1:] - indptr[:-1]

    def scores(self, query: str) -> tuple[npt.NDArray[np.float32], float]:
        """(raw BM25 score of every chunk, the query's reference score) for `query`."""
        import numpy as np

        terms = set(tokenizer()(query))
        if not self.searchable or not terms:
            return np.zeros(self.size, dtype=np.float32), 0.0
        vocab: dict[str, int] = self._bm25.vocab_dict
        ids = [vocab[t] for t in terms if t in vocab]
        unknown = len(terms) - len(ids)
        weight = sum(idf(float(self._df[i]), self.size) for i in ids) + unknown * UNKNOWN_TERM_WEIGHT * self.rare_idf
        if not ids:
            return np.zeros(self.size, dtype=np.float32), weight * SATURATION
        return self._bm25.get_scores_from_ids(ids), weight * SATURATION

    @property
    def rare_idf(self) -> float:
        """The idf of a term found in a single chunk."""
        return idf(1.0, self.size)

    @property
    def floor(self) -> float:
        """The raw score the best chunk needs for anything to be returned (see the module doc)."""
        return MIN_EVIDENCE * idf(max(1.0, SPECIFIC_SHARE * self.size), self.size) * SATURATION

    def search(self, query: str, top_k: int, threshold: float) -> list[Hit]:
        """The `top_k` best chunks whose normalised score is at least `threshold` (and above 0)."""
        import numpy as np

        if not self.searchable:
            return []
        raw, reference = self.scores(query)
        top_k = min(top_k, self.size)
        best = np.argpartition(-raw, top_k - 1)[:top_k] if top_k < self.size else np.arange(self.size)
        best = best[np.argsort(-raw[best], kind="stable")]
        top = float(raw[best[0]])
        if top <= 0 or top < self.floor:
            return []
        scale = max(top, FULL_MATCH * reference)
        hits = []
        for row in best:
            value = float(raw[row])
            score = min(value / scale, 1.0)
            if value <= 0 or score < threshold:
                break
            hits.append(Hit(self.chunks[int(row)], value, score))
        return hits
