"""``kopilka report``: the balances report to CSV and XLSX files, a card's history, and
reconciliation from a POS file, run as a user runs them."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner, Result

from kopilka.cli import common
from kopilka.cli.main import app

from .conftest import Shop
from .test_reports import march


@pytest.fixture(autouse=True)
def wide_consoles() -> Iterator[None]:
    saved = common.console.width, common.err_console.width
    common.console.width = common.err_console.width = 200
    yield
    common.console.width, common.err_console.width = saved


def kopilka(shop: Shop, *args: str) -> Result:
    url = shop.engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(app, ["--database-url", url, *args])


def test_balances_to_csv_and_xlsx(shop: Shop, tmp_path: Path) -> None:
    card = march(shop)
    period = ["--tenant", shop.tenant.slug, "--from", "2031-03-01", "--to", "2031-03-31"]
    out = tmp_path / "march.csv"
    done = kopilka(shop, "report", "balances", *period, "-o", str(out))
    assert done.exit_code == 0, done.output
    assert "BONUS" in done.output and "20.70" in done.output
    lines = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines(), delimiter=";"))
    assert lines[1][0] == card.number and lines[-1][0] == "Итого BONUS (1)"

    book = tmp_path / "march.xlsx"
    done = kopilka(shop, "report", "balances", *period, "--program", "Бонусы", "-o", str(book))
    assert done.exit_code == 0, done.output
    workbook = openpyxl.load_workbook(book, read_only=True)
    sheet = workbook.active
    assert sheet is not None
    assert list(sheet.iter_rows(values_only=True))[2][0] == card.number
    workbook.close()

    nowhere = kopilka(shop, "report", "balances", *period, "--branch", "Луна", "-o", str(out))
    assert nowhere.exit_code == 2 and "branch_not_found" in nowhere.output


def test_history_and_reconcile(shop: Shop, tmp_path: Path) -> None:
    card = march(shop)
    shown = kopilka(shop, "report", "history", "--tenant", shop.tenant.slug, "--card", card.number)
    assert shown.exit_code == 0, shown.output
    assert "check C1" in shown.output and "15.70" in shown.output

    pos_file = tmp_path / "pos.csv"
    pos_file.write_text(f"{card.number};20,70\n4444;1,00\n", encoding="cp1251")
    out = tmp_path / "corrections.csv"
    done = kopilka(
        shop,
        "report",
        "reconcile",
        "--tenant",
        shop.tenant.slug,
        "-i",
        str(pos_file),
        "-o",
        str(out),
    )
    assert done.exit_code == 0, done.output
    assert "1 cards checked, 1 differ, 1 unknown" in done.output
    text = out.read_text(encoding="utf-8-sig")
    assert f"{card.number};active;BONUS;15.70;20.70;-5.00;1190.00;;" in text
    assert "4444;unknown" in text
