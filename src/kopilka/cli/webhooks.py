"""``kopilka webhooks``: outgoing webhooks (SPEC X-3) from the command line, e.g. from cron
or as a worker of its own beside ``kopilka serve --no-nightly``."""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated

import typer
from rich.progress import Progress, TaskID
from rich.table import Table
from sqlalchemy import Engine

from kopilka.cli.common import EXIT_ERROR, console, find_tenant, open_engine, progress_bar
from kopilka.core.clock import utcnow
from kopilka.events.delivery import DUE_BATCH, EVERY_SECONDS, DeliveryCounts, deliver_due

app = typer.Typer(help="Outgoing webhooks: send the deliveries that are due.", no_args_is_help=True)

COLUMNS = ("due", "delivered", "retrying", "failed", "put_off", "dropped", "errors")


@app.command("deliver")
def deliver(
    ctx: typer.Context,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Only this tenant (its short name); default: every tenant."),
    ] = None,
    loop: Annotated[
        bool,
        typer.Option("--loop", help="Keep going every --every seconds until interrupted."),
    ] = False,
    every: Annotated[
        float, typer.Option(min=0.5, help="Seconds between runs with --loop.")
    ] = EVERY_SECONDS,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="At most this many deliveries a run.")
    ] = DUE_BATCH,
) -> None:
    """Send the webhook deliveries that are due, signed, and record each attempt.

    Safe to run at any time and from several places at once: each delivery is taken by
    one of them. Without --loop: one run, a table of what it did, exit code 2 when a
    delivery could not be processed for a reason other than the endpoint's answer (see
    the log). With --loop: a line per run that found work; Ctrl-C stops it.
    """
    with open_engine(ctx) as engine:
        tenant_id = find_tenant(engine, tenant).id if tenant is not None else None
        if loop:
            _loop(engine, tenant_id, every, limit)
            return
        with progress_bar() as progress:
            task = progress.add_task("deliveries", total=None)
            counts = deliver_due(
                engine,
                tenant_id=tenant_id,
                limit=limit,
                progress=partial(_report, progress, task),
            )
    table = Table(title="webhook deliveries")
    for column in COLUMNS:
        table.add_column(column.replace("_", " "), justify="right")
    values = counts.as_dict()
    table.add_row(*(str(values[column]) for column in COLUMNS))
    console.print(table)
    if counts.errors:
        raise typer.Exit(EXIT_ERROR)


def _loop(engine: Engine, tenant_id: int | None, every: float, limit: int) -> None:
    console.print(f"Sending webhooks every {every:g} s; Ctrl-C stops.")
    try:
        while True:
            counts: DeliveryCounts = deliver_due(engine, tenant_id=tenant_id, limit=limit)
            if counts.due:
                shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.as_dict().items())
                console.print(f"{utcnow():%Y-%m-%d %H:%M:%S}Z  {shown}")
            if counts.due < limit:  # a full batch: more are waiting, no pause
                time.sleep(every)
    except KeyboardInterrupt:
        console.print("Stopped.")


def _report(progress: Progress, task: TaskID, done: int, total: int) -> None:
    progress.update(task, completed=done, total=total)
