"""``kopilka receipts send``: what cron runs, with a table of what it did."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from kopilka.cli import common
from kopilka.cli.main import app
from tests.fiscal.conftest import Desk


@pytest.fixture(autouse=True)
def wide_consoles() -> Iterator[None]:
    saved = common.console.width, common.err_console.width
    common.console.width = common.err_console.width = 200
    yield
    common.console.width, common.err_console.width = saved


def test_receipts_send_sends_what_is_due_for_a_tenant(desk: Desk) -> None:
    first, second = desk.ask(1), desk.ask(2)
    url = desk.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(
        app, ["--database-url", url, "receipts", "send", "--tenant", desk.tenant.slug]
    )
    assert result.exit_code == 0, result.output
    row = next(
        line for line in result.output.splitlines() if line.startswith("│ " + desk.tenant.slug)
    )
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells[:3] == [desk.tenant.slug, "2", "2"]  # due, accepted
    assert {desk.get(r.id).status for r in (first, second)} == {"wait"}

    again = CliRunner().invoke(
        app, ["--database-url", url, "receipts", "send", "--tenant", desk.tenant.slug]
    )
    assert again.exit_code == 0  # nothing due yet: the next question is seconds away
    unknown = CliRunner().invoke(app, ["--database-url", url, "receipts", "send", "--tenant", "?"])
    assert unknown.exit_code == 2
