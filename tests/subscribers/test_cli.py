"""``kopilka subscribers charge``: the charging routine from the command line, as of a
named moment; run twice, the second run charges nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from kopilka.cli import common
from kopilka.cli.main import app
from kopilka.subscribers.schema import sub_charges
from tests.api.conftest import database_url
from tests.subscribers.conftest import Isp, at, rub


@pytest.fixture(autouse=True)
def wide_consoles() -> Iterator[None]:
    """Rich wraps at 80 columns when not on a terminal; the test reads whole rows."""
    saved = common.console.width, common.err_console.width
    common.console.width = common.err_console.width = 200
    yield
    common.console.width, common.err_console.width = saved


def kopilka(isp: Isp, *args: str) -> Result:
    url = database_url(isp.engine)
    return CliRunner().invoke(app, ["--database-url", url, *args])


def row_of(result: Result, slug: str) -> list[str]:
    line = next(line for line in result.output.splitlines() if line.startswith(f"│ {slug}"))
    return [cell.strip() for cell in line.split("│") if cell.strip()]


def test_charge_twice_and_the_second_run_charges_nothing(isp: Isp) -> None:
    tariff = isp.tariff(price=20, method="daily")
    paying = isp.subscriber(tariff)
    isp.top_up(paying, 100, at(2026, 4, 1, 8))
    isp.activate(paying, at(2026, 4, 1, 9))  # 1 April charged at once
    poor = isp.subscriber(tariff)
    isp.top_up(poor, 30, at(2026, 4, 1, 8))
    isp.activate(poor, at(2026, 4, 1, 9))
    slug = isp.tenant.slug

    first = kopilka(
        isp, "subscribers", "charge", "--tenant", slug, "--at", "2026-04-05T01:00+03:00"
    )
    assert first.exit_code == 0, first.output
    assert "subscribers charged" in first.output
    # 2 … 5 April for the one who pays; the other cannot pay 2 April: blocked.
    assert row_of(first, slug) == [slug, "2", "4", "80.00 RUB", "1", "0", "0.00 RUB", "0"]
    assert isp.get(paying).balance_minor == rub(0)
    assert isp.get(poor).status == "blocked"
    charged = isp.count(sub_charges)

    second = kopilka(
        isp, "subscribers", "charge", "--tenant", slug, "--at", "2026-04-05T01:00+03:00"
    )
    assert second.exit_code == 0, second.output
    assert row_of(second, slug) == [slug, "0", "0", "0.00 RUB", "0", "0", "0.00 RUB", "0"]
    assert isp.count(sub_charges) == charged
    assert isp.get(paying).balance_minor == rub(0)
    isp.assert_clean()


def test_a_moment_without_its_offset_is_refused(isp: Isp) -> None:
    result = kopilka(
        isp, "subscribers", "charge", "--tenant", isp.tenant.slug, "--at", "2026-04-05"
    )
    assert result.exit_code == 2
    assert "invalid_subscriber_input" in " ".join(result.output.split())
    unknown = kopilka(isp, "subscribers", "charge", "--tenant", "no-such-tenant-x")
    assert unknown.exit_code == 2
