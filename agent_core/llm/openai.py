"""Any OpenAI-compatible Chat Completions endpoint, through the official SDK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai as openai_sdk

from agent_core.llm.base import (
    LLMError,
    LLMRequest,
    LLMResponse,
    LLMTimeout,
    LLMUnavailable,
    ToolCall,
)

# The SDK numbers each attempt of a request in this header: 0 for the first, then 1, 2, …
RETRY_COUNT_HEADER = "x-stainless-retry-count"


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        http_client: httpx.Client,
        base_url: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        """`on_retry` is called for each retry the SDK makes (it retries inside `complete`,
        out of our sight, so a request hook on `http_client` spots the retried attempts)."""
        if on_retry is not None:
            http_client.event_hooks = {
                **http_client.event_hooks,
                "request": [*http_client.event_hooks.get("request", []), _retry_hook(on_retry)],
            }
        self.client = openai_sdk.OpenAI(
            api_key=api_key,
            base_url=base_url,
            http_client=http_client,
            timeout=timeout_s,
            max_retries=max_retries,
        )

    def complete(self, request: LLMRequest) -> LLMResponse:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.tools:
            kwargs["tools"] = [t.openai() for t in request.tools]
            kwargs["tool_choice"] = request.tool_choice
        try:
            completion = self.client.chat.completions.create(**kwargs)
        except openai_sdk.APITimeoutError as exc:
            raise LLMTimeout(str(exc)) from exc
        except (openai_sdk.APIConnectionError, openai_sdk.RateLimitError, openai_sdk.InternalServerError) as exc:
            raise LLMUnavailable(str(exc)) from exc
        except openai_sdk.APIStatusError as exc:
            raise LLMError(f"{exc.status_code}: {exc.message}") from exc
        except openai_sdk.OpenAIError as exc:
            raise LLMError(str(exc)) from exc
        if not completion.choices:
            raise LLMError("the model returned no choices")
        message = completion.choices[0].message
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
            for c in (message.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        usage = completion.usage.model_dump() if completion.usage else {}
        return LLMResponse(
            text=message.content,
            tool_calls=calls,
            model=completion.model,
            usage={k: v for k, v in usage.items() if isinstance(v, int)},
        )


def _retry_hook(on_retry: Callable[[], None]) -> Callable[[httpx.Request], None]:
    def hook(request: httpx.Request) -> None:
        # Only the SDK's requests carry the header; others on the same client pass untouched.
        if request.headers.get(RETRY_COUNT_HEADER, "0") != "0":
            on_retry()

    return hook
