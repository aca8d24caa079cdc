"""Knowledge base: parsing, structure-aware chunking, storage in Redis and BM25 retrieval."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from agent_core import knowledge
from agent_core.knowledge import (
    ContentType,
    DocumentError,
    DocumentStatus,
    IndexCache,
    chunk_document,
    documents,
    read_text,
    read_upload,
    retrieve,
    search_tool,
    search_tool_result,
)
from agent_core.knowledge.chunking import MAX_CHUNK_CHARS, OVERLAP_CHARS, csv_rows, split_block
from agent_core.llm.base import Passage
from agent_core.models import Agent, KnowledgeConfig
from agent_core.store import Store
from agent_core.tools import Actions, ToolContext
from tests.conftest import drain
from workers.context import WorkerContext

FAQ_MD = """# Acme Store Help Center

Welcome to the Acme Store help center. Answers about orders, shipping, returns, payments and your account.

## Shipping

### Delivery times
Standard shipping takes 3 to 5 business days within the continental United States. Express shipping
takes 1 to 2 business days. Orders placed before 2 pm Eastern ship the same day.

### International shipping
We ship to Canada, Mexico, the United Kingdom and most of the European Union. International delivery
takes 7 to 14 business days. Customs duties and import taxes are paid by the recipient.

### Shipping costs
Standard shipping is free on orders over $50. Below that, standard shipping costs $5.99 and express
shipping costs $14.99.

## Returns and refunds

### Return policy
You can return most items within 30 days of delivery for a full refund. Items must be unused and in
their original packaging. Final sale items and gift cards cannot be returned.

### How to start a return
Sign in to your account, open Order History, choose the order and click "Return items". Print the
prepaid return label and drop the parcel at any UPS location.

### Refund timing
Refunds are issued to the original payment method within 5 business days after we receive the
returned item. Your bank may take a few more days to show the credit.

## Orders

### Tracking an order
Once your order ships you receive an email with a tracking number. You can also track it from Order
History in your account.

### Changing or cancelling an order
Orders can be changed or cancelled within one hour of being placed. After that the order is already
being packed; you can return it once it arrives.

## Payments

We accept Visa, Mastercard, American Express, PayPal, Apple Pay and Acme gift cards. Payment is taken
when the order ships. We do not store full card numbers.

## Account

### Resetting your password
Click "Forgot password" on the sign-in page and enter your email address. We send a reset link that
is valid for 24 hours.

## Warranty
All Acme-brand electronics carry a one-year limited warranty covering manufacturing defects.
Accidental damage and water damage are not covered.
"""

PRODUCTS_CSV = """sku,name,price,color,in_stock
A100,Trail Backpack 30L,89.00,green,yes
A101,Trail Backpack 45L,119.00,black,no
B200,Insulated Water Bottle,24.50,blue,yes
C300,Wireless Headphones,149.99,black,yes
"""

ANSWERED = [
    ("How long does shipping take?", "Delivery times"),
    ("what is your refund policy", "Return policy"),
    ("do you ship to canada", "International shipping"),
    ("How do I reset my password", "Resetting your password"),
    (
        "Hi! I bought a jacket from you last week and I was wondering how long shipping usually takes?",
        "Delivery times",
    ),
    ("Hello, I'd like to cancel my order please, I placed it 20 minutes ago", "Changing or cancelling"),
    ("how much are the wireless headphones", "Wireless Headphones"),
]
UNRELATED = [
    "What's the weather like in Paris tomorrow?",
    "Who won the football game last night?",
    "What is the capital of France?",
    "How do I bake sourdough bread at home?",
    "My name is John and I live in Boston",
    "tell me a joke",
    "hello",
]


def add_document(store: Store, name: str, text: str, content_type: str | None = None) -> str:
    doc = read_text(text, name=name, content_type=content_type)
    return store.run(knowledge.save(doc, chunks=knowledge.chunks_of(doc))).document.id


@pytest.fixture
def faq(store: Store) -> KnowledgeConfig:
    ids = [add_document(store, "faq.md", FAQ_MD), add_document(store, "products.csv", PRODUCTS_CSV)]
    return KnowledgeConfig(document_ids=ids)


# Parsing


def test_content_type_comes_from_a_specific_declared_type_else_the_extension() -> None:
    detect = knowledge.parsing.detect_content_type
    assert detect("text/markdown; charset=utf-8", "notes.txt") is ContentType.markdown
    assert detect("application/octet-stream", "faq.md") is ContentType.markdown
    assert detect("text/plain", "prices.CSV") is ContentType.csv
    assert detect(None, "page.htm") is ContentType.html
    assert detect("", "README") is ContentType.plain
    with pytest.raises(DocumentError, match="'image/png' is not supported"):
        detect("image/png", "logo.png")
    with pytest.raises(DocumentError, match="PDF is not supported"):
        detect("application/pdf", "manual.pdf")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
            "looks like binary data (it contains NUL bytes); upload a text document",
        ),
        ("Café crème".encode("latin-1"), "is not valid UTF-8 (byte 0xe9 at offset 3); save it as UTF-8"),
        ("hello".encode("utf-16"), "is UTF-16 encoded; save it as UTF-8"),
        (b"", "is empty"),
        (b" \n\t\n", "is empty"),
        (b"\x01\x02\x03\x04 some text \x05\x06\x07\x08", "looks like binary data (8 control characters)"),
    ],
)
def test_bad_bytes_are_refused_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(DocumentError) as caught:
        read_upload(raw, name=None, declared_type="text/plain", filename="f.txt")
    assert str(caught.value) == f"file: {reason}"


def test_utf8_bom_is_dropped_and_newlines_normalised() -> None:
    doc = read_upload(b"\xef\xbb\xbfline one\r\nline two\r", name="n", declared_type=None, filename="a.txt")
    assert doc.text == "line one\nline two\n" and doc.size_bytes == 22


def test_oversize_document_is_refused_as_too_large() -> None:
    with pytest.raises(DocumentError) as caught:
        read_upload(b"x" * 2048, name="big.txt", declared_type=None, filename=None, limit=1024)
    assert caught.value.too_large
    assert str(caught.value) == "file: 2 KB is larger than the 1 KB limit"


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(DocumentError) as caught:
        read_text("", name=" ", content_type="application/zip")
    assert knowledge.messages_of(caught.value) == [
        "name: is required (or upload a file with a file name)",
        "content_type: 'application/zip' is not supported; use one of text/plain, text/markdown, text/csv, text/html",
        "text: is empty",
    ]


# Chunking


def test_markdown_is_chunked_by_heading_with_the_heading_path_as_context() -> None:
    chunks = chunk_document(FAQ_MD, ContentType.markdown)
    heads = [c.split("\n\n", 1)[0] for c in chunks]
    assert heads[0] == "Acme Store Help Center"
    assert "Acme Store Help Center > Shipping > International shipping" in heads
    assert "Acme Store Help Center > Returns and refunds > Refund timing" in heads
    assert "Acme Store Help Center > Warranty" in heads
    delivery = chunks[heads.index("Acme Store Help Center > Shipping > Delivery times")]
    assert "Standard shipping takes 3 to 5 business days" in delivery and "Canada" not in delivery


def test_markdown_code_fences_setext_headings_and_front_matter() -> None:
    text = "---\ntitle: x\n---\nIntro\n=====\n\nHello.\n\n```\n# not a heading\n\ncode\n```\n\nUsage\n-----\nRun it.\n"
    assert chunk_document(text, ContentType.markdown) == [
        "Intro\n\nHello.\n\n```\n# not a heading\n\ncode\n```",
        "Intro > Usage\n\nRun it.",
    ]


def test_heading_paths_are_plain_words() -> None:
    text = (
        "# **Returns** and [refunds](https://acme.example/r)\n\nWithin 30 days.\n\n## `gift_card` _rules_\n\nNo cash."
    )
    assert chunk_document(text, ContentType.markdown) == [
        "Returns and refunds\n\nWithin 30 days.",
        "Returns and refunds > gift_card rules\n\nNo cash.",
    ]


def test_small_paragraphs_are_packed_and_long_ones_cut_with_overlap() -> None:
    sentences = [f"Sentence number {i} talks about topic {i} in some detail." for i in range(80)]
    text = "Short intro.\n\nSecond short paragraph.\n\n" + " ".join(sentences)
    chunks = chunk_document(text, ContentType.plain)
    assert chunks[0] == "Short intro.\n\nSecond short paragraph."
    assert all(len(c) <= MAX_CHUNK_CHARS for c in chunks)
    cut = chunks[1:]
    assert len(cut) >= 4
    for before, after in itertools.pairwise(cut):
        last_sentence = before.rsplit(". ", 1)[-1]
        assert last_sentence in after, "pieces of a cut paragraph overlap"
        assert after.index(last_sentence) + len(last_sentence) <= OVERLAP_CHARS, "the overlap is small"
    assert all(f"topic {i} " in " ".join(chunks) for i in range(80))


def test_a_giant_word_is_cut_hard() -> None:
    assert [len(p) for p in split_block("x" * 2500, 1000)] == [1000, 1000, 500]


def test_csv_with_a_header_renders_labelled_rows() -> None:
    assert chunk_document(PRODUCTS_CSV, ContentType.csv)[:2] == [
        "sku: A100; name: Trail Backpack 30L; price: 89.00; color: green; in_stock: yes",
        "sku: A101; name: Trail Backpack 45L; price: 119.00; color: black; in_stock: no",
    ]
    faq = "question,answer\nHow do I reset my password?,Click Forgot password on the sign-in page.\n"
    assert chunk_document(faq, ContentType.csv) == [
        "question: How do I reset my password?; answer: Click Forgot password on the sign-in page."
    ]


def test_csv_without_a_header_renders_values() -> None:
    assert chunk_document("A100,Backpack,89.00\nA101,Bottle,24.50\n", ContentType.csv) == [
        "A100, Backpack, 89.00",
        "A101, Bottle, 24.50",
    ]
    assert csv_rows("red,apple\ngreen,pear\n")[0] is None
    assert csv_rows("sku;name;price\nA1;Hat;3\nA2;Cap;4\n") == (
        ["sku", "name", "price"],
        [["A1", "Hat", "3"], ["A2", "Cap", "4"]],
    )


def test_html_is_stripped_to_text_with_headings_as_boundaries() -> None:
    html = """<html><head><title>T</title><style>p { color: red }</style>
    <script>var s = "<p>not text</p>";</script></head>
    <body><h1>Store &amp; Help</h1><p>Intro <b>bold</b>
    text.<br>Next line</p><nav><a href="/">Home</a></nav>
    <h2>Returns</h2><ul><li>Within 30 days</li><li>Unused items</li></ul>
    <table><tr><th>Size</th><th>Price</th></tr><tr><td>S</td><td>$5</td></tr></table></body></html>"""
    assert chunk_document(html, ContentType.html) == [
        "Store & Help\n\nIntro bold text.\nNext line\n\nHome",
        "Store & Help > Returns\n\n- Within 30 days\n\n- Unused items\n\nSize | Price\n\nS | $5",
    ]


# Storage and retrieval


def test_a_question_the_documents_answer_scores_above_the_threshold(store: Store, faq: KnowledgeConfig) -> None:
    for question, expected in ANSWERED:
        passages = retrieve(store, faq, question, IndexCache())
        assert passages, question
        assert expected in passages[0].text, (question, passages[0].text)
        assert passages[0].score >= faq.relevance_threshold
        assert len(passages) <= faq.top_k
        assert all(0 < p.score <= 1 for p in passages)
        assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)


def test_an_unrelated_question_retrieves_nothing_above_the_threshold(store: Store, faq: KnowledgeConfig) -> None:
    assert faq.relevance_threshold == 0.3
    for question in UNRELATED:
        assert retrieve(store, faq, question, IndexCache()) == [], question


def test_passages_carry_document_ids_and_names(store: Store, faq: KnowledgeConfig) -> None:
    [passage] = retrieve(store, faq.model_copy(update={"top_k": 1}), "price of the trail backpack 45L", IndexCache())
    assert passage.document_id == faq.document_ids[1] and passage.document_name == "products.csv"
    assert passage.text.startswith("sku: A101;")


def test_no_documents_no_passages(store: Store) -> None:
    assert retrieve(store, KnowledgeConfig(), "refund policy") == []
    assert retrieve(store, KnowledgeConfig(document_ids=["doc_unknown"]), "refund policy") == []


def test_an_archived_document_is_never_retrieved_again_by_any_process(store: Store, faq: KnowledgeConfig) -> None:
    # Two caches stand for two processes: each has built its index before the archive.
    first, second = IndexCache(), IndexCache()
    assert retrieve(store, faq, "refund policy", first)
    assert retrieve(store, faq, "refund policy", second)
    archived = store.run(documents.archive(faq.document_ids[0]))
    assert archived is not None and archived.archived
    assert retrieve(store, faq, "refund policy", first) == []
    assert retrieve(store, faq, "refund policy", second) == []
    assert retrieve(store, faq, "wireless headphones", first)[0].document_name == "products.csv"


def test_a_cached_index_survives_changes_to_other_documents(store: Store, faq: KnowledgeConfig) -> None:
    cache = IndexCache()
    retrieve(store, faq, "refund policy", cache)
    index = store.run(knowledge.load_corpus(faq.document_ids, cache)).cached
    assert index is not None
    before = store.run(documents.version())
    add_document(store, "other.txt", "Something else entirely.")
    assert store.run(documents.version()) == before + 1
    assert store.run(knowledge.load_corpus(faq.document_ids, cache)).cached is index


def test_chunks_survive_in_redis_for_a_fresh_process(store: Store, faq: KnowledgeConfig) -> None:
    texts = store.run(documents.chunk_texts(faq.document_ids[1]))
    assert len(texts) == 4 and texts[0].startswith("sku: A100;")
    doc = store.run(documents.get(faq.document_ids[1]))
    assert doc is not None and doc.chunks == 4 and doc.status is DocumentStatus.ready


def test_a_large_document_is_indexed_by_the_job(store: Store, ctx: WorkerContext) -> None:
    doc = read_text(FAQ_MD * 2, name="big.md", content_type=None)
    doc_id = knowledge.new_document_id()
    created = store.run(knowledge.save(doc, chunks=None, doc_id=doc_id)).document
    assert created.status is DocumentStatus.indexing and created.chunks == 0
    config = KnowledgeConfig(document_ids=[doc_id])
    assert retrieve(store, config, "refund policy", IndexCache()) == []
    drain(ctx)
    ready = store.run(documents.get(doc_id))
    assert ready is not None and ready.status is DocumentStatus.ready and ready.chunks > 0
    assert store.run(documents.pending_text(doc_id)) is None
    assert retrieve(store, config, "refund policy", IndexCache())[0].document_name == "big.md"
    assert knowledge.index_document(store, doc_id) == "ready"


def test_importing_the_same_file_twice_creates_one_document(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "faq.md"
    path.write_text(FAQ_MD, encoding="utf-8")
    first = knowledge.create_document_from_path(store, path)
    again = knowledge.create_document_from_path(store, path)
    assert first.created and not again.created and again.document.id == first.document.id
    assert first.document.content_type is ContentType.markdown and first.document.status is DocumentStatus.ready
    renamed = knowledge.create_document_from_path(store, path, name="Help center")
    assert renamed.created and renamed.document.id != first.document.id
    store.run(documents.archive(first.document.id))
    after_archive = knowledge.create_document_from_path(store, path)
    assert after_archive.created and after_archive.document.id not in (first.document.id, renamed.document.id)


def test_seeding_the_same_text_twice_creates_one_document(store: Store) -> None:
    first = knowledge.create_document_from_text(store, "faq.md", FAQ_MD)
    again = knowledge.create_document_from_text(store, "faq.md", FAQ_MD)
    assert first.created and not again.created and again.document == first.document
    assert first.document.content_type is ContentType.markdown and first.document.chunks > 10


def test_importing_a_bad_file_names_the_path(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("Café".encode("latin-1"))
    with pytest.raises(DocumentError, match=r"notes.txt: is not valid UTF-8"):
        knowledge.create_document_from_path(store, path)
    with pytest.raises(DocumentError, match=r"missing.txt: cannot be read"):
        knowledge.create_document_from_path(store, tmp_path / "missing.txt")
    assert store.run(documents.list_page(limit=10, cursor=None)) == ([], None)


def test_unknown_and_archived_ids_are_named_for_the_agents_api(store: Store, faq: KnowledgeConfig) -> None:
    store.run(documents.archive(faq.document_ids[1]))
    problems = store.run(knowledge.check_document_ids([faq.document_ids[0], "doc_nope", faq.document_ids[1]]))
    assert problems == [
        "knowledge.document_ids[1]: no document with id 'doc_nope'",
        f"knowledge.document_ids[2]: document '{faq.document_ids[1]}' is archived",
    ]
    assert store.run(knowledge.check_document_ids(faq.document_ids[:1])) == []


def test_search_tool_result_names_the_documents() -> None:
    text = search_tool_result(
        [Passage("doc_1", "faq.md", "Refunds take 5 days.", 1.0), Passage("doc_2", "policy.txt", "30 days.", 0.5)]
    )
    assert text == (
        "Passages from the knowledge base, best first:\n\n"
        "[1] faq.md (relevance 1.00)\nRefunds take 5 days.\n\n[2] policy.txt (relevance 0.50)\n30 days."
    )
    assert search_tool_result([]) == knowledge.tool.NOTHING_FOUND


def test_search_tool_is_offered_only_with_documents(store: Store, faq: KnowledgeConfig) -> None:
    tool = search_tool(store, IndexCache())
    agent = Agent.model_validate(
        {"id": "agent_x", "chat_agent_id": 1, "name": "A", "created_at": "t", "updated_at": "t"}
    )
    assert tool.offer(agent, None) is None  # type: ignore[arg-type]
    with_docs = agent.model_copy(update={"knowledge": faq})
    spec = tool.offer(with_docs, None)  # type: ignore[arg-type]
    assert spec is not None and spec.name == "search_knowledge"
    ctx = ToolContext(agent=with_docs, session=None, actions=Actions())  # type: ignore[arg-type]
    result = tool.run(ctx, {"query": "how much does shipping cost"})
    assert result.startswith("Passages from the knowledge base") and "[1] faq.md" in result
    assert "Shipping costs" in result
