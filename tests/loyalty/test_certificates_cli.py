"""``kopilka certificates``: issue a range with a progress bar, sell, show, block."""

from __future__ import annotations

from typer.testing import CliRunner

from kopilka.cli.main import app
from kopilka.loyalty.cards import luhn_check_digit

from .conftest import Shop


def test_issue_sell_show_block(shop: Shop) -> None:
    url = shop.engine.url.render_as_string(hide_password=False)
    slug = shop.tenant.slug

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["--database-url", url, "certificates", *args])
        return result.exit_code, result.output

    code, out = run(
        "issue",
        "--tenant",
        slug,
        "--prefix",
        "44",
        "--first",
        "1",
        "--last",
        "3",
        "--width",
        "6",
        "--check-digit",
        "--validity-days",
        "30",
    )
    assert code == 0 and "3 certificates issued" in out, out
    number = "44000001" + luhn_check_digit("44000001")
    code, out = run(
        "sell", "--tenant", slug, number, "--nominal", "3000.00", "--operation-id", "cli-1"
    )
    assert code == 0 and "sold for 3000.00 RUB" in out, out
    code, out = run(
        "sell", "--tenant", slug, number, "--nominal", "3000.00", "--operation-id", "cli-1"
    )
    assert code == 0 and "replayed" in out
    code, out = run("sell", "--tenant", slug, number, "--nominal", "3000.00")
    assert code == 2 and "already_sold" in out
    code, out = run("show", "--tenant", slug, number)
    assert code == 0 and "active" in out and "3000.00 RUB" in out
    code, out = run("block", "--tenant", slug, number, "--reason", "lost")
    assert code == 0 and "blocked" in out
    code, out = run("issue", "--tenant", slug)
    assert code != 0
    shop.assert_clean()
