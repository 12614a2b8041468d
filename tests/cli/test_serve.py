"""``kopilka serve``: uvicorn gets the app for the chosen database; no server is started."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from kopilka.core.settings import get_settings
from tests.cli.conftest import Cli


def _restore_database_url_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` exports --database-url for its workers; put the variable back after."""
    monkeypatch.setenv("KOPILKA_DATABASE_URL", "sqlite:///never-used.db")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Stand-ins for the API factory and uvicorn.run; records what serve asked for."""
    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("kopilka.api.app")

    def create_app(database_url: str | None = None) -> object:
        return {"app_for": database_url}

    fake.create_app = create_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kopilka.api.app", fake)
    monkeypatch.setattr(
        uvicorn, "run", lambda app, **options: calls.append({"app": app, **options})
    )
    _restore_database_url_after(monkeypatch)
    yield calls
    get_settings.cache_clear()


def test_serve_runs_the_app_for_the_database_and_prints_the_url(
    cli: Cli, served: list[dict[str, Any]]
) -> None:
    result = cli("serve", "--host", "127.0.0.1", "--port", "8765")

    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8765" in result.output
    (call,) = served
    assert call["app"] == {"app_for": cli.url}
    assert call["host"] == "127.0.0.1" and call["port"] == 8765


def test_serve_with_reload_names_the_factory(cli: Cli, served: list[dict[str, Any]]) -> None:
    result = cli("serve", "--reload")

    assert result.exit_code == 0, result.output
    (call,) = served
    assert call["app"] == "kopilka.api.app:create_app"
    assert call["factory"] is True and call["reload"] is True


def test_serve_without_the_api_is_a_clear_error(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kopilka.api.app", None)
    _restore_database_url_after(monkeypatch)

    result = cli("serve")

    get_settings.cache_clear()
    assert result.exit_code == 2
    assert "error [api_unavailable]" in result.stderr
