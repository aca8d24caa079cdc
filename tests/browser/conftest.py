"""Real-browser fixtures: Debian's chromium driven by Playwright, against real `chatgw web` and
`chatgw worker` processes on the test Redis (dev Twilio mode, offline LLM, no keys).

`make test` installs chromium when it is missing; here a missing browser is a failure, never a
skip, so a browser test cannot silently stop testing anything."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.browser.gateway import Gateway

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Debian's chromium is not installed: run the tests with `make test`, which installs it")


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # --no-sandbox: the suite runs as root in CI, where chromium's sandbox refuses to start.
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (kept after the run; var/ is ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def gateway(tmp_path: Path, redis_url: str) -> Iterator[Gateway]:
    with Gateway(tmp_path, redis_url) as gw:
        yield gw
