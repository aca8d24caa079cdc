"""Imports point one way: channels/ and agent_core/ never import gateway/ or workers/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"gateway", "workers"}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", ["channels", "agent_core"])
def test_inner_packages_never_import_gateway_or_workers(package: str) -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(imported_packages(p) & FORBIDDEN) for p in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_checker_sees_a_wrong_arrow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from gateway.app import create_app\nimport workers.jobs\n")
    assert imported_packages(bad) & FORBIDDEN == {"gateway", "workers"}


def test_agent_core_has_no_http_framework_or_rq() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(imported_packages(p) & {"starlette", "rq", "uvicorn"})
        for p in (ROOT / "agent_core").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
