"""/healthz, /readyz, /metrics, and an OpenAPI document that matches the served routes."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"success": True, "data": {"status": "ok"}}


def test_readyz_needs_a_worker_heartbeat(client: TestClient, ctx: Any) -> None:
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["errors"] == ["no worker seen in the last 30 s (start one: chatgw worker)"]
    from workers.schedules import Scheduler

    Scheduler(name="test-worker").tick()
    r = client.get("/readyz")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["status"] == "ready" and data["workers"] == 1 and data["llm_provider"] == "offline"
    assert data["queues"]["turns"] == {"queued": 0, "started": 0, "failed": 0}


def test_readyz_reports_queue_depth(client: TestClient, admin: dict[str, str]) -> None:
    a = client.post("/v1/agents", json={"name": "A"}, headers=admin).json()["data"]
    client.post(
        "/v1/chat/inbound?wait=0", json={"agent_uuid": a["id"], "customer_id": "c", "content": "hi"}, headers=admin
    )
    data = client.get("/readyz").json()["data"]
    assert data["queues"]["turns"]["queued"] == 1 and data["turns_pending"] == 1


def test_metrics_are_prometheus_text(client: TestClient, admin: dict[str, str]) -> None:
    a = client.post("/v1/agents", json={"name": "A"}, headers=admin).json()["data"]
    client.post("/v1/chat/session", json={"agent_uuid": a["id"], "customer_id": "c"}, headers=admin)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'chatgw_sessions{state="active"} 1.0' in r.text
    assert 'chatgw_queue_jobs{queue="turns",state="queued"} 0.0' in r.text


def test_openapi_documents_exactly_the_served_routes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, WebSocketRoute):
            # OpenAPI describes HTTP only: the ConversationRelay socket is documented in the README.
            assert route.path == "/twilio/voice/{call_id}/relay"
            continue
        # The operator console's pages (gateway/console) are HTML for browsers, not the API.
        if route.path == "/openapi.json" or route.path.startswith("/console"):
            continue
        assert isinstance(route, Route)
        served |= {(route.path, m) for m in (route.methods or set()) if m != "HEAD"}
    assert documented == served


def test_openapi_refs_resolve(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref:
                assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)


def test_documented_responses_match_real_ones(client: TestClient, admin: dict[str, str]) -> None:
    """Every field the API returns for a session is in the documented Session schema and vice versa."""
    doc = client.get("/openapi.json").json()
    session_props = set(doc["components"]["schemas"]["Session"]["properties"])
    a = client.post("/v1/agents", json={"name": "A"}, headers=admin).json()["data"]
    s = client.post("/v1/chat/session", json={"agent_uuid": a["id"], "customer_id": "c"}, headers=admin).json()["data"]
    assert set(s) == session_props
    agent_props = set(doc["components"]["schemas"]["Agent"]["properties"])
    assert set(a) == agent_props


def test_unknown_path_and_wrong_method_use_the_envelope(client: TestClient, admin: dict[str, str]) -> None:
    r = client.get("/v1/nothing", headers=admin)
    assert r.status_code == 404 and r.json() == {"success": False, "errors": ["not found: GET /v1/nothing"]}
    r = client.put("/v1/chat/inbound", headers=admin)
    assert r.status_code == 405 and r.json()["success"] is False


def test_request_id_is_echoed(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc123"}).headers["x-request-id"] == "abc123"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32
