"""``kopilka nightly``: the nightly routine on demand (SPEC C-8), with progress."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from kopilka.cli.common import cli_actor, console, open_engine, progress_bar, tenants_to_process
from kopilka.loyalty.nightly import run_nightly


def nightly(
    ctx: typer.Context,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Only this tenant (its short name); default: every tenant."),
    ] = None,
) -> None:
    """Expire lots and holds, age accumulations, move tiers, mark expired cards.

    Safe to run again: a second run changes nothing more.
    """
    actor = cli_actor()
    table = Table(title="nightly routine")
    for column in (
        "tenant",
        "lots expired",
        "holds expired",
        "cards aged",
        "tiers moved",
        "cards expired",
        "certificates expired",
    ):
        table.add_column(column, justify="left" if column == "tenant" else "right")
    with open_engine(ctx) as engine, progress_bar() as progress:
        chosen = tenants_to_process(engine, tenant)
        overall = progress.add_task("tenants", total=len(chosen))
        for one in chosen:
            task = progress.add_task(one.slug, total=None)
            report = partial(_report, progress, task, one.slug)
            result = run_nightly(engine, tenant_id=one.id, actor=actor, progress=report)
            table.add_row(
                one.slug,
                str(result.lots_expired),
                str(result.holds_expired),
                str(result.cards_aged),
                str(result.tiers_moved),
                str(result.cards_expired),
                str(result.certificates_expired),
            )
            progress.advance(overall)
    console.print(table)


def _report(progress: Progress, task: TaskID, slug: str, done: int, total: int, what: str) -> None:
    progress.update(task, completed=done, total=total, description=f"{slug}: {what}")
