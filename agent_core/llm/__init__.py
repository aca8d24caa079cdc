"""LLM providers behind one narrow interface: `complete(LLMRequest) -> LLMResponse`.

`OpenAIProvider` is imported on first use: the openai SDK is ≈45 MB and a second of import
time that processes using the offline responder (and the web process) never need.
"""

from typing import Any

from agent_core.llm.base import (
    LLMError,
    LLMProvider,
    LLMRequest,
    LLMResponse,
    LLMTimeout,
    LLMUnavailable,
    Passage,
    ToolCall,
    ToolSpec,
)
from agent_core.llm.offline import OfflineProvider

__all__ = [
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
]


def __getattr__(name: str) -> Any:
    if name == "OpenAIProvider":
        from agent_core.llm.openai import OpenAIProvider

        return OpenAIProvider
    raise AttributeError(name)
