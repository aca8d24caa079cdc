"""Redis key names the store's Python builds (the Lua scripts build theirs — and these, where
they share them — from the same `gw:` prefix; lua/lib.lua).

Private to `agent_core.store`: everything else asks the store's operations.
"""

from __future__ import annotations

P = "gw:"
TURNS_PENDING = P + "turns:pending"
TASKS = P + "tasks"
ROUTE = P + "route"
AGENTS = P + "agents"
AGENT_NUM = P + "agentnum"
TOKENS = P + "tokens"
# Turn notices (waiting requests) and live notices (new messages, session changes, for SSE)
# are separate channels so a web process only parses live traffic while it streams it.
NOTIFY_TURNS = P + "notify:turns"
NOTIFY_LIVE = P + "notify:live"
WORKERS_SEEN = P + "workers:seen"
COUNTERS = P + "counters"
OUTBOX = P + "outbox"
OUTBOX_PROCESSING = P + "outbox:processing"
DEV_OUTBOX = P + "devoutbox"
DEV_TWILIO_TOKEN = P + "dev:twilio_auth_token"
DOCUMENTS = P + "kdocs"
DOCUMENTS_VERSION = P + "kversion"
# Origins an enabled widget allows, counted per agent (lua/agent_save.lua): CORS preflights.
WIDGET_ORIGINS = P + "widget:origins"
# The key visitor tokens are signed with, shared by every web process.
WIDGET_SIGNING_KEY = P + "widget:signing_key"


def session(sid: str) -> str:
    return f"{P}s:{sid}"


def messages(sid: str) -> str:
    return f"{P}m:{sid}"


def whispers(sid: str) -> str:
    return f"{P}w:{sid}"


def open_sessions(agent_id: str) -> str:
    return f"{P}open:{agent_id}"


def index(scope: str, name: str) -> str:
    """`scope` is an agent id or `*`; `name` is `all` or `field:value`."""
    return f"{P}ix:{scope}:{name}"


def stats(scope: str) -> str:
    return f"{P}stats:{scope}"


def agent(agent_id: str) -> str:
    return f"{P}agent:{agent_id}"


def token(digest: str) -> str:
    return f"{P}token:{digest}"


def dedupe(namespace: str, value: str) -> str:
    return f"{P}dedupe:{namespace}:{value}"


def channel_message(channel_message_id: str) -> str:
    return f"{P}cmid:{channel_message_id}"


def early_statuses(channel_message_id: str) -> str:
    return f"{P}early:{channel_message_id}"


def send_lock(message_id: str) -> str:
    return f"{P}sendlock:{message_id}"


def memory(agent_id: str, customer_id: str) -> str:
    return f"{P}mem:{agent_id}:{customer_id}"


def schedule_lock(name: str) -> str:
    return f"{P}sched:{name}"


def metric(name: str) -> str:
    """One hash per metric the workers record (agent_core.metrics), added up fleet-wide."""
    return f"{P}metric:{name}"


def document(doc_id: str) -> str:
    return f"{P}kdoc:{doc_id}"


def document_chunks(doc_id: str) -> str:
    return f"{P}kchunks:{doc_id}"


def document_text(doc_id: str) -> str:
    return f"{P}kraw:{doc_id}"


# Escalation calls (SPEC §8): the call's hash, its transcript list, CallSid → call id, and
# the listing indexes (`scope` = all | agent:<id> | session:<sid>) scored by CALL_SEQ.
CALL_SEQ = P + "callseq"


def call(call_id: str) -> str:
    return f"{P}call:{call_id}"


def call_transcript(call_id: str) -> str:
    return f"{P}calltx:{call_id}"


def call_by_sid(call_sid: str) -> str:
    return f"{P}callsid:{call_sid}"


def call_index(scope: str) -> str:
    return f"{P}cix:{scope}"


def call_reply(call_id: str, turn: str) -> str:
    """A gather turn's answer that missed its webhook's budget, for the redirect to fetch."""
    return f"{P}callreply:{call_id}:{turn}"


def console_login(login_id: str) -> str:
    """An operator's console login (SPEC §10): deleted on logout, expires with the cookie."""
    return f"{P}login:{login_id}"


def send_rate(sender: str) -> str:
    """The GCRA state of one sender number's send rate (lua/throttle.lua)."""
    return f"{P}mps:{sender}"


def rate_limit(scope: str, subject: str) -> str:
    """The GCRA state of one request limit (`scope` names the limit, `subject` whom it counts)."""
    return f"{P}rl:{scope}:{subject}"
