"""``kopilka report``: loyalty reports to files (SPEC C-10, C-11), with progress.

kopilka report balances --tenant shop --from 2031-03-01 --to 2031-03-31 -o march.xlsx
kopilka report history --tenant shop --card 2000000000017
kopilka report reconcile --tenant shop -i pos.csv -o corrections.csv
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Connection

from kopilka.cli.common import console, find_tenant, open_engine, progress_bar
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput, NotFound
from kopilka.core.money import format_amount
from kopilka.loyalty import card_history as histories
from kopilka.loyalty import reconciliation as reconciliations
from kopilka.loyalty import reports
from kopilka.loyalty.cards import find_card
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import list_programs
from kopilka.tenancy.actions import TenancyErrorCode, list_branches

app = typer.Typer(help="Loyalty reports: balances and turnovers, card history, reconciliation.")

TenantOption = Annotated[str, typer.Option("--tenant", help="The tenant's short name.")]


class FileFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


def _program_id(conn: Connection, tenant_id: int, wanted: str | None) -> int | None:
    if wanted is None:
        return None
    for program in list_programs(conn, tenant_id):
        if wanted in (str(program.id), program.name):
            return program.id
    raise NotFound(E.PROGRAM_NOT_FOUND, f"no program {wanted!r}")


def _branch_id(conn: Connection, tenant_id: int, wanted: str | None) -> int | None:
    if wanted is None:
        return None
    for branch in list_branches(conn, tenant_id):
        if wanted in (str(branch.id), branch.name):
            return branch.id
    raise NotFound(TenancyErrorCode.BRANCH_NOT_FOUND, f"no branch {wanted!r}")


@app.command("balances")
def balances(
    ctx: typer.Context,
    tenant: TenantOption,
    first: Annotated[
        datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First day (tenant's time).")
    ],
    last: Annotated[
        datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day, included.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write.")],
    program: Annotated[
        str | None, typer.Option("--program", help="Only this program (name or id).")
    ] = None,
    branch: Annotated[
        str | None,
        typer.Option("--branch", help="Only operations of this branch's terminals (name or id)."),
    ] = None,
    file_format: Annotated[
        FileFormat | None,
        typer.Option("--format", help="csv or xlsx (default: by the file's extension)."),
    ] = None,
    include_idle: Annotated[
        bool, typer.Option("--include-idle", help="Also cards with nothing at all.")
    ] = False,
) -> None:
    """Balances and turnovers of cards over days: opening, accrued, spent, expired, other
    corrections, closing, purchases and checks; totals per unit."""
    kind = file_format or (FileFormat.XLSX if output.suffix.lower() == ".xlsx" else None)
    kind = kind or FileFormat.CSV
    with open_engine(ctx) as engine, progress_bar() as progress:
        found = find_tenant(engine, tenant)
        start, end = reports.day_period(first.date(), last.date(), found.timezone)
        task = progress.add_task(f"{found.slug}: cards", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        with read_only(engine) as conn:
            rows = reports.iter_turnovers(
                conn,
                found.id,
                start=start,
                end=end,
                program_id=_program_id(conn, found.id, program),
                branch_id=_branch_id(conn, found.id, branch),
                include_idle=include_idle,
                progress=advance,
            )
            totals = reports.Totals()
            if kind is FileFormat.XLSX:
                title = f"{found.name}: {first:%d.%m.%Y}–{last:%d.%m.%Y}"
                result = reports.write_xlsx(rows, str(output), locale=found.locale, title=title)
            else:
                with output.open("w", encoding="utf-8", newline="") as out:
                    for piece in reports.csv_chunks(rows, locale=found.locale, totals=totals):
                        out.write(piece)
                result = totals.result()
    table = Table(title=f"balances and turnovers → {output}")
    for column in ("unit", "cards", "opening", "credit", "debit", "closing"):
        table.add_column(column, justify="left" if column == "unit" else "right")
    for total in result:
        f = total.figures
        table.add_row(
            total.unit_code,
            str(total.cards),
            *(
                format_amount(value, total.exponent)
                for value in (f.opening_minor, f.credit_minor, f.debit_minor, f.closing_minor)
            ),
        )
    console.print(table)


@app.command("history")
def history(
    ctx: typer.Context,
    tenant: TenantOption,
    card: Annotated[str, typer.Option("--card", help="The card's number.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=histories.MAX_HISTORY_PAGE)] = 100,
    newest_first: Annotated[bool, typer.Option("--newest-first")] = False,
) -> None:
    """Every change of a card, explained, with the balance after each."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        with read_only(engine) as conn:
            view = find_card(conn, found.id, number=card)
            page = histories.card_history(
                conn, found.id, view.id, limit=limit, newest_first=newest_first
            )
    table = Table(title=f"card {page.number} ({page.unit_code})")
    for column in ("when", "what", "points", "balance"):
        table.add_column(column, justify="right" if column in ("points", "balance") else "left")
    for item in page.items:
        table.add_row(
            f"{item.at:%Y-%m-%d %H:%M}",
            item.title,
            "" if item.amount_minor is None else format_amount(item.amount_minor, page.exponent),
            format_amount(item.balance_after_minor, page.exponent),
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"… more: {limit} shown")


@app.command("reconcile")
def reconcile(
    ctx: typer.Context,
    tenant: TenantOption,
    output: Annotated[Path, typer.Option("--output", "-o", help="The corrections (CSV).")],
    pos_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            help="What the POS holds: number;balance[;accumulation] per line. "
            "Without it: every card, with the values to set.",
        ),
    ] = None,
    only_differences: Annotated[bool, typer.Option("--only-differences")] = False,
) -> None:
    """Compare what a POS holds with the server; write the corrections (nothing is posted)."""
    reported = None
    if pos_file is not None:
        raw = pos_file.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1251")
        reported = reconciliations.parse_reported_csv(text)
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        with read_only(engine) as conn:
            result = reconciliations.reconcile(
                conn, found.id, reported, only_differences=only_differences
            )
    if not result.lines and not result.unknown_numbers and reported is None:
        raise InvalidInput(E.INVALID_RECONCILIATION, "the tenant has no cards")
    with output.open("w", encoding="utf-8", newline="") as out:
        for piece in reconciliations.reconcile_csv_chunks(result):
            out.write(piece)
    console.print(
        f"{result.checked} cards checked, {result.differing} differ, "
        f"{len(result.unknown_numbers)} unknown → {output}"
    )
