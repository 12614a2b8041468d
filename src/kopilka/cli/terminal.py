"""``kopilka terminal``: POS terminals and their API keys."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table
from sqlalchemy import select

from kopilka.cli.common import cli_actor, console, find_tenant, open_engine, warn
from kopilka.core.db import read_only
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import create_terminal, get_terminal, revoke_terminal
from kopilka.tenancy.schema import terminals

app = typer.Typer(help="POS terminals and their keys.", no_args_is_help=True)

TenantOption = Annotated[str, typer.Option(help="The tenant's short name.")]


@app.command("create")
def create_command(
    ctx: typer.Context,
    tenant: TenantOption,
    name: Annotated[str, typer.Option(help="The terminal's name, unique in the tenant.")],
    branch: Annotated[int | None, typer.Option(help="The branch it stands in (id).")] = None,
) -> None:
    """Create a terminal and print its key (once)."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        terminal, key = run_transaction(
            engine,
            partial(
                create_terminal,
                tenant_id=found.id,
                name=name,
                branch_id=branch,
                actor=cli_actor(),
            ),
        )
    console.print(
        f"[green]terminal {terminal.name!r} of {found.slug!r} created, id {terminal.id}[/]"
    )
    console.print(Panel(key, title="terminal key (Authorization: Bearer ...)"))
    warn("this key is not shown again: only its digest is stored. Keep it now.")


@app.command("list")
def list_command(ctx: typer.Context, tenant: TenantOption) -> None:
    """List a tenant's terminals."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        with read_only(engine) as conn:
            ids = conn.execute(
                select(terminals.c.id)
                .where(terminals.c.tenant_id == found.id)
                .order_by(terminals.c.id)
            ).scalars()
            listed = [get_terminal(conn, found.id, terminal_id) for terminal_id in ids]
    table = Table(title=f"terminals of {found.slug}")
    for column in ("id", "name", "branch", "key prefix", "state"):
        table.add_column(column)
    for one in listed:
        table.add_row(
            str(one.id),
            one.name,
            "" if one.branch_id is None else str(one.branch_id),
            one.key_prefix,
            "revoked" if one.revoked else "active",
        )
    console.print(table)


@app.command("revoke")
def revoke_command(
    ctx: typer.Context,
    terminal_id: Annotated[int, typer.Argument(help="The terminal's id.")],
    tenant: TenantOption,
) -> None:
    """Revoke a terminal's key: its requests are refused from now on."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        run_transaction(
            engine,
            partial(
                revoke_terminal, tenant_id=found.id, terminal_id=terminal_id, actor=cli_actor()
            ),
        )
    console.print(f"[green]terminal {terminal_id} of {found.slug!r} revoked[/]")
