"""Domain models: agents, sessions, messages (SPEC §3). Frozen pydantic models.

Timestamps are ISO-8601 UTC strings with millisecond precision and a `Z` suffix.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Re-exported: the domain's view of the channel-neutral models.
from channels.models import CallStatus as CallStatus
from channels.models import Channel as Channel
from channels.models import DeliveryStatus as DeliveryStatus
from channels.models import Keyword
from channels.models import Media as Media

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# A channel address: an E.164 number, optionally prefixed with 'whatsapp:'.
ADDRESS_PATTERN = "^(?:whatsapp:)?" + E164.pattern.removeprefix("^")
# What `_check_http_url` accepts, as the OpenAPI document states it: http(s), then a host (ASCII,
# no brackets), then a path, query or fragment. The validator keeps its own message.
HTTP_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=:@-]+(?:[/?#]|$)"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """`2026-12-02T02:38:27.070Z`: UTC, milliseconds (truncated). isoformat, not strftime:
    this runs twice per stored message and strftime costs twice as much."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return dt.isoformat(timespec="milliseconds")[:-6] + "Z"


def now_iso() -> str:
    return iso(utcnow())


def iso_from_ms(ms: int) -> str:
    return iso(datetime.fromtimestamp(ms / 1000, UTC))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def ms_from_iso(stamp: str) -> float:
    """Milliseconds since the epoch of one of our timestamps (or any ISO-8601 with an offset)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000


def uuid4_hex() -> str:
    """What `uuid.uuid4().hex` gives (random, version 4, RFC 4122 variant) without building
    a UUID object, a third of its cost; ids are made several times per inbound message."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def uuid4_str() -> str:
    """What `str(uuid.uuid4())` gives, as `uuid4_hex` does."""
    h = uuid4_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(12)}"


class SessionMode(StrEnum):
    ai = "ai"
    support = "support"


class SessionStatus(StrEnum):
    active = "active"
    dormant = "dormant"
    closed = "closed"


class Role(StrEnum):
    customer = "customer"
    agent = "agent"
    operator = "operator"
    whisper = "whisper"
    context = "context"
    system = "system"


PUBLIC_ROLES = frozenset({Role.customer, Role.agent, Role.operator})


class MessageKind(StrEnum):
    """What a message is, beyond its role: carrier keywords (never answered by the AI), the
    welcome, operator command records, the hand-back note, tool calls, suppressed drafts."""

    help = Keyword.HELP.value
    optout = Keyword.OPTOUT.value
    optin = Keyword.OPTIN.value
    welcome = "welcome"
    command = "command"
    handback = "handback"
    tool_call = "tool_call"
    draft = "draft"

    @property
    def keyword(self) -> bool:
        return self in (MessageKind.help, MessageKind.optout, MessageKind.optin)


class ContentType(StrEnum):
    """Knowledge document formats (SPEC §3)."""

    plain = "text/plain"
    markdown = "text/markdown"
    csv = "text/csv"
    html = "text/html"


class AgentStatus(StrEnum):
    active = "active"
    archived = "archived"


class OnHelpRequested(StrEnum):
    continue_ = "continue"
    hold = "hold"


class Strict(BaseModel):
    """Config models reject unknown keys so a typo is a 422, not a silently ignored setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SinglePrompt(Strict):
    type: Literal["single"] = "single"
    text: str = Field(default="You are a helpful, concise customer support agent.", max_length=50_000)


class Transition(Strict):
    to: str = Field(min_length=1, max_length=100)
    when: str = Field(default="", max_length=2_000)


class PromptState(Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    prompt: str = Field(max_length=50_000)
    transitions: list[Transition] = Field(default_factory=list)


class MultiPrompt(Strict):
    """`initial_state` and every transition's `to` name one of `states`; state names are unique."""

    type: Literal["multi"]
    initial_state: str
    states: list[PromptState] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_states(self) -> MultiPrompt:
        names = [s.name for s in self.states]
        if len(set(names)) != len(names):
            raise ValueError("state names must be unique")
        if self.initial_state not in names:
            raise ValueError(f"initial_state '{self.initial_state}' is not one of the states")
        for state in self.states:
            for tr in state.transitions:
                if tr.to not in names:
                    raise ValueError(f"state '{state.name}' has a transition to unknown state '{tr.to}'")
        return self

    def state(self, name: str) -> PromptState | None:
        return next((s for s in self.states if s.name == name), None)


Prompt = Annotated[SinglePrompt | MultiPrompt, Field(discriminator="type")]


class LLMConfig(Strict):
    provider: Literal["openai", "offline"] = "openai"
    model: str | None = Field(default=None, max_length=200)
    temperature: float = Field(default=0.3, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=1, le=32_768)
    context_window: int = Field(default=16_000, ge=1_000, le=2_000_000)


class KnowledgeConfig(Strict):
    document_ids: list[str] = Field(default_factory=list, description="Ids of stored documents (others are a 422)")
    relevance_threshold: float = Field(default=0.3, ge=0, le=1)
    top_k: int = Field(default=3, ge=1, le=20)


class MemoryConfig(Strict):
    enabled: bool = True
    max_items: int = Field(default=5, ge=1, le=100)


class SupportCommands(Strict):
    whisper: bool = True
    tell: bool = True
    takeover: bool = True


class Lifecycle(Strict):
    dormant_after_s: int = Field(default=1800, ge=1)
    close_after_s: int = Field(default=86400, ge=1)


def _check_address(value: str) -> str:
    number = value.removeprefix("whatsapp:")
    if not E164.match(number):
        raise ValueError(f"'{value}' is not an E.164 number (optionally prefixed with 'whatsapp:')")
    return value


class ChannelsConfig(Strict):
    """Each number and messaging service routes to one agent: one another agent uses is a 422."""

    numbers: list[Annotated[str, Field(json_schema_extra={"pattern": ADDRESS_PATTERN})]] = Field(
        default_factory=list, json_schema_extra={"uniqueItems": True}
    )
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")

    @field_validator("numbers")
    @classmethod
    def _check_numbers(cls, value: list[str]) -> list[str]:
        for number in value:
            _check_address(number)
        if len(set(value)) != len(value):
            raise ValueError("numbers must not repeat")
        return value


def _check_http_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value


def _escalation_rule(schema: dict[str, Any]) -> None:
    # EscalationConfig._needs_from: enabled needs a from_number or a webhook_url.
    schema["anyOf"] = [
        {"properties": {"enabled": {"const": False}}},
        {"required": ["from_number"], "properties": {"from_number": {"type": "string"}}},
        {"required": ["webhook_url"], "properties": {"webhook_url": {"type": "string"}}},
    ]


class EscalationConfig(Strict):
    model_config = ConfigDict(json_schema_extra=_escalation_rule)

    enabled: bool = False
    from_number: str | None = Field(default=None, json_schema_extra={"pattern": E164.pattern})
    voice_prompt: str = Field(default="You are on a phone call. Speak in short, natural sentences.", max_length=20_000)
    voice: str = Field(default="Polly.Joanna", max_length=100)
    language: str = Field(default="en-US", max_length=20)
    max_call_s: int = Field(default=600, ge=30, le=14_400)
    voice_transport: Literal["gather", "conversation_relay"] = "gather"
    webhook_url: str | None = Field(default=None, json_schema_extra={"pattern": HTTP_URL_PATTERN})

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        return _check_http_url(value)

    @field_validator("from_number")
    @classmethod
    def _check_from(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not E164.match(value):
            raise ValueError(f"'{value}' is not an E.164 phone number")
        return value

    @model_validator(mode="after")
    def _needs_from(self) -> EscalationConfig:
        if self.enabled and not self.from_number and not self.webhook_url:
            raise ValueError("escalation.enabled needs a voice-capable from_number (or a webhook_url)")
        return self


PUBLIC_KEY_PATTERN = r"^pk_[A-Za-z0-9_-]{16,64}$"
LEAD_FIELD_NAME = r"^[a-z][a-z0-9_]{0,39}$"
DEFAULT_PORTS = {"http": 80, "https": 443}


def new_public_key() -> str:
    return "pk_" + secrets.token_urlsafe(18)


def normalize_origin(value: str) -> str:
    """An exact web origin as browsers send it in `Origin`: scheme://host[:port], lower case,
    without the scheme's default port; a path, query, fragment or credentials is refused."""
    parts = urlsplit(value.strip())
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"'{value}' is not an origin (scheme://host[:port], http or https)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"'{value}' is not an origin: no path, query, fragment or credentials")
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"'{value}' has an invalid port") from None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


class LeadFieldType(StrEnum):
    text = "text"
    email = "email"
    tel = "tel"


class LeadField(Strict):
    name: str = Field(pattern=LEAD_FIELD_NAME, description="The key in the session's input_fields")
    label: str = Field(min_length=1, max_length=100)
    type: LeadFieldType = LeadFieldType.text
    required: bool = False


class LeadForm(Strict):
    fields: list[LeadField] = Field(default_factory=list, max_length=10, description="Field names are unique")

    @field_validator("fields")
    @classmethod
    def _unique(cls, value: list[LeadField]) -> list[LeadField]:
        names = [f.name for f in value]
        if len(set(names)) != len(names):
            raise ValueError("lead field names must be unique")
        return value


def _widget_rule(schema: dict[str, Any]) -> None:
    # WidgetConfig._needs_origins: an enabled widget names at least one origin.
    schema["anyOf"] = [
        {"properties": {"enabled": {"const": False}}},
        {"required": ["allowed_origins"], "properties": {"allowed_origins": {"minItems": 1}}},
    ]


class WidgetConfig(Strict):
    """The web chat widget (SPEC §14). `public_key` is the server's (made when the widget is
    first enabled, replaced by rotate_key); `identity_secret` is write-only."""

    model_config = ConfigDict(json_schema_extra=_widget_rule)

    enabled: bool = False
    public_key: str | None = Field(
        default=None,
        description="Generated when the widget is enabled; POST /v1/agents/{id}/widget/rotate_key replaces it",
        json_schema_extra={"readOnly": True, "pattern": PUBLIC_KEY_PATTERN},
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Exact origins (scheme://host[:port]) of the sites that embed the widget",
        json_schema_extra={
            "items": {"type": "string", "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.-]+(:[0-9]{1,4})?/?$"}
        },
    )
    title: str | None = Field(default=None, max_length=100)
    greeting: str | None = Field(default=None, max_length=500)
    color: str = Field(default="#2563eb", pattern=r"^#[0-9a-fA-F]{6}$")
    lead_form: LeadForm = Field(default_factory=LeadForm)
    identity_secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="HMAC-SHA256 key of identity verification; never shown again (reads say identity_secret_set)",
        json_schema_extra={"writeOnly": True},
    )
    identity_secret_set: bool = Field(
        default=False, description="Whether an identity_secret is set", json_schema_extra={"readOnly": True}
    )
    show_operator_names: bool = Field(default=False, description="Show visitors the operator's token name")

    @model_validator(mode="before")
    @classmethod
    def _derive_secret_set(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {**data, "identity_secret_set": data.get("identity_secret") is not None}
        return data

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for origin in value:
            norm = normalize_origin(origin)
            if norm not in out:
                out.append(norm)
        return out

    @field_validator("public_key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        if value is not None and not re.match(PUBLIC_KEY_PATTERN, value):
            raise ValueError("not a public key this server issued")
        return value

    @model_validator(mode="after")
    def _needs_origins(self) -> WidgetConfig:
        if self.enabled and not self.allowed_origins:
            raise ValueError("widget.enabled needs at least one of allowed_origins (e.g. https://www.example.com)")
        return self


BUILTIN_TOOL_NAMES = frozenset(
    {"request_human", "request_call", "search_knowledge", "transition", "set_field", "end_session", "end_call"}
)
RESERVED_TOOL_NAMES: dict[str, Any] = {"enum": sorted(BUILTIN_TOOL_NAMES)}


class ToolConfig(Strict):
    name: str = Field(
        pattern=r"^[a-zA-Z0-9_-]{1,64}$",
        description="Unique among the agent's tools; the built-in tools' names are reserved",
        json_schema_extra={"not": RESERVED_TOOL_NAMES},
    )
    description: str = Field(default="", max_length=2_000)
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="A JSON Schema (draft 2020-12) of the arguments; its top-level type, if given, is object",
        json_schema_extra={"properties": {"type": {"const": "object"}}},
    )
    url: str = Field(json_schema_extra={"pattern": HTTP_URL_PATTERN})
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _check_http_url(value) or value

    @field_validator("parameters")
    @classmethod
    def _check_parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        import jsonschema  # only agents with custom tools need it

        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        if value.get("type", "object") != "object":
            raise ValueError("the top-level schema must describe an object (type: object)")
        return value


EVENT_TYPES = (
    "message.created",
    "session.created",
    "session.help_requested",
    "session.mode_changed",
    "session.status_changed",
    "call.started",
    "call.completed",
)


class WebhookConfig(Strict):
    url: str = Field(json_schema_extra={"pattern": HTTP_URL_PATTERN})
    secret: str = Field(min_length=8, max_length=500)
    events: list[Annotated[str, Field(json_schema_extra={"enum": list(EVENT_TYPES)})]] = Field(
        default_factory=lambda: list(EVENT_TYPES)
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _check_http_url(value) or value

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: list[str]) -> list[str]:
        unknown = [e for e in value if e not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event(s) {unknown}; known: {list(EVENT_TYPES)}")
        return value


class AgentSpec(Strict):
    """What an integrator writes (API body or YAML); `Agent` adds identity and timestamps."""

    name: str = Field(min_length=1, max_length=200)
    status: AgentStatus = AgentStatus.active
    welcome_message: str | None = Field(default=None, max_length=1_600)
    language: str = Field(default="en", max_length=20)
    prompt: Prompt = Field(default_factory=SinglePrompt)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    support_commands: SupportCommands = Field(default_factory=SupportCommands)
    on_help_requested: OnHelpRequested = OnHelpRequested.continue_
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    tools: list[ToolConfig] = Field(default_factory=list, max_length=32, description="Tool names are unique")
    webhook: WebhookConfig | None = None
    widget: WidgetConfig = Field(default_factory=WidgetConfig)
    debounce_ms: int | None = Field(default=None, ge=0, le=30_000)

    @field_validator("tools")
    @classmethod
    def _check_tools(cls, value: list[ToolConfig]) -> list[ToolConfig]:
        names = [t.name for t in value]
        if len(set(names)) != len(names):
            raise ValueError("tool names must be unique")
        clash = sorted(set(names) & BUILTIN_TOOL_NAMES)
        if clash:
            raise ValueError(f"tool name(s) {clash} are reserved for built-in tools")
        return value


class Agent(AgentSpec):
    id: str
    chat_agent_id: int
    created_at: str
    updated_at: str

    def debounce_for(self, channel: Channel) -> int:
        if self.debounce_ms is not None:
            return self.debounce_ms
        return 0 if channel in (Channel.api, Channel.web) else 1500

    @property
    def initial_state(self) -> str:
        return self.prompt.initial_state if isinstance(self.prompt, MultiPrompt) else "default"


class SessionMetadata(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_fields: dict[str, Any] = Field(default_factory=dict)
    state_fields: dict[str, Any] = Field(default_factory=dict)
    context: list[str] = Field(default_factory=list)


class ChannelUse(BaseModel):
    """What a session knows of one channel the customer used: their opt-out there and when
    they last wrote on it (the WhatsApp window runs from that)."""

    model_config = ConfigDict(frozen=True)

    opted_out: bool = False
    last_customer_message_at: str | None = None


class Session(BaseModel):
    """The OSVI session object plus our fields (SPEC §3). `channel`, `customer_address` and
    `opted_out` are those of the channel the customer used last."""

    model_config = ConfigDict(frozen=True)

    id: str
    chat_agent_id: int
    account_id: int
    customer_id: str
    mode: SessionMode
    help_requested: bool
    status: SessionStatus
    current_state: str
    metadata: SessionMetadata
    active_human: str | None
    created_at: str
    updated_at: str
    agent_id: str
    channel: Channel
    customer_address: str | None
    last_customer_message_at: str | None
    last_activity_at: str | None
    help_requested_at: str | None
    help_reason: str | None
    summary: str | None
    closed_reason: str | None
    opted_out: bool
    delivery_error: dict[str, Any] | None = None
    # Internal bookkeeping, not part of the API object.
    agent_address: str | None = Field(default=None, exclude=True)
    messaging_service_sid: str | None = Field(default=None, exclude=True)
    version: int = Field(default=0, exclude=True)
    seq: int = Field(default=0, exclude=True)
    last_cust_seq: int = Field(default=0, exclude=True)
    answered_seq: int = Field(default=0, exclude=True)
    channel_use: dict[Channel, ChannelUse] = Field(default_factory=dict, exclude=True)
    # The escalation call in progress, if any (set and cleared atomically with the call, §8);
    # the API lists calls in `calls[]`, the console shows this as a badge.
    live_call: str | None = Field(default=None, exclude=True)

    @property
    def unanswered(self) -> bool:
        return self.last_cust_seq > self.answered_seq

    def use_of(self, channel: Channel) -> ChannelUse:
        if channel is self.channel:
            return ChannelUse(opted_out=self.opted_out, last_customer_message_at=self.last_customer_message_at)
        return self.channel_use.get(channel) or ChannelUse()

    def outside_window(self, channel: Channel | None = None, now_s: float | None = None) -> bool:
        """Whether free text may no longer go to the customer on `channel` (default: the one
        in use): WhatsApp's 24-hour customer service window since their last message there
        (templates still may)."""
        on = channel or self.channel
        window = on.capabilities.session_window_s
        if window is None:
            return False
        last = self.use_of(on).last_customer_message_at
        if not last:
            return True
        now = now_s if now_s is not None else time.time()
        return now - ms_from_iso(last) / 1000 > window

    def window_refusal(self, channel: Channel | None = None) -> str:
        caps = (channel or self.channel).capabilities
        return f"outside the {caps.label} {(caps.session_window_s or 0) // 3600}-hour window"


class Delivery(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: DeliveryStatus
    error_code: int | None = None
    error_message: str | None = None
    updated_at: str


def pending_delivery(at: str) -> dict[str, str]:
    """The `delivery` of an outbound message stored to be delivered (SPEC §3)."""
    return {"status": DeliveryStatus.pending.value, "updated_at": at}


def outbound_fields(session: Session, at: str) -> dict[str, Any]:
    """What a message to the customer records when it is written: the channel in use and,
    on a delivered channel, the addresses (`route`) and a pending delivery, so it goes out
    where the customer was even if they move on before it is sent."""
    out: dict[str, Any] = {"channel": session.channel.value}
    if session.channel.delivered:
        out["delivery"] = pending_delivery(at)
        out["route"] = {
            "to": session.customer_address or session.customer_id,
            "from": session.agent_address or "",
            "messaging_service_sid": session.messaging_service_sid or "",
        }
    return out


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    session_id: str
    seq: int
    role: Role
    text: str
    media: list[Media] = Field(default_factory=list)
    created_at: str
    author: str | None = None
    channel_message_id: str | None = None
    delivery: Delivery | None = None
    parts: int | None = None
    in_reply_to: int | None = None
    private: bool = False
    kind: MessageKind | None = None
    # The channel it came in on or goes out on (a customer may write on SMS, then WhatsApp).
    channel: Channel | None = None
    # Where an outbound message goes (to, from, messaging_service_sid), fixed when written.
    route: dict[str, str] | None = Field(default=None, exclude=True)
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def public(self) -> bool:
        return self.role in PUBLIC_ROLES and not self.private
