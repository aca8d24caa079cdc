"""Imports point one way (SPEC §2): gateway → workers → agent_core → channels.models.

Every pair of product packages is checked, so a cycle cannot form anywhere; the domain sees
channels only through `channels.models`, and has no HTTP framework and no RQ.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("gateway", "workers", "agent_core", "channels")
# What each package may import of the others.
ALLOWED = {
    "gateway": {"workers", "agent_core", "channels"},
    "workers": {"agent_core", "channels"},
    "agent_core": {"channels"},
    "channels": set(),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def imported_packages(path: Path) -> set[str]:
    return {m.split(".")[0] for m in imported_modules(path)}


def offenders(package: str, forbidden: set[str]) -> dict[str, list[str]]:
    found = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & forbidden) for p in (ROOT / package).rglob("*.py")}
    return {k: v for k, v in found.items() if v}


@pytest.mark.parametrize("package", PRODUCT)
def test_each_package_imports_only_the_packages_below_it(package: str) -> None:
    assert offenders(package, set(PRODUCT) - ALLOWED[package] - {package}) == {}


def test_the_allowed_arrows_form_no_cycle() -> None:
    seen: list[str] = []

    def visit(pkg: str, path: tuple[str, ...]) -> None:
        assert pkg not in path, f"cycle: {' -> '.join((*path, pkg))}"
        for dep in ALLOWED[pkg]:
            visit(dep, (*path, pkg))
        seen.append(pkg)

    for pkg in PRODUCT:
        visit(pkg, ())
    assert set(seen) == set(PRODUCT)


def test_the_domain_sees_channels_only_through_channels_models() -> None:
    found = {
        str(p.relative_to(ROOT)): sorted(
            m for m in imported_modules(p) if m.split(".")[0] == "channels" and m != "channels.models"
        )
        for p in (ROOT / "agent_core").rglob("*.py")
    }
    assert {k: v for k, v in found.items() if v} == {}


def test_the_checker_sees_a_wrong_arrow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from gateway.app import create_app\nimport workers.jobs\nfrom channels.twilio import verify\n")
    assert imported_packages(bad) == {"gateway", "workers", "channels"}
    assert "channels.twilio" in imported_modules(bad)


def test_agent_core_has_no_http_framework_or_rq() -> None:
    assert offenders("agent_core", {"starlette", "rq", "uvicorn"}) == {}


def test_rq_is_known_only_to_workers() -> None:
    assert {pkg: offenders(pkg, {"rq"}) for pkg in ("gateway", "agent_core", "channels")} == {
        "gateway": {},
        "agent_core": {},
        "channels": {},
    }
