"""``kopilka webhooks deliver``: one run with a table of what it did, or ``--loop``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from kopilka.cli import common
from kopilka.cli.main import app
from tests.events.conftest import Hooks
from tests.events.receiver import Receiver


@pytest.fixture(autouse=True)
def wide_consoles() -> Iterator[None]:
    saved = common.console.width, common.err_console.width
    common.console.width = common.err_console.width = 200
    yield
    common.console.width, common.err_console.width = saved


def kopilka(hooks: Hooks, *args: str) -> Result:
    url = hooks.engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(app, ["--database-url", url, "webhooks", *args])


def cells_of(output: str) -> list[str]:
    row = next(line for line in output.splitlines() if line.startswith("│ ") and "due" not in line)
    return [cell.strip() for cell in row.split("│") if cell.strip()]


def test_deliver_sends_what_is_due_and_prints_a_table(hooks: Hooks, receiver: Receiver) -> None:
    hooks.endpoint(receiver.url, receiver=receiver)
    hooks.emit()
    hooks.emit("subscriber.activated")
    result = kopilka(hooks, "deliver", "--tenant", hooks.tenant.slug)
    assert result.exit_code == 0, result.output
    assert "webhook deliveries" in result.output
    assert cells_of(result.output)[:2] == ["2", "2"]  # due, delivered
    assert len(receiver.received) == 2 and all(r.verified for r in receiver.received)
    assert [d.status for d in hooks.deliveries()] == ["delivered", "delivered"]

    again = kopilka(hooks, "deliver", "--tenant", hooks.tenant.slug)
    assert again.exit_code == 0 and cells_of(again.output)[0] == "0"
    unknown = kopilka(hooks, "deliver", "--tenant", "no-such-tenant")
    assert unknown.exit_code == 2


def test_deliver_loop_runs_until_interrupted(
    hooks: Hooks, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks.endpoint(receiver.url, receiver=receiver)
    hooks.emit()
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        raise KeyboardInterrupt  # what Ctrl-C does during the pause

    monkeypatch.setattr(time, "sleep", pause)
    result = kopilka(hooks, "deliver", "--loop", "--every", "2", "--tenant", hooks.tenant.slug)
    assert result.exit_code == 0, result.output
    assert "delivered 1" in result.output and "Stopped." in result.output
    assert pauses == [2.0]
    assert len(receiver.received) == 1
