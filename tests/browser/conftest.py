"""Browser tests: Debian's Chromium driven by Playwright, against a live Kopilka server.

The server is the real app under uvicorn, in a thread, on a free port, with its own
SQLite database loaded with the demo tenant (as ``make run`` serves it). The browser is
``/usr/bin/chromium`` (never a downloaded one). Off CI, a machine without Chromium or
Playwright skips these tests with the reason printed; under ``CI=true`` that fails.

Every page a test opens is watched: a JavaScript error or a console error fails the test.
Screenshots go to ``docs/screenshots/`` when ``KOPILKA_SCREENSHOTS=1`` (``make
screenshots``), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from kopilka.api.app import create_app
from kopilka.core.db import make_engine
from kopilka.core.migrate import upgrade
from kopilka.demo import DemoInfo, load_demo

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ON_CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"


def _missing() -> str | None:
    if not (Path(CHROMIUM).exists() and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    return None


_MISSING = _missing()


def pytest_sessionstart(session: pytest.Session) -> None:
    if _MISSING is not None:
        if ON_CI:
            raise pytest.UsageError(f"CI=true requires the browser tests to run: {_MISSING}")
        print(f"\nSKIPPING the browser tests: {_MISSING}\n")


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread is pytest's
        pass


@dataclass
class Live:
    url: str
    demo: DemoInfo
    engine: Any

    def password(self, role: str) -> tuple[str, str]:
        user = next(u for u in self.demo.users if u.role == role)
        return user.login, user.password


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if _MISSING is not None:
        pytest.skip(_MISSING)
    url = f"sqlite:///{tmp_path_factory.mktemp('live') / 'kopilka.db'}"
    engine = make_engine(url)
    upgrade(engine)
    demo = load_demo(engine)
    server = _Server(uvicorn.Config(create_app(url), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Live(f"http://127.0.0.1:{port}", demo, engine)
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


@pytest.fixture(scope="session")
def browser(live: Live) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class Watched:
    """A page whose console errors and uncaught exceptions are collected."""

    page: Any
    live: Live
    shots: Path
    problems: list[str] = field(default_factory=list)

    def goto(self, path: str) -> Any:
        return self.page.goto(self.live.url + path)

    def sign_in(self, role: str = "owner") -> None:
        login, password = self.live.password(role)
        self.goto("/login")
        self.page.fill("input[name=tenant]", self.live.demo.tenant.slug)
        self.page.fill("input[name=login]", login)
        self.page.fill("input[name=password]", password)
        self.page.click("[data-testid=sign-in]")
        self.page.wait_for_selector("[data-testid=sign-out]")

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser: Any, live: Live, tmp_path: Path) -> Iterator[Watched]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 860}, locale="ru-RU", timezone_id="Europe/Moscow"
    )
    tab = context.new_page()
    shots = SCREENSHOTS if os.environ.get("KOPILKA_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    watched = Watched(tab, live, shots)
    # A page answered with 4xx on purpose (a form with errors, a refused screen) makes
    # Chromium log "Failed to load resource" for that document; that is the status we
    # meant, not a broken page. The same message for a script, style or image is not.
    refused_documents: set[str] = set()
    tab.on(
        "response",
        lambda response: (
            refused_documents.add(response.url)
            if response.request.resource_type == "document" and response.status >= 400
            else None
        ),
    )

    def on_console(message: Any) -> None:
        if message.type not in ("error", "warning"):
            return
        if (
            message.text.startswith("Failed to load resource")
            and message.location.get("url") in refused_documents
        ):
            return
        watched.problems.append(f"console {message.type}: {message.text} {message.location}")

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
    yield watched
    context.close()
    assert watched.problems == [], "the browser reported:\n" + "\n".join(watched.problems)
