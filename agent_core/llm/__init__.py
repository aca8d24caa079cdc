"""LLM providers behind two narrow seams: `complete(LLMRequest) -> LLMResponse` (sync) and
`AsyncLLMProvider` (`stream(LLMRequest)` yields text deltas, then the whole response).

`OpenAIProvider` and `AsyncOpenAIProvider` are imported on first use: the openai SDK is ≈45 MB
and a second of import time that processes using the offline responder (and the web process)
never need.
"""

from typing import Any

from agent_core.llm.base import (
    AsyncLLMProvider,
    LLMChunk,
    LLMError,
    LLMProvider,
    LLMRequest,
    LLMResponse,
    LLMTimeout,
    LLMUnavailable,
    Passage,
    ToolCall,
    ToolSpec,
    collect,
)
from agent_core.llm.offline import AsyncOfflineProvider, OfflineProvider

__all__ = [
    "AsyncLLMProvider",
    "AsyncOfflineProvider",
    "AsyncOpenAIProvider",
    "LLMChunk",
    "LLMError",
    "LLMProvider",
    "LLMRequest",
    "LLMResponse",
    "LLMTimeout",
    "LLMUnavailable",
    "OfflineProvider",
    "OpenAIProvider",
    "Passage",
    "ToolCall",
    "ToolSpec",
    "collect",
]


def __getattr__(name: str) -> Any:
    if name == "OpenAIProvider":
        from agent_core.llm.openai import OpenAIProvider

        return OpenAIProvider
    if name == "AsyncOpenAIProvider":
        from agent_core.llm.openai import AsyncOpenAIProvider

        return AsyncOpenAIProvider
    raise AttributeError(name)
