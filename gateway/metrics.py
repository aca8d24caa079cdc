"""Prometheus metrics of the web process, and the fleet's figures rendered for `/metrics`.

This process's own figures (HTTP requests by route template, Twilio webhook outcomes,
delivery statuses the provider reported, SSE streams open) live in a prometheus-client
registry per app (`WebMetrics`, built by `create_app`; nothing registers at import time).
The workers' figures (`agent_core.metrics.FLEET`) are added up in Redis; `Fleet` renders
them as histogram and counter families, so any web process shows the whole fleet.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge
from prometheus_client import Histogram as PromHistogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from starlette.requests import Request
from starlette.types import Scope

from agent_core import inbound
from agent_core.delivery import StatusOutcome
from agent_core.metrics import FLEET, Counter, Histogram
from agent_core.store import IngestStatus
from channels.models import StatusUpdate

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# No route matched: a 404, or a request refused before routing (413 by Content-Length).
UNMATCHED = "unmatched"
INGEST_OUTCOMES = {
    IngestStatus.ok: "accepted",
    IngestStatus.dup: "duplicate",
    **dict.fromkeys(inbound.UNROUTED, "unknown_number"),
}


class WebMetrics:
    """The web process's own metrics (one registry per app). Label children are cached:
    `labels()` costs more than the observation itself."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = PromHistogram(
            "chatgw_http_request_duration_seconds",
            "HTTP requests served by this process, by method, route template and status (until the body is sent)",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.webhooks = PromCounter(
            "chatgw_webhooks",
            "Twilio webhooks by route and outcome (forged: signature refused)",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.statuses = PromCounter(
            "chatgw_delivery_statuses",
            "Delivery statuses the provider reported in status callbacks and we applied, by status and error code",
            ["status", "error_code"],
            registry=self.registry,
        )
        self.sse_open = PromGauge(
            "chatgw_sse_streams_open", "Server-Sent Events streams open on this process", registry=self.registry
        )
        self.rate_limited = PromCounter(
            "chatgw_rate_limited",
            "Requests refused with 429 by a rate limit, by limit (api_token, widget_ip, widget_visitor, …)",
            ["limit"],
            registry=self.registry,
        )
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._webhooks: dict[tuple[str, str], Any] = {}
        self._statuses: dict[tuple[str, str], Any] = {}

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in METHODS:
            method = "other"
        key = (method, route, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.http.labels(method, route, str(status))
        child.observe(seconds)

    def webhook(self, scope: Scope, outcome: str) -> None:
        key = (route_of(scope), outcome)
        child = self._webhooks.get(key)
        if child is None:
            child = self._webhooks[key] = self.webhooks.labels(*key)
        child.inc()

    def inbound(self, scope: Scope, status: IngestStatus) -> None:
        self.webhook(scope, INGEST_OUTCOMES.get(status, status.value))

    def status_callback(self, scope: Scope, outcome: StatusOutcome, update: StatusUpdate) -> None:
        self.webhook(scope, outcome.value)
        if outcome is StatusOutcome.applied:
            key = (update.status.value, str(update.error_code) if update.error_code is not None else "none")
            child = self._statuses.get(key)
            if child is None:
                child = self._statuses[key] = self.statuses.labels(*key)
            child.inc()


def metrics_of(request: Request) -> WebMetrics:
    metrics: WebMetrics = request.app.state.metrics
    return metrics


def route_of(scope: Scope) -> str:
    """The route template the router matched (`/v1/chat/session/{session_id}`), never the raw path."""
    route = scope.get("route")
    return getattr(route, "path", UNMATCHED)


class Fleet:
    """A collector for the workers' figures, read from Redis for one scrape."""

    def __init__(self, hashes: Mapping[str, Mapping[str, str]]) -> None:
        self.hashes = hashes

    def collect(self) -> Iterator[Metric]:
        for metric in FLEET:
            raw = self.hashes.get(metric.name, {})
            if isinstance(metric, Histogram):
                family = HistogramMetricFamily(metric.name, metric.help, labels=list(metric.labels))
                for series in metric.series(raw):
                    family.add_metric(
                        list(series.labels),
                        buckets=[(_bound(bound), count) for bound, count in series.buckets],
                        sum_value=series.sum,
                    )
                yield family
            elif isinstance(metric, Counter):
                counter = CounterMetricFamily(metric.name, metric.help, labels=list(metric.labels))
                for labels, value in metric.series(raw):
                    counter.add_metric(list(labels), value)
                yield counter


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
