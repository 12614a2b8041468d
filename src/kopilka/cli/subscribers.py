"""``kopilka subscribers``: the subscribers' charging routine on demand (SPEC S-1), e.g.
from cron, with progress."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from kopilka.cli.common import (
    EXIT_ERROR,
    cli_actor,
    console,
    fail,
    open_engine,
    progress_bar,
    tenants_to_process,
    warn,
)
from kopilka.core.clock import as_utc
from kopilka.core.money import currency_exponent, format_amount
from kopilka.subscribers.billing import run_charging
from kopilka.subscribers.error_codes import SubscriberErrorCode as E

app = typer.Typer(help="Subscriber accounts: the charging routine.", no_args_is_help=True)

COLUMNS = (
    "subscribers",
    "periods charged",
    "charged",
    "blocked",
    "promised ended",
    "commission",
    "errors",
)


def _moment(text: str) -> datetime:
    """``--at``: an ISO 8601 moment with its offset (a moment without one is ambiguous)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(E.INVALID_SUBSCRIBER_INPUT, f"--at {text!r} is not an ISO 8601 moment")
    if moment.tzinfo is None:
        fail(
            E.INVALID_SUBSCRIBER_INPUT,
            f"--at {text!r} has no offset; say whose clock, e.g. 2026-04-02T01:00:00+03:00",
        )
    return as_utc(moment)


@app.command("charge")
def charge(
    ctx: typer.Context,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Only this tenant (its short name); default: every tenant."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Charge as of this moment (ISO 8601 with offset); default: now.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Charge the tariffs due, end the promised payments whose days are over, block
    subscribers below their threshold.

    Safe to run again: each period is charged once, so a second run charges nothing
    more; after downtime it charges each missed period once. Exits with 2 when a
    subscriber could not be settled (the others are).
    """
    moment = None if at is None else _moment(at)
    actor = cli_actor()
    table = Table(title="subscribers charged")
    table.add_column("tenant")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    errors: list[str] = []
    with open_engine(ctx) as engine, progress_bar() as progress:
        chosen = tenants_to_process(engine, tenant)
        overall = progress.add_task("tenants", total=len(chosen))
        for one in chosen:
            task = progress.add_task(one.slug, total=None)
            report = partial(_report, progress, task)
            result = run_charging(
                engine, tenant_id=one.id, actor=actor, now=moment, progress=report
            )
            exponent = currency_exponent(one.currency)
            table.add_row(
                one.slug,
                str(result.subscribers),
                str(result.periods_charged),
                f"{format_amount(result.charged_minor, exponent)} {one.currency}",
                str(result.blocked),
                str(result.promised_ended),
                f"{format_amount(result.commission_minor, exponent)} {one.currency}",
                str(len(result.errors)),
            )
            errors.extend(f"{one.slug}: {error}" for error in result.errors)
            settled = result.subscribers + len(result.errors)
            progress.update(task, total=settled, completed=settled)
            progress.advance(overall)
    console.print(table)
    for error in errors:
        warn(error)
    if errors:
        raise typer.Exit(EXIT_ERROR)


def _report(progress: Progress, task: TaskID, done: int, total: int) -> None:
    progress.update(task, completed=done, total=total)
