"""``kopilka ledger``: verify the invariants, take snapshots, expire lots and holds."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy import Table as SqlTable

from kopilka.cli.common import (
    cli_actor,
    console,
    find_tenant,
    open_engine,
    plural,
    progress_bar,
    tenants_to_process,
)
from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.ledger.balances import take_snapshots
from kopilka.ledger.holds import expire_holds
from kopilka.ledger.lots import expire_lots
from kopilka.ledger.posting import run_transaction
from kopilka.ledger.schema import accounts, transfers
from kopilka.ledger.verify import verify
from kopilka.tenancy.actions import Tenant

app = typer.Typer(help="The ledger: integrity checks and routine jobs.", no_args_is_help=True)

TenantOption = Annotated[
    str | None,
    typer.Option("--tenant", help="Only this tenant (its short name); default: every tenant."),
]


@app.command("verify")
def verify_command(ctx: typer.Context, tenant: TenantOption = None) -> None:
    """Check that every transfer balances and every stored figure matches its entries.

    Exits with 0 when the ledger is consistent and 1 when a problem is found.
    """
    with open_engine(ctx) as engine:
        tenant_id = find_tenant(engine, tenant).id if tenant is not None else None
        with console.status("verifying the ledger"), read_only(engine) as conn:
            problems = verify(conn, tenant_id=tenant_id)
            transfer_count = _count(conn, transfers, tenant_id)
            account_count = _count(conn, accounts, tenant_id)
    if not problems:
        console.print(
            f"[green]ledger is consistent: {transfer_count} transfers, "
            f"{account_count} accounts checked[/]"
        )
        return
    table = Table(title=plural(len(problems), "problem"), title_style="bold red")
    table.add_column("check", style="red")
    table.add_column("where", style="bold")
    table.add_column("detail")
    for problem in problems:
        table.add_row(problem.check, problem.where, problem.detail)
    console.print(table)
    raise typer.Exit(1)


def _count(conn: Connection, table: SqlTable, tenant_id: int | None) -> int:
    query = select(func.count()).select_from(table)
    if tenant_id is not None:
        query = query.where(table.c.tenant_id == tenant_id)
    return int(conn.execute(query).scalar_one())


@app.command("snapshot")
def snapshot_command(ctx: typer.Context, tenant: TenantOption = None) -> None:
    """Snapshot the balances of hot system accounts (keeps their history fast to read)."""
    with open_engine(ctx) as engine:
        chosen = tenants_to_process(engine, tenant)
        made = 0
        with progress_bar() as progress:
            task = progress.add_task("taking snapshots", total=len(chosen))
            for one in chosen:
                made += run_transaction(engine, partial(take_snapshots, tenant_id=one.id))
                progress.advance(task)
    console.print(f"[green]{plural(made, 'snapshot')} taken for {plural(len(chosen), 'tenant')}[/]")


@app.command("expire")
def expire_command(ctx: typer.Context, tenant: TenantOption = None) -> None:
    """Write off the rest of lapsed point lots and close lapsed holds."""
    actor = cli_actor()
    table = Table(title="expiry")
    table.add_column("tenant")
    table.add_column("lots written off", justify="right")
    table.add_column("holds expired", justify="right")
    with open_engine(ctx) as engine, progress_bar() as progress:
        chosen = tenants_to_process(engine, tenant)
        overall = progress.add_task("tenants", total=len(chosen))
        for one in chosen:
            lots_done, holds_done = _expire_tenant(engine, one, actor, progress)
            table.add_row(one.slug, str(lots_done), str(holds_done))
            progress.advance(overall)
    console.print(table)


def _expire_tenant(
    engine: Engine, tenant: Tenant, actor: Actor, progress: Progress
) -> tuple[int, int]:
    """Expire one tenant's lapsed lots (with a bar of their own) and holds."""
    task = progress.add_task(f"lots of {tenant.slug}", total=None)
    due = 0

    def report(done: int, total: int) -> None:
        nonlocal due
        due = total
        progress.update(task, completed=done, total=total)

    lots_done = expire_lots(engine, tenant_id=tenant.id, actor=actor, progress=report)
    progress.update(task, completed=due, total=due)
    holds_done = run_transaction(engine, partial(expire_holds, tenant_id=tenant.id, actor=actor))
    return lots_done, holds_done
