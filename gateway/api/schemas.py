"""Request and response bodies of the HTTP API (pydantic; also the OpenAPI schemas)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from agent_core.calls import Call
from agent_core.models import Message, Session
from agent_core.support import NEEDS_TEXT, Command

CONTROL_CHARS = r"\x00-\x1f\x7f"
CONTROL = re.compile(f"[{CONTROL_CHARS}]")
MAX_CONTENT = 10_000
MAX_CONTEXT_ITEM = 5_000
CONTEXT_KEEP = 5

# The validators' rules as JSON Schema patterns (unanchored, as JSON Schema matches them), so the
# OpenAPI document says what a 422 is for. The validators keep their own messages.
NOT_BLANK = r"\S"
# Text that is not only whitespace and NUL characters (NULs are dropped before the check).
NOT_BLANK_TEXT = r"[^\s\x00]"
CUSTOMER_ID_PATTERN = f"^[^{CONTROL_CHARS}]*[^\\s{CONTROL_CHARS}][^{CONTROL_CHARS}]*$"
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# A message page's cursor is the seq the next page starts after.
SEQ_CURSOR = "^[0-9]{1,18}$"


def _customer_id(value: Any) -> Any:
    # OSVI clients send numeric customer ids too; they are the same customer as their text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _check_customer_id(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


CustomerId = Annotated[
    str,
    BeforeValidator(_customer_id),
    Field(max_length=200, json_schema_extra={"pattern": CUSTOMER_ID_PATTERN}),
]


def clean_context(items: list[str] | None) -> list[str]:
    """The 5 newest non-empty entries (whitespace-only counts as empty), oldest first."""
    kept = [i for i in (items or []) if i.strip()]
    return kept[-CONTEXT_KEEP:]


class Lenient(BaseModel):
    # OSVI clients may send fields we do not use; they are ignored, not rejected.
    model_config = ConfigDict(extra="ignore")


class CreateSessionBody(Lenient):
    agent_uuid: str = Field(min_length=1, max_length=100)
    customer_id: CustomerId
    input_fields: dict[str, Any] | None = None
    context: list[Annotated[str, Field(max_length=MAX_CONTEXT_ITEM)]] | None = Field(default=None, max_length=100)

    @field_validator("customer_id")
    @classmethod
    def _cid(cls, value: str) -> str:
        return _check_customer_id(value)


class InboundBody(Lenient):
    agent_uuid: str = Field(min_length=1, max_length=100)
    customer_id: CustomerId
    content: str = Field(max_length=MAX_CONTENT, json_schema_extra={"pattern": NOT_BLANK_TEXT})
    session_id: str | None = Field(
        default=None,
        description="A session id (UUID); empty or null: the customer's open session, or a new one",
        json_schema_extra={"pattern": f"^$|{UUID_PATTERN}"},
    )

    @field_validator("customer_id")
    @classmethod
    def _cid(cls, value: str) -> str:
        return _check_customer_id(value)

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        value = value.replace("\x00", "")
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("session_id")
    @classmethod
    def _session_id(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError("must be a session id (UUID)") from None
        return value


class InjectContextBody(Lenient):
    context: str = Field(max_length=MAX_CONTEXT_ITEM, json_schema_extra={"pattern": NOT_BLANK})

    @field_validator("context")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


def _support_rule(schema: dict[str, Any]) -> None:
    # agent_core.support refuses a command in NEEDS_TEXT (tell, whisper, a plain message) without text.
    silent = [c.value for c in Command if c not in NEEDS_TEXT]
    schema["anyOf"] = [
        {"required": ["command"], "properties": {"command": {"enum": silent}}},
        {"required": ["message"], "properties": {"message": {"type": "string", "pattern": NOT_BLANK_TEXT}}},
    ]


class SupportBody(Lenient):
    """`message` is required (not blank) unless `command` is one that needs no text."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_support_rule)

    command: Command | None = None
    message: str | None = Field(default=None, max_length=16_000)


class TemplateBody(Lenient):
    content_sid: str = Field(pattern=r"^HX[0-9a-fA-F]{32}$")
    content_variables: dict[str, str] | None = None


class TemplateResult(BaseModel):
    state: str
    session_id: str
    message_id: str
    seq: int


class SupportResult(BaseModel):
    state: str
    session_id: str
    command: str | None
    reply: str | None = None
    active_human: str | None = None


class InboundResult(BaseModel):
    session_id: str
    reply: str | None
    state: str
    mode: str
    help_requested: bool
    pending: bool = False


class ContextResult(BaseModel):
    session_id: str
    context: list[str]


class CallOut(Call):
    """The Call of SPEC §3 with OSVI's read-back names."""

    call_id: str
    duration_seconds: int | None
    phone_number: str


class CallsPage(BaseModel):
    items: list[CallOut]
    next_cursor: str | None = Field(json_schema_extra={"pattern": SEQ_CURSOR})


class SessionDetail(Session):
    calls: list[CallOut] = Field(default_factory=list, description="Escalation calls, newest first")


class SessionsPage(BaseModel):
    items: list[Session]
    next_cursor: str | None


class MessagesPage(BaseModel):
    items: list[Message]
    next_cursor: str | None = Field(json_schema_extra={"pattern": SEQ_CURSOR})


class Stats(BaseModel):
    total: int
    active: int
    dormant: int
    closed: int
    help_requested: int
    support: int


class ActiveAgent(BaseModel):
    agent_id: str
    name: str
    status: str
