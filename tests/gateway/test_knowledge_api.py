"""Knowledge API: uploads in every format, validation, archive, search, the indexing job, roles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from starlette.routing import Route
from starlette.testclient import TestClient

from agent_core.knowledge import INLINE_MAX_BYTES, documents
from agent_core.settings import Settings
from agent_core.store import Store
from gateway.api import knowledge as knowledge_api
from gateway.api.routing import build_routes
from gateway.app import create_app
from tests.agent_core.test_knowledge import FAQ_MD, PRODUCTS_CSV
from tests.conftest import drain
from workers.context import WorkerContext

DOCS = "/v1/knowledge/documents"
SEARCH = "/v1/knowledge/search"


@pytest.fixture
def client(settings: Settings, redis_url: str, ctx: WorkerContext) -> Iterator[TestClient]:
    """The real app, with the knowledge routes added if the app factory does not serve them yet."""
    app = create_app(settings, redis_url)
    served = {r.path for r in app.router.routes if isinstance(r, Route)}
    if DOCS not in served:
        app.router.routes.extend(build_routes(knowledge_api.ENDPOINTS))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


CITIES = ["Austin", "Boston", "Chicago", "Denver", "Houston", "Miami", "Phoenix", "Portland", "Seattle", "Tampa"]
STREETS = ["Oak", "Maple", "Cedar", "Pine", "Elm", "Birch", "Walnut", "Willow", "Spruce", "Aspen"]


def store_directory(min_bytes: int) -> str:
    """A Markdown manual of distinct sections (the FAQ, then one section per store) over `min_bytes`."""
    parts = [FAQ_MD, "# Store directory\n"]
    size = sum(len(p) for p in parts)
    i = 0
    while size <= min_bytes:
        city, street = CITIES[i % 10], STREETS[(i // 10) % 10]
        section = (
            f"## Store {i}: {city} {street} Street\n\nOur {city} store number {i} is at {100 + i} {street} "
            f"Street. It opens at {7 + i % 4} am and closes at {5 + i % 5} pm; parking bay {i % 37}.\n"
        )
        parts.append(section)
        size += len(section)
        i += 1
    return "\n".join(parts)


def upload(client: TestClient, headers: dict[str, str], filename: str, content: bytes, ctype: str, **form: str) -> Any:
    return client.post(DOCS, files={"file": (filename, content, ctype)}, data=form, headers=headers)


def data(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def search(client: TestClient, headers: dict[str, str], **body: Any) -> list[dict[str, Any]]:
    return data(client.post(SEARCH, json=body, headers=headers))["items"]  # type: ignore[no-any-return]


def test_markdown_upload_is_chunked_by_heading(client: TestClient, admin: dict[str, str], store: Store) -> None:
    doc = data(upload(client, admin, "faq.md", FAQ_MD.encode(), "text/markdown", name="Help center"))
    assert doc["id"].startswith("doc_")
    assert doc["name"] == "Help center" and doc["content_type"] == "text/markdown"
    assert doc["status"] == "ready" and doc["archived"] is False
    assert doc["size_bytes"] == len(FAQ_MD.encode()) and doc["created_at"].endswith("Z")
    chunks = store.run(documents.chunk_texts(doc["id"]))
    assert doc["chunks"] == len(chunks) >= 10
    assert any(c.startswith("Acme Store Help Center > Returns and refunds > Refund timing\n\n") for c in chunks)
    assert data(client.get(f"{DOCS}/{doc['id']}", headers=admin)) == doc


def test_file_name_is_the_default_name_and_the_extension_decides_a_generic_type(
    client: TestClient, admin: dict[str, str]
) -> None:
    doc = data(upload(client, admin, "faq.md", FAQ_MD.encode(), "application/octet-stream"))
    assert doc["name"] == "faq.md" and doc["content_type"] == "text/markdown"


def test_json_text_document(client: TestClient, admin: dict[str, str], store: Store) -> None:
    text = "Opening hours\n\nWe are open Monday to Friday, 9 am to 5 pm.\n\nClosed on public holidays."
    doc = data(client.post(DOCS, json={"name": "hours.txt", "text": text}, headers=admin))
    assert doc["content_type"] == "text/plain" and doc["chunks"] == 1
    assert store.run(documents.chunk_texts(doc["id"])) == [text]


def test_csv_with_header_rows_become_labelled_chunks(client: TestClient, admin: dict[str, str], store: Store) -> None:
    doc = data(upload(client, admin, "products.csv", PRODUCTS_CSV.encode(), "text/csv"))
    assert doc["content_type"] == "text/csv" and doc["chunks"] == 4
    assert store.run(documents.chunk_texts(doc["id"]))[3] == (
        "sku: C300; name: Wireless Headphones; price: 149.99; color: black; in_stock: yes"
    )


def test_csv_without_header_rows_are_plain_values(client: TestClient, admin: dict[str, str], store: Store) -> None:
    body = b"A100,Trail Backpack 30L,89.00\nB200,Insulated Water Bottle,24.50\n"
    doc = data(upload(client, admin, "stock.csv", body, "text/csv"))
    assert store.run(documents.chunk_texts(doc["id"])) == [
        "A100, Trail Backpack 30L, 89.00",
        "B200, Insulated Water Bottle, 24.50",
    ]


def test_html_is_stripped(client: TestClient, admin: dict[str, str], store: Store) -> None:
    html = (
        "<html><head><style>.x{}</style><script>alert('no')</script></head><body>"
        "<h1>Returns</h1><p>Return within <em>30 days</em>.</p><h2>Exchanges</h2><p>Free exchanges.</p></body></html>"
    )
    doc = data(upload(client, admin, "returns.html", html.encode(), "text/html"))
    assert store.run(documents.chunk_texts(doc["id"])) == [
        "Returns\n\nReturn within 30 days.",
        "Returns > Exchanges\n\nFree exchanges.",
    ]


def stored_keys(raw_redis: redis.Redis) -> set[bytes]:
    """Every key but rate-limit state (each API request counts against its token's limit)."""
    return {k for k in raw_redis.keys("*") if not k.startswith(b"gw:rl:")}


@pytest.mark.parametrize(
    ("filename", "content", "ctype", "error"),
    [
        ("logo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "text/plain", "file: looks like binary data"),
        ("notes.txt", "Café crème".encode("latin-1"), "text/plain", "file: is not valid UTF-8 (byte 0xe9 at offset 3)"),
        ("empty.txt", b"", "text/plain", "file: is empty"),
        ("blank.md", b"\n  \n", "text/markdown", "file: is empty"),
        ("logo.png", b"PNGDATA", "image/png", "file: 'image/png' is not supported"),
        ("manual.pdf", b"%PDF-1.4", "application/pdf", "file: PDF is not supported"),
        ("page.html", b"<script>only()</script>", "text/html", "file: has no text to index"),
    ],
)
def test_bad_files_are_refused_with_the_reason_and_nothing_is_stored(
    client: TestClient,
    admin: dict[str, str],
    raw_redis: redis.Redis,
    filename: str,
    content: bytes,
    ctype: str,
    error: str,
) -> None:
    before = stored_keys(raw_redis)
    r = upload(client, admin, filename, content, ctype)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["success"] is False and len(body["errors"]) == 1 and body["errors"][0].startswith(error)
    assert stored_keys(raw_redis) == before


def test_oversize_upload_is_413_and_nothing_is_stored(
    client: TestClient, admin: dict[str, str], raw_redis: redis.Redis
) -> None:
    client.app.state.knowledge_max_bytes = 100_000  # type: ignore[attr-defined]
    before = stored_keys(raw_redis)
    r = upload(client, admin, "big.txt", b"word " * 30_000, "text/plain")
    assert r.status_code == 413
    assert r.json()["errors"] == ["file: 146 KB is larger than the 98 KB limit"]
    r = client.post(DOCS, json={"name": "big.txt", "text": "word " * 30_000}, headers=admin)
    assert r.status_code == 413 and r.json()["errors"] == ["text: 146 KB is larger than the 98 KB limit"]
    assert stored_keys(raw_redis) == before


def test_json_errors_name_every_bad_field(client: TestClient, admin: dict[str, str], raw_redis: redis.Redis) -> None:
    before = stored_keys(raw_redis)
    r = client.post(DOCS, json={"name": "", "text": "  ", "content_type": "application/zip"}, headers=admin)
    assert r.status_code == 422
    assert r.json()["errors"] == [
        "name: is required (or upload a file with a file name)",
        "content_type: 'application/zip' is not supported; use one of text/plain, text/markdown, text/csv, text/html",
        "text: is empty",
    ]
    r = client.post(DOCS, json={"title": "x"}, headers=admin)
    assert r.status_code == 422
    assert set(r.json()["errors"]) == {"name: Field required", "text: Field required", "title: unknown field"}
    r = client.post(DOCS, content=b"{not json", headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["errors"][0].startswith("body: invalid JSON")
    r = client.post(DOCS, content=b"name=x", headers={**admin, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422 and "multipart/form-data" in r.json()["errors"][0]
    r = client.post(DOCS, data={"name": "x"}, files={"other": ("a.txt", b"hi", "text/plain")}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"] == ["file: a file part named 'file' is required"]
    assert stored_keys(raw_redis) == before


def test_large_document_is_indexed_by_a_job(client: TestClient, admin: dict[str, str], ctx: WorkerContext) -> None:
    text = store_directory(INLINE_MAX_BYTES)
    doc = data(client.post(DOCS, json={"name": "manual.md", "text": text}, headers=admin))
    assert doc["status"] == "indexing" and doc["chunks"] == 0 and doc["size_bytes"] > INLINE_MAX_BYTES
    assert data(client.get(f"{DOCS}/{doc['id']}", headers=admin))["status"] == "indexing"
    assert search(client, admin, document_ids=[doc["id"]], query="refund policy") == []
    drain(ctx)
    ready = data(client.get(f"{DOCS}/{doc['id']}", headers=admin))
    assert ready["status"] == "ready" and ready["chunks"] > 1000
    assert ctx.store.run(documents.pending_text(doc["id"])) is None
    [hit, *_] = search(client, admin, document_ids=[doc["id"]], query="refund policy")
    assert hit["document_name"] == "manual.md" and "Return policy" in hit["text"]
    [hit, *_] = search(client, admin, document_ids=[doc["id"]], query="When does store number 1234 open?")
    assert hit["text"].startswith("Store directory > Store 1234: ")


def test_search_shows_what_an_agent_retrieves(client: TestClient, admin: dict[str, str]) -> None:
    faq = data(upload(client, admin, "faq.md", FAQ_MD.encode(), "text/markdown"))
    products = data(upload(client, admin, "products.csv", PRODUCTS_CSV.encode(), "text/csv"))
    knowledge = {"document_ids": [faq["id"], products["id"]], "top_k": 2}
    agent = data(client.post("/v1/agents", json={"name": "A", "knowledge": knowledge}, headers=admin))
    items = search(client, admin, agent_uuid=agent["id"], query="How long does international shipping take?")
    assert 1 <= len(items) <= 2
    assert set(items[0]) == {"document_id", "document_name", "text", "score"}
    assert items[0]["document_id"] == faq["id"] and items[0]["document_name"] == "faq.md"
    assert "International shipping" in items[0]["text"] and items[0]["score"] >= 0.3
    assert search(client, admin, agent_uuid=agent["id"], query="Who won the football game last night?") == []
    one = search(client, admin, document_ids=[products["id"]], query="wireless headphones price", top_k=1)
    assert [i["document_id"] for i in one] == [products["id"]] and one[0]["score"] == 1.0


def test_archived_document_is_no_longer_retrieved(client: TestClient, admin: dict[str, str]) -> None:
    doc = data(upload(client, admin, "faq.md", FAQ_MD.encode(), "text/markdown"))
    assert search(client, admin, document_ids=[doc["id"]], query="refund policy")
    archived = data(client.delete(f"{DOCS}/{doc['id']}", headers=admin))
    assert archived["archived"] is True and archived["id"] == doc["id"]
    assert data(client.get(f"{DOCS}/{doc['id']}", headers=admin))["archived"] is True
    assert search(client, admin, document_ids=[doc["id"]], query="refund policy") == []
    assert data(client.delete(f"{DOCS}/{doc['id']}", headers=admin))["archived"] is True


def test_search_validation(client: TestClient, admin: dict[str, str]) -> None:
    def errors(body: dict[str, Any]) -> tuple[int, list[str]]:
        r = client.post(SEARCH, json=body, headers=admin)
        return r.status_code, r.json()["errors"]

    assert errors({"query": "x"}) == (422, ["body: give exactly one of agent_uuid and document_ids"])
    assert errors({"query": "x", "agent_uuid": "agent_a", "document_ids": ["doc_a"]})[0] == 422
    assert errors({"query": " ", "document_ids": ["doc_a"]}) == (422, ["query: must not be blank"])
    assert errors({"query": "x", "document_ids": ["doc_a", "nope"]}) == (
        422,
        ["document_ids[0]: no document with id 'doc_a'", "document_ids[1]: no document with id 'nope'"],
    )
    assert errors({"query": "x", "agent_uuid": "agent_missing"}) == (
        404,
        ["agent_uuid: no agent with id 'agent_missing'"],
    )
    assert errors({"query": "x", "document_ids": [], "top_k": 99})[0] == 422


def test_unknown_document_is_404(client: TestClient, admin: dict[str, str]) -> None:
    for method in ("GET", "DELETE"):
        r = client.request(method, f"{DOCS}/doc_missing", headers=admin)
        assert r.status_code == 404 and r.json()["errors"] == ["document_id: no document with id 'doc_missing'"]


def test_documents_list_paginates(client: TestClient, admin: dict[str, str]) -> None:
    ids = [
        data(client.post(DOCS, json={"name": f"d{i}.txt", "text": f"text {i}"}, headers=admin))["id"] for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = data(client.get(DOCS, params=params, headers=admin))
        seen += [d["id"] for d in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3
    client.delete(f"{DOCS}/{ids[1]}", headers=admin)
    live = data(client.get(DOCS, params={"archived": "false"}, headers=admin))
    assert [d["id"] for d in live["items"]] == [ids[0], *ids[2:]] and live["next_cursor"] is None
    archived = data(client.get(DOCS, params={"archived": "true"}, headers=admin))
    assert [d["id"] for d in archived["items"]] == [ids[1]]
    r = client.get(DOCS, params={"cursor": "doc_bogus"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"] == ["cursor: not a cursor this API issued"]


def test_roles(client: TestClient, admin: dict[str, str], operator: dict[str, str], api: dict[str, str]) -> None:
    doc = data(client.post(DOCS, json={"name": "a.txt", "text": "Refunds take five days."}, headers=admin))
    for headers in (api, operator):
        r = upload(client, headers, "b.txt", b"hello there", "text/plain")
        assert r.status_code == 403 and r.json()["success"] is False
        assert client.delete(f"{DOCS}/{doc['id']}", headers=headers).status_code == 403
    for path in (DOCS, f"{DOCS}/{doc['id']}"):
        assert client.get(path, headers=api).status_code == 403
        assert client.get(path, headers=operator).status_code == 200
    body = {"document_ids": [doc["id"]], "query": "refunds"}
    assert client.post(SEARCH, json=body, headers=api).status_code == 403
    assert search(client, operator, **body)[0]["document_id"] == doc["id"]
    assert client.post(DOCS, json={"name": "c.txt", "text": "x"}).status_code == 401
    assert data(client.get(f"{DOCS}/{doc['id']}", headers=admin))["archived"] is False


def test_uploads_may_exceed_the_general_body_limit(
    client: TestClient, admin: dict[str, str], api: dict[str, str]
) -> None:
    """MAX_BODY_BYTES (1 MiB) guards every endpoint but document uploads, which have their own limit."""
    text = store_directory(1_500_000)
    assert len(text.encode()) > 1024 * 1024
    upload = client.post(DOCS, files={"file": ("directory.md", text.encode(), "text/markdown")}, headers=admin)
    assert upload.status_code == 200, upload.text
    assert data(upload)["status"] == "indexing"
    chat = client.post("/v1/chat/inbound", json={"agent_uuid": "a", "customer_id": "c", "content": text}, headers=api)
    assert chat.status_code == 413
