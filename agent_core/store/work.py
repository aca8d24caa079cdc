"""Follow-up work a store write makes necessary, and the seam to the job queue.

A write that needs work done after it (a turn, a delivery, a summary, an index build)
names that `Work`; the store records its safety entry and queues its job in the same
atomic script, so a crash can delay the work but never lose it. How a job looks in Redis
is the queue's business: the store is given a `JobFormat` (workers/rqwire.py) that turns
Work into a `PreparedJob` — the writes that queue it — and the scripts run those writes
without knowing what they mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Task(StrEnum):
    turn = "turn"
    deliver = "deliver"
    summary = "summary"
    index_document = "index"
    place_call = "call"
    finish_call = "callend"


# How long a queued job may take to start (and, for a turn, to renew its lease) before
# the sweep (or, for turns, the watchdog) queues it again.
GRACE_MS = {
    # A queued turn not started within this long is queued again by the watchdog (a job can
    # only be lost if Redis lost writes); a started turn's lease is renewed while it runs.
    Task.turn: 300_000,
    Task.deliver: 120_000,
    Task.summary: 120_000,
    Task.index_document: 600_000,
    Task.place_call: 120_000,
    Task.finish_call: 120_000,
}


@dataclass(frozen=True, slots=True)
class Work:
    """One piece of follow-up work. Empty `args` mean the session the script resolves (a
    turn at ingest; the summary of the session a new one replaces). `inline` work is done
    by the writer right after the write: only its safety entry is recorded, no job."""

    task: Task
    args: tuple[str, ...] = ()
    inline: bool = False

    @classmethod
    def turn(cls) -> Work:
        return cls(Task.turn)

    @classmethod
    def deliver(cls, session_id: str, message_id: str) -> Work:
        return cls(Task.deliver, (session_id, message_id))

    @classmethod
    def summary(cls, session_id: str | None = None) -> Work:
        """Without an id: of the session the script resolves (e.g. the one it closes)."""
        return cls(Task.summary, (session_id,) if session_id else ())

    @classmethod
    def index(cls, document_id: str) -> Work:
        return cls(Task.index_document, (document_id,))

    @classmethod
    def place_call(cls, call_id: str) -> Work:
        return cls(Task.place_call, (call_id,))

    @classmethod
    def finish_call(cls, call_id: str) -> Work:
        return cls(Task.finish_call, (call_id,))

    def done_inline(self) -> Work:
        return Work(self.task, self.args, inline=True)

    @property
    def entry(self) -> str:
        """Its member in the safety set (`deliver:SID:MID`); '' for work on the session the
        script resolves (the script completes it)."""
        return ":".join((self.task.value, *self.args)) if self.args else ""

    @classmethod
    def from_entry(cls, entry: str) -> Work | None:
        """The Work of a safety-set member; None for one this version does not know."""
        name, _, rest = entry.partition(":")
        try:
            task = Task(name)
        except ValueError:
            return None
        args = tuple(rest.split(":")) if rest else ()
        arity = {
            Task.turn: 0,
            Task.deliver: 2,
            Task.summary: 1,
            Task.index_document: 1,
            Task.place_call: 1,
            Task.finish_call: 1,
        }[task]
        return cls(task, args) if len(args) == arity and all(args) else None


@dataclass(frozen=True, slots=True)
class PreparedJob:
    """The Redis writes that queue one job: HSET `hash_key` `fields` and `payload_field`,
    RPUSH the id onto `queue_key`, SADD `queue_key` to `registry_key`. Where `splice` is
    set, it stands for the session id inside `payload` (same length, replaced in place)."""

    id: str
    hash_key: str
    fields: tuple[str, ...]
    payload_field: str
    payload: bytes
    queue_key: str
    registry_key: str
    splice: str = ""
    # The spec's JSON, when the format has it already (a re-stamped template: encoding ~30
    # fields on every inbound message is a measurable part of the webhook's CPU).
    encoded: str = ""

    def spec_json(self, work: Work) -> str:
        return self.encoded or json.dumps(self.spec(work), separators=(",", ":"))

    def spec(self, work: Work) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.hash_key,
            "fields": self.fields,
            "payload_field": self.payload_field,
            "queue": self.queue_key,
            "registry": self.registry_key,
            "splice": self.splice,
            "task": work.task.value,
            "entry": work.entry,
            "grace_ms": GRACE_MS[work.task],
        }


def inline_spec(work: Work) -> dict[str, Any]:
    """The spec of inline work: its safety entry only."""
    return {"task": work.task.value, "entry": work.entry, "grace_ms": GRACE_MS[work.task], "inline": True}


class JobFormat(Protocol):
    """Turns Work into the writes that queue its job (implemented by workers/rqwire.py)."""

    def prepare(self, work: Work) -> PreparedJob: ...
