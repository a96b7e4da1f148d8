"""Debian's Chromium, driven by Playwright, for the pages the collector serves (the
dashboard, the enrollment page): how it is launched here, and what a test watches."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying Google's hosts, which a
# closed network refuses; no sandbox, since the tests may run as root.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Screenshots for a person to look at (ignored by git).
ARTIFACTS = Path(__file__).parents[1] / "artifacts"


@contextmanager
def launched() -> Iterator[Browser]:
    """Chromium with a fresh profile of its own (Playwright downloads no browser here)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (scripts/test does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def watched(page: Page) -> list[str]:
    """Collect the page's console errors and uncaught exceptions as they come."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems
