"""``kopilka user``: staff users of a tenant."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from kopilka.cli.common import cli_actor, console, find_tenant, open_engine
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import create_user
from kopilka.tenancy.schema import ROLES

app = typer.Typer(
    help="Staff users: owners, administrators, cashiers, front desk.", no_args_is_help=True
)


@app.command("create")
def create_command(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="The tenant's short name.")],
    login: Annotated[str, typer.Option(help="Sign-in name.")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="At least 8 characters; asked for (twice, hidden) when not given.",
        ),
    ],
    full_name: Annotated[str, typer.Option(help="The person's name.")] = "",
    locale: Annotated[
        str | None, typer.Option(help="The user's language (default: the tenant's).")
    ] = None,
) -> None:
    """Create a staff user."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        user = run_transaction(
            engine,
            partial(
                create_user,
                tenant_id=found.id,
                login=login,
                password=password,
                role=role,
                full_name=full_name,
                locale=locale,
                actor=cli_actor(),
            ),
        )
    console.print(
        f"[green]user {user.login!r} ({user.role}) of {found.slug!r} created, id {user.id}[/]"
    )
