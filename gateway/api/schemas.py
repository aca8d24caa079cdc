"""Request and response bodies of the HTTP API (pydantic; also the OpenAPI schemas)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from agent_core.models import Message, Session
from agent_core.support import Command

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_CONTENT = 10_000
MAX_CONTEXT_ITEM = 5_000
CONTEXT_KEEP = 5


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


CustomerId = Annotated[str, BeforeValidator(_customer_id), Field(max_length=200)]


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
    content: str = Field(max_length=MAX_CONTENT)
    session_id: str | None = None

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
    context: str = Field(max_length=MAX_CONTEXT_ITEM)

    @field_validator("context")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class SupportBody(Lenient):
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


class CallOut(BaseModel):
    id: str
    session_id: str
    status: str


class SessionDetail(Session):
    calls: list[dict[str, Any]] = Field(default_factory=list)


class SessionsPage(BaseModel):
    items: list[Session]
    next_cursor: str | None


class MessagesPage(BaseModel):
    items: list[Message]
    next_cursor: str | None


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
