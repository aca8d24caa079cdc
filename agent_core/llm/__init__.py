"""LLM providers behind one narrow interface; `PROVIDERS` maps names to factories."""

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
from agent_core.llm.openai import OpenAIProvider

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
