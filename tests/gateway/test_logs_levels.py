"""Third-party loggers follow LOG_LEVEL and our format, whatever level a library sets on its own."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from agent_core.knowledge.index import Chunk, ChunkIndex
from gateway.logs import configure

CHUNKS = [Chunk("doc_1", "FAQ", "Refunds reach your card within 5 days."), Chunk("doc_1", "FAQ", "We ship worldwide.")]


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    root.handlers.clear()
    root.setLevel(level)


def test_building_a_knowledge_index_logs_nothing_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", "console")
    ChunkIndex(CHUNKS)
    logging.getLogger("agent_core.test").info("index ready")
    err = capsys.readouterr().err
    assert "Building index" not in err
    assert "index ready" in err


def test_at_debug_library_lines_come_in_our_json_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure("DEBUG", "json")
    ChunkIndex(CHUNKS)
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    bm25 = [line for line in lines if line.get("logger") == "bm25s"]
    assert bm25 and bm25[0]["event"] == "Building index from tokens" and bm25[0]["level"] == "debug"


def test_a_library_at_warning_stays_quiet_below_it(capsys: pytest.CaptureFixture[str]) -> None:
    configure("WARNING", "console")
    ChunkIndex(CHUNKS)
    logging.getLogger("bm25s").info("an info line from the library")
    logging.getLogger("bm25s").warning("a warning from the library")
    err = capsys.readouterr().err
    assert "Building index" not in err and "an info line" not in err
    assert "a warning from the library" in err
