"""``kopilka cards``: import cards and their opening balances from CSV (SPEC C-5, C-6)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine, select

from kopilka.cli.common import (
    cli_actor,
    console,
    err_console,
    fail,
    find_tenant,
    open_engine,
    progress_bar,
)
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput
from kopilka.loyalty.imports import MAX_FILE_BYTES, ImportRejected, ImportResult, run_import
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import get_program
from kopilka.loyalty.schema import loyalty_programs

app = typer.Typer(help="Discount cards: import from another system.", no_args_is_help=True)

SHOWN_ERRORS = 200  # bad rows printed; the count says how many there were


@app.command("import")
def import_command(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(help="CSV file (UTF-8 or Windows-1251, ';' or ',').", exists=True),
    ],
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's short name.")],
    program: Annotated[str, typer.Option("--program", help="The program: its id or name.")],
    start_date: Annotated[
        str,
        typer.Option(
            "--start-date",
            help="First day of billing, YYYY-MM-DD; balances are as of the day before.",
        ),
    ],
    import_id: Annotated[
        str | None,
        typer.Option("--import-id", help="Id of this import (default: from the file's content)."),
    ] = None,
    check_digit: Annotated[
        bool, typer.Option("--check-digit", help="Every number must end with its Luhn digit.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the file and count, write nothing.")
    ] = False,
) -> None:
    """Issue the file's cards and open their balances (points, accumulation, checks).

    All or nothing: any bad row is listed with its line and nothing is imported. The same
    file again changes nothing and prints the first result.
    """
    try:
        start = date.fromisoformat(start_date)
    except ValueError:
        fail(E.INVALID_IMPORT, f"--start-date {start_date!r} is not a date YYYY-MM-DD")
    if file.stat().st_size > MAX_FILE_BYTES:
        fail(E.INVALID_IMPORT, f"{file} is larger than {MAX_FILE_BYTES:,} bytes")
    data = file.read_bytes()
    with open_engine(ctx) as engine:
        chosen = find_tenant(engine, tenant)
        program_id = _program_id(engine, chosen.id, program)
        try:
            with progress_bar() as bar:
                task = bar.add_task("checking", total=None)
                result = run_import(
                    engine,
                    tenant_id=chosen.id,
                    program_id=program_id,
                    data=data,
                    start_date=start,
                    actor=cli_actor(),
                    import_id=import_id,
                    check_digit=check_digit,
                    dry_run=dry_run,
                    progress=lambda done, total, stage: bar.update(
                        task, completed=done, total=total, description=stage
                    ),
                )
        except ImportRejected as rejected:
            _print_errors(rejected)
            fail(rejected.code, rejected.detail)
    _print_result(result)


def _program_id(engine: Engine, tenant_id: int, program: str) -> int:
    with read_only(engine) as conn:
        if program.strip().isascii() and program.strip().isdigit():
            return get_program(conn, tenant_id, int(program)).id
        found = conn.execute(
            select(loyalty_programs.c.id).where(
                loyalty_programs.c.tenant_id == tenant_id,
                loyalty_programs.c.name == program.strip(),
            )
        ).scalar_one_or_none()
    if found is None:
        raise InvalidInput(E.PROGRAM_NOT_FOUND, f"no program named {program!r}")
    return int(found)


def _print_errors(rejected: ImportRejected) -> None:
    table = Table(title=f"{len(rejected.errors)} problems; nothing was imported")
    for column in ("line", "column", "code", "message"):
        table.add_column(column, justify="right" if column == "line" else "left")
    for error in rejected.errors[:SHOWN_ERRORS]:
        table.add_row(str(error.line), error.column or "", error.code, error.message)
    err_console.print(table)
    if len(rejected.errors) > SHOWN_ERRORS:
        err_console.print(f"... and {len(rejected.errors) - SHOWN_ERRORS} more")


def _print_result(result: ImportResult) -> None:
    if result.replayed:
        title = f"import {result.import_id}: done already, nothing changed"
    elif result.dry_run:
        title = f"import {result.import_id}: dry run, nothing written"
    else:
        title = f"import {result.import_id}: done"
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("balances as of", result.opening_at.isoformat())
    table.add_row("rows", str(result.rows))
    table.add_row("cards issued", str(result.cards_issued))
    table.add_row("cards updated", str(result.cards_updated))
    table.add_row("cards with points", str(result.cards_with_points))
    table.add_row("points", f"{result.points} {result.unit_code}")
    table.add_row("accumulation", f"{result.accumulation} {result.currency}")
    table.add_row("checks", str(result.checks))
    table.add_row("file", f"{result.encoding}, '{result.delimiter}'")
    console.print(table)
