"""``kopilka receipts``: fiscal receipts (SPEC H-6) from the command line, e.g. from cron."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from kopilka.cli.common import EXIT_ERROR, console, open_engine, progress_bar, tenants_to_process
from kopilka.fiscal.receipts import DueCounts, process_due

app = typer.Typer(help="Fiscal receipts: send them to the cash registers.", no_args_is_help=True)

COLUMNS = ("due", "accepted", "done", "failed", "retrying", "waiting", "skipped", "errors")


@app.command("send")
def send(
    ctx: typer.Context,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Only this tenant (its short name); default: every tenant."),
    ] = None,
) -> None:
    """Send the receipts that are due and ask the registers about those being fiscalised.

    Safe to run at any time and from several places: a receipt is sent by one of them,
    and a register prints a receipt sent twice once. Exits with 2 when a receipt could
    not be processed for a reason other than the register's answer (see the log).
    """
    table = Table(title="fiscal receipts")
    table.add_column("tenant")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    errors = 0
    with open_engine(ctx) as engine, progress_bar() as progress:
        for one in tenants_to_process(engine, tenant):
            task = progress.add_task(one.slug, total=None)
            report = partial(_report, progress, task)
            counts: DueCounts = process_due(engine, tenant_id=one.id, progress=report)
            errors += counts.errors
            values = counts.as_dict()
            table.add_row(one.slug, *(str(values[column]) for column in COLUMNS))
    console.print(table)
    if errors:
        raise typer.Exit(EXIT_ERROR)


def _report(progress: Progress, task: TaskID, done: int, total: int) -> None:
    progress.update(task, completed=done, total=total)
