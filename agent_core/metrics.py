"""What the worker processes measure: turns, the LLM, deliveries, events out.

The figures are declared here as plain data (`Histogram`, `Counter`) and recorded through
an injected `Recorder`. Worker processes record into a `Tally`, which adds observations up
in memory and is flushed to Redis (one round trip, after each job), so `/metrics` on any
web process shows the whole fleet. Labels take values from closed sets (outcomes, provider
names, error codes), never customer, session or message ids.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent_core.llm.base import LLMError, LLMProvider, LLMRequest, LLMResponse, LLMTimeout, LLMUnavailable
from agent_core.store import Store, health
from channels.models import DeliveryError, OutboundMessage, RetryableDeliveryError, Sender, SendReceipt

# Separates label values (and the bucket) in a Redis hash field; label values never hold it.
SEP = "|"
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _clean(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v.replace(SEP, "/") for v in values)


@dataclass(frozen=True, slots=True)
class HistogramSeries:
    labels: tuple[str, ...]
    # (upper bound, observations at or below it), cumulative, ending with +inf.
    buckets: tuple[tuple[float, int], ...]
    sum: float

    @property
    def count(self) -> int:
        return self.buckets[-1][1]


@dataclass(frozen=True, slots=True)
class Histogram:
    """A distribution; kept as one Redis hash with a field per (labels, bucket) and one sum
    per label set. A field names its bucket's bound, so changing the buckets never shifts
    old counts into the wrong bucket."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = SECONDS
    _bounds: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_bounds", (*(repr(b) for b in self.buckets), "inf"))

    def fields(self, value: float, labels: Sequence[str]) -> tuple[str, str]:
        """The hash fields one observation adds to: its bucket's count and its label set's sum."""
        head = "".join(v + SEP for v in _clean(labels))
        return head + self._bounds[bisect.bisect_left(self.buckets, value)], head + "sum"

    def series(self, raw: Mapping[str, str]) -> list[HistogramSeries]:
        """The stored hash, read back as one cumulative series per label set."""
        counts: dict[tuple[str, ...], dict[str, int]] = {}
        sums: dict[tuple[str, ...], float] = {}
        for name, value in raw.items():
            *labels, part = name.split(SEP)
            if len(labels) != len(self.labels):
                continue
            key = tuple(labels)
            if part == "sum":
                sums[key] = float(value)
            else:
                counts.setdefault(key, {})[part] = int(float(value))
        out = []
        for key in sorted(counts.keys() | sums.keys()):
            seen = counts.get(key, {})
            running = 0
            buckets = []
            for bound, text in zip((*self.buckets, float("inf")), self._bounds, strict=True):
                running += seen.get(text, 0)
                buckets.append((bound, running))
            out.append(HistogramSeries(key, tuple(buckets), sums.get(key, 0.0)))
        return out


@dataclass(frozen=True, slots=True)
class Counter:
    """A monotonic count; one Redis hash with a field per label set."""

    name: str
    help: str
    labels: tuple[str, ...] = ()

    def field(self, labels: Sequence[str]) -> str:
        return SEP.join(_clean(labels))

    def series(self, raw: Mapping[str, str]) -> list[tuple[tuple[str, ...], float]]:
        out = []
        for name, value in sorted(raw.items()):
            labels = tuple(name.split(SEP)) if self.labels else ()
            if len(labels) == len(self.labels) and (self.labels or name == ""):
                out.append((labels, float(value)))
        return out


Metric = Histogram | Counter

TURN_SECONDS = Histogram(
    "chatgw_turn_duration_seconds",
    "Turn jobs, from start to finish (debounce, LLM and inline delivery included), by outcome",
    ("outcome",),
)
TURN_QUEUE_WAIT_SECONDS = Histogram(
    "chatgw_turn_queue_wait_seconds", "Time a turn job waited in its queue before a worker started it"
)
LLM_SECONDS = Histogram(
    "chatgw_llm_request_duration_seconds",
    "LLM calls (after the provider's own retries), by provider, purpose and outcome",
    ("provider", "purpose", "outcome"),
)
LLM_ERRORS = Counter(
    "chatgw_llm_errors", "LLM calls that failed, by provider, purpose and kind", ("provider", "purpose", "kind")
)
LLM_RETRIES = Counter("chatgw_llm_retries", "Retries the LLM provider's client made", ("provider",))
DELIVERY_SECONDS = Histogram(
    "chatgw_delivery_duration_seconds",
    "Delivery attempts of outbound messages (throttle wait and provider call included), by outcome",
    ("outcome",),
)
DELIVERY_ERRORS = Counter(
    "chatgw_delivery_errors",
    "Errors the channel's provider answered a send with, by channel, provider error code and retryability",
    ("channel", "code", "retryable"),
)
EVENT_SECONDS = Histogram(
    "chatgw_event_delivery_duration_seconds",
    "Webhook event POSTs to agents' receivers, by outcome (retrying: RQ tries again; failed: no retries left)",
    ("outcome",),
)
JOB_CPU_SECONDS = Histogram(
    "chatgw_job_cpu_seconds",
    "CPU time of the worker's jobs (the thread's own, LLM and network waits excluded), by job",
    ("job",),
    (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
FLEET: tuple[Metric, ...] = (
    TURN_SECONDS,
    TURN_QUEUE_WAIT_SECONDS,
    LLM_SECONDS,
    LLM_ERRORS,
    LLM_RETRIES,
    DELIVERY_SECONDS,
    DELIVERY_ERRORS,
    EVENT_SECONDS,
    JOB_CPU_SECONDS,
)


class Recorder(Protocol):
    def observe(self, metric: Histogram, value: float, *labels: str) -> None: ...

    def count(self, metric: Counter, *labels: str) -> None: ...


class Tally:
    """A Recorder that adds observations up in memory (thread-safe: a worker process runs
    jobs on several threads); `flush` writes the increments to Redis in one round trip."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], float] = {}

    def observe(self, metric: Histogram, value: float, *labels: str) -> None:
        bucket, total = metric.fields(value, labels)
        with self._lock:
            pending = self._pending
            pending[metric.name, bucket] = pending.get((metric.name, bucket), 0) + 1
            pending[metric.name, total] = pending.get((metric.name, total), 0.0) + value

    def count(self, metric: Counter, *labels: str) -> None:
        name = metric.field(labels)
        with self._lock:
            self._pending[metric.name, name] = self._pending.get((metric.name, name), 0) + 1

    def flush(self, store: Store) -> None:
        """Write what was recorded since the last flush; on failure it is kept for the next."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            store.run(health.add_metrics(pending))
        except BaseException:
            with self._lock:
                for key, value in pending.items():
                    self._pending[key] = self._pending.get(key, 0) + value
            raise


def _llm_error_kind(exc: LLMError) -> str:
    if isinstance(exc, LLMTimeout):
        return "timeout"
    if isinstance(exc, LLMUnavailable):
        return "unavailable"
    return "error"


class ObservedProvider:
    """An LLMProvider that records each call's time and failures, then answers as `inner`."""

    def __init__(self, inner: LLMProvider, recorder: Recorder) -> None:
        self.inner = inner
        self.name = inner.name
        self.recorder = recorder

    def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.perf_counter()
        try:
            response = self.inner.complete(request)
        except LLMError as exc:
            self.recorder.observe(LLM_SECONDS, time.perf_counter() - started, self.name, request.purpose, "error")
            self.recorder.count(LLM_ERRORS, self.name, request.purpose, _llm_error_kind(exc))
            raise
        self.recorder.observe(LLM_SECONDS, time.perf_counter() - started, self.name, request.purpose, "ok")
        return response


class ObservedSender:
    """A Sender that counts the errors its provider answers with (by code), then sends as `inner`."""

    def __init__(self, inner: Sender, recorder: Recorder) -> None:
        self.inner = inner
        self.recorder = recorder

    def parts(self, message: OutboundMessage) -> int:
        return self.inner.parts(message)

    def send(self, message: OutboundMessage) -> SendReceipt:
        try:
            return self.inner.send(message)
        except DeliveryError as exc:
            retryable = "true" if isinstance(exc, RetryableDeliveryError) else "false"
            code = str(exc.code) if exc.code is not None else "none"
            self.recorder.count(DELIVERY_ERRORS, message.channel.value, code, retryable)
            raise
