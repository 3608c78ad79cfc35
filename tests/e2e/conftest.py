"""Fixtures for the end-to-end tests: the demo stack on free ports, Debian's Chromium, and
the Playground page, with a screenshot of the page whenever a test fails."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from bot.demo import PLAYGROUND_CLI, PROJECT_ROOT, DemoSettings, DemoStack
from tests.e2e.playground import TURN_TIMEOUT_MS, Playground

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium, never a downloaded browser; nothing may reach the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 1600}


def _require(available: bool, reason: str) -> None:
    """Skip on a laptop without the tool; CI must have it, so there it is a failure."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the end-to-end tests)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    """The demo's sandbox, seeded bot and Playground, on free ports, files in a temp folder."""
    _require(shutil.which("node") is not None, "node is not installed")
    _require(PLAYGROUND_CLI.is_file(), "npm packages are missing: run `npm install`")
    settings = DemoSettings.on_free_ports(
        tmp_path_factory.mktemp("demo"),
        # A quick Microsoft: number orders take 0.2 s and the workers look every 0.2 s.
        operation_delay=0.2,
        sync_poll_seconds=0.2,
    )
    with DemoStack(settings) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (`make test` installs it when missing)."""
    _require(CHROMIUM.is_file(), f"{CHROMIUM} is missing: `apt-get install chromium`")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's outcome on the test, so fixtures know whether it failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def playground(
    demo_stack: DemoStack, browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Playground]:
    """A fresh Playground page; on failure, the page as it was is saved for the report."""
    expect.set_options(timeout=TURN_TIMEOUT_MS)
    page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    page.set_default_timeout(TURN_TIMEOUT_MS)
    chat = Playground(page, ARTIFACTS)
    chat.open(demo_stack.settings.playground_url)
    try:
        yield chat
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            chat.screenshot(f"failed-{request.node.name}")
            for process in demo_stack.processes:
                print(f"--- {process.name} ({process.log_path}):\n{process.log_tail(40)}")
        page.close()
