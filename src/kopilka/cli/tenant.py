"""``kopilka tenant``: create and list tenants, add branches."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer
from rich.table import Table

from kopilka.cli.common import cli_actor, console, find_tenant, open_engine, plural
from kopilka.core.db import read_only
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import create_branch, create_tenant, list_tenants

app = typer.Typer(help="Tenants (businesses) and their branches.", no_args_is_help=True)


@app.command("create")
def create_command(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Short name: 3-64 latin letters, digits, '-'.")],
    name: Annotated[str, typer.Option(help="The business's name.")],
    locale: Annotated[str, typer.Option(help="Language and formats, e.g. ru, en.")] = "ru",
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "Europe/Moscow",
    currency: Annotated[str, typer.Option(help="Home currency, ISO 4217.")] = "RUB",
) -> None:
    """Create a tenant with its home currency."""
    with open_engine(ctx) as engine:
        tenant = run_transaction(
            engine,
            partial(
                create_tenant,
                slug=slug,
                name=name,
                locale=locale,
                timezone=timezone,
                currency=currency,
                actor=cli_actor(),
            ),
        )
    console.print(
        f"[green]tenant {tenant.slug!r} ({tenant.name}) created, id {tenant.id}: "
        f"{tenant.locale}, {tenant.timezone}, {tenant.currency}[/]"
    )


@app.command("list")
def list_command(ctx: typer.Context) -> None:
    """List every tenant."""
    with open_engine(ctx) as engine, read_only(engine) as conn:
        tenants = list_tenants(conn)
    table = Table(title=plural(len(tenants), "tenant"))
    for column in ("id", "slug", "name", "locale", "timezone", "currency"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for tenant in tenants:
        table.add_row(
            str(tenant.id),
            tenant.slug,
            tenant.name,
            tenant.locale,
            tenant.timezone,
            tenant.currency,
        )
    console.print(table)


@app.command("add-branch")
def add_branch_command(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The tenant's short name.")],
    name: Annotated[str, typer.Option(help="The branch's name.")],
) -> None:
    """Add a branch (a shop, a restaurant, a hotel) to a tenant."""
    with open_engine(ctx) as engine:
        tenant = find_tenant(engine, slug)
        branch_id = run_transaction(
            engine, partial(create_branch, tenant_id=tenant.id, name=name, actor=cli_actor())
        )
    console.print(f"[green]branch {name!r} of {tenant.slug!r} created, id {branch_id}[/]")
