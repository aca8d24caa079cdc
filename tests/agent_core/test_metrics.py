"""Worker metrics: recorded in memory, added up in Redis, read back as cumulative series."""

from __future__ import annotations

import pytest
import redis

from agent_core.llm.base import LLMError, LLMRequest, LLMResponse
from agent_core.metrics import LLM_ERRORS, LLM_SECONDS, Counter, Histogram, ObservedProvider, Tally
from agent_core.store import Store, health

LATENCY = Histogram("test_latency_seconds", "test", ("outcome",), buckets=(0.1, 1.0))
ERRORS = Counter("test_errors", "test", ("code",))
PLAIN = Counter("test_plain", "test")


def read(store: Store, metric: Histogram | Counter) -> dict[str, str]:
    return store.run(health.read_metrics([metric.name]))[metric.name]


def test_observations_from_two_processes_add_up_in_redis(store: Store) -> None:
    one, two = Tally(), Tally()
    one.observe(LATENCY, 0.05, "ok")
    one.observe(LATENCY, 0.1, "ok")  # on a bound: that bucket (Prometheus' `le` is inclusive)
    two.observe(LATENCY, 0.5, "ok")
    two.observe(LATENCY, 7.0, "error")
    one.flush(store)
    two.flush(store)
    series = {s.labels: s for s in LATENCY.series(read(store, LATENCY))}
    ok, error = series[("ok",)], series[("error",)]
    assert ok.buckets == ((0.1, 2), (1.0, 3), (float("inf"), 3))
    assert ok.count == 3 and abs(ok.sum - 0.65) < 1e-9
    assert error.buckets == ((0.1, 0), (1.0, 0), (float("inf"), 1)) and error.sum == 7.0


def test_counters_with_and_without_labels(store: Store) -> None:
    tally = Tally()
    tally.count(ERRORS, "21610")
    tally.count(ERRORS, "21610")
    tally.count(ERRORS, "a|b")
    tally.count(PLAIN)
    tally.flush(store)
    assert ERRORS.series(read(store, ERRORS)) == [(("21610",), 2.0), (("a/b",), 1.0)]
    assert PLAIN.series(read(store, PLAIN)) == [((), 1.0)]


def test_a_flush_that_fails_keeps_the_observations_for_the_next(store: Store) -> None:
    tally = Tally()
    tally.observe(LATENCY, 0.2, "ok")
    down = Store(redis.Redis(host="127.0.0.1", port=1, decode_responses=True, socket_connect_timeout=0.2))
    with pytest.raises(redis.ConnectionError):
        tally.flush(down)
    tally.observe(LATENCY, 0.3, "ok")
    tally.flush(store)
    (ok,) = LATENCY.series(read(store, LATENCY))
    assert ok.count == 2 and abs(ok.sum - 0.5) < 1e-9
    tally.flush(store)
    assert LATENCY.series(read(store, LATENCY))[0].count == 2


def test_changed_buckets_never_shift_old_counts(store: Store) -> None:
    tally = Tally()
    tally.observe(LATENCY, 0.5, "ok")
    tally.flush(store)
    rebucketed = Histogram(LATENCY.name, "test", ("outcome",), buckets=(0.5, 1.0))
    (ok,) = rebucketed.series(read(store, LATENCY))
    # The old 1.0 bucket still counts at 1.0, not at the new bucket 0.5.
    assert ok.buckets == ((0.5, 0), (1.0, 1), (float("inf"), 1))


class Failing:
    name = "flaky"

    def complete(self, request: LLMRequest) -> LLMResponse:
        raise LLMError("the model is down")


def test_an_observed_provider_counts_failures_and_re_raises(store: Store) -> None:
    tally = Tally()
    provider = ObservedProvider(Failing(), tally)
    with pytest.raises(LLMError):
        provider.complete(LLMRequest(model="m", messages=[], purpose="summary"))
    tally.flush(store)
    assert LLM_ERRORS.series(read(store, LLM_ERRORS)) == [(("flaky", "summary", "error"), 1.0)]
    (series,) = LLM_SECONDS.series(read(store, LLM_SECONDS))
    assert series.labels == ("flaky", "summary", "error") and series.count == 1
