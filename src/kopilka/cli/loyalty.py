"""``kopilka loyalty``: the tenant's loyalty module on and off, exported, purged (P-9, C-7)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kopilka.cli.common import (
    cli_actor,
    console,
    fail,
    find_tenant,
    open_engine,
    plural,
    progress_bar,
)
from kopilka.core.db import read_only
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.billing import (
    LoyaltyStatus,
    PurgeConfirmation,
    export_loyalty,
    loyalty_status,
    purge_loyalty,
    request_purge,
    set_loyalty_enabled,
    snapshot,
)
from kopilka.loyalty.programs import LoyaltyErrorCode as E

app = typer.Typer(
    help="The loyalty module of a tenant: switch it, export its data, purge it.",
    no_args_is_help=True,
)

TenantOption = Annotated[str, typer.Option("--tenant", help="The tenant's short name.")]


def _status_table(slug: str, status: LoyaltyStatus) -> Table:
    state = "[green]on[/]" if status.enabled else "[yellow]off[/]"
    table = Table(title=f"loyalty of {slug}: {state}, {plural(status.total_rows, 'row')}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in status.rows.items():
        table.add_row(name, str(rows))
    return table


@app.command("status")
def status_command(ctx: typer.Context, tenant: TenantOption) -> None:
    """Whether the tenant's loyalty module is on, and how much loyalty data it holds."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        with read_only(engine) as conn:
            status = loyalty_status(conn, found.id)
    console.print(_status_table(found.slug, status))


def _switch(ctx: typer.Context, slug: str, enabled: bool) -> None:
    with open_engine(ctx) as engine:
        found = find_tenant(engine, slug)
        changed = run_transaction(
            engine,
            partial(set_loyalty_enabled, tenant_id=found.id, enabled=enabled, actor=cli_actor()),
        )
    state = "on" if enabled else "off"
    if changed:
        console.print(f"[green]loyalty of {found.slug!r} switched {state}[/]")
    else:
        console.print(f"loyalty of {found.slug!r} was {state} already")


@app.command("enable")
def enable_command(ctx: typer.Context, tenant: TenantOption) -> None:
    """Switch loyalty on: the POS gateway serves the tenant's cards."""
    _switch(ctx, tenant, True)


@app.command("disable")
def disable_command(ctx: typer.Context, tenant: TenantOption) -> None:
    """Switch loyalty off: the POS gateway refuses every card request; data stay."""
    _switch(ctx, tenant, False)


@app.command("export")
def export_command(
    ctx: typer.Context,
    tenant: TenantOption,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The zip to write.", dir_okay=False)
    ],
) -> None:
    """Write all the tenant's loyalty data to a zip (JSON lines and a manifest)."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        with progress_bar() as progress, output.open("wb") as out, snapshot(engine) as conn:
            task = progress.add_task(f"exporting {found.slug}", total=None)

            def report(done: int, total: int, what: str) -> None:
                progress.update(
                    task, completed=done, total=total, description=f"{found.slug}: {what}"
                )

            result = export_loyalty(conn, found.id, out, progress=report)
    console.print(
        f"[green]{plural(result.total_rows, 'row')} in {plural(len(result.files), 'file')} "
        f"written to {output}; checksum {result.checksum}[/]"
    )


@app.command("purge")
def purge_command(ctx: typer.Context, tenant: TenantOption) -> None:
    """Remove all the tenant's loyalty data for good (export it first).

    Loyalty must be switched off; then you confirm three times.
    """
    actor = cli_actor()
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        request = run_transaction(engine, partial(request_purge, tenant_id=found.id, actor=actor))
        with read_only(engine) as conn:
            status = loyalty_status(conn, found.id)
        console.print(_status_table(found.slug, status))
        typed = _confirm_three_times(found.slug, status)
        with progress_bar() as progress:
            task = progress.add_task(f"purging {found.slug}", total=None)

            def report(done: int, total: int, what: str) -> None:
                progress.update(task, completed=done, total=total, description=what)

            result = run_transaction(
                engine,
                partial(
                    purge_loyalty,
                    tenant_id=found.id,
                    confirmation=PurgeConfirmation(request.token, typed),
                    actor=actor,
                    progress=report,
                ),
            )
    console.print(
        f"[green]loyalty data of {found.slug!r} purged: {plural(result.total_rows, 'row')}[/]"
    )


def _confirm_three_times(slug: str, status: LoyaltyStatus) -> str:
    """The seed's threefold confirmation: yes, the short name, then the phrase.

    Returns the short name as typed (the purge checks it once more)."""
    if not typer.confirm(
        f"1/3 Remove {plural(status.total_rows, 'row')} of loyalty data of {slug!r} for good?",
        default=False,
    ):
        fail(E.PURGE_NOT_CONFIRMED, "nothing was purged")
    typed = str(typer.prompt("2/3 Type the tenant's short name")).strip().lower()
    if typed != slug:
        fail(E.PURGE_NOT_CONFIRMED, "that is not the tenant's short name; nothing was purged")
    phrase = f"purge {slug}"
    if typer.prompt(f"3/3 Type '{phrase}' to start").strip().lower() != phrase:
        fail(E.PURGE_NOT_CONFIRMED, "the phrase does not match; nothing was purged")
    return typed
