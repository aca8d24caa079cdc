"""The `search_knowledge(query)` tool offered to the model when the agent has documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent_core.knowledge.retrieval import CACHE, IndexCache, retrieve
from agent_core.llm.base import Passage, ToolSpec
from agent_core.models import Agent, Session
from agent_core.store import Store
from agent_core.tools import BuiltinTool, ToolArgumentError, ToolContext

NOTHING_FOUND = "No passage in the knowledge base matches this query. Do not guess; say you are not sure."
MAX_QUERY_CHARS = 1000


def search_tool_result(passages: Sequence[Passage]) -> str:
    """Passages as the tool's text result: numbered, each with its document name and score."""
    if not passages:
        return NOTHING_FOUND
    blocks = [f"[{i}] {p.document_name} (relevance {p.score:.2f})\n{p.text}" for i, p in enumerate(passages, start=1)]
    return "Passages from the knowledge base, best first:\n\n" + "\n\n".join(blocks)


def search_tool(store: Store, cache: IndexCache = CACHE) -> BuiltinTool:
    """The built-in tool, bound to the worker's store."""

    def offer(agent: Agent, session: Session) -> ToolSpec | None:
        if not agent.knowledge.document_ids:
            return None
        return ToolSpec(
            "search_knowledge",
            "Search the knowledge base (the documents attached to you) for passages that answer a question. "
            "Use it when the passages already in your instructions do not answer the customer.",
            {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to look for, in a few words"}},
                "required": ["query"],
                "additionalProperties": False,
            },
        )

    def run(ctx: ToolContext, args: dict[str, Any]) -> str:
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolArgumentError("'query' must be a non-empty string")
        return search_tool_result(retrieve(store, ctx.agent.knowledge, query[:MAX_QUERY_CHARS], cache))

    return BuiltinTool("search_knowledge", offer, run)
