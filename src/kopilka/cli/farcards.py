"""``kopilka farcards``: connect terminals to r_keeper's FarCards, and what lookups show."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from kopilka.cli.common import cli_actor, console, find_tenant, open_engine, warn
from kopilka.farcards.ini import ext_dll_http_ini, public_base_url
from kopilka.farcards.terminals import (
    clear_codes,
    configure_terminal,
    set_codes,
    set_sub_account,
)
from kopilka.ledger.posting import run_transaction

app = typer.Typer(help="r_keeper FarCards over HTTP (SPEC P-10).", no_args_is_help=True)

TenantOption = Annotated[str, typer.Option(help="The tenant's short name.")]
DEFAULT_BASE_URL = "https://kopilka"


@app.command("configure")
def configure_command(
    ctx: typer.Context,
    tenant: TenantOption,
    terminal: Annotated[int, typer.Option(help="The Kopilka terminal's id.")],
    restaurant: Annotated[str, typer.Option(help="r_keeper's restaurant code (Restaurant).")],
    station: Annotated[
        list[str] | None, typer.Option(help="A station code (UnitNo/RKUni); repeat; none: any.")
    ] = None,
    allow_ip: Annotated[
        list[str] | None, typer.Option(help="An address or network allowed to call; repeat.")
    ] = None,
    new_secret: Annotated[bool, typer.Option(help="Make a new URL secret.")] = False,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="Kopilka's public URL (default: KOPILKA_PUBLIC_URL, else https://kopilka)."
        ),
    ] = None,
) -> None:
    """Connect a terminal to r_keeper; print the ExtDllHttp.ini to use (secret shown once).

    The settings given replace the terminal's earlier ones (no --station: any station;
    no --allow-ip: any address); the secret stays unless --new-secret."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        link, secret = run_transaction(
            engine,
            partial(
                configure_terminal,
                tenant_id=found.id,
                terminal_id=terminal,
                restaurant_code=restaurant,
                station_codes=station or None,
                allowed_ips=allow_ip or None,
                new_secret=new_secret,
                actor=cli_actor(),
            ),
        )
    console.print(
        f"[green]terminal {terminal} of {found.slug!r} answers FarCards for restaurant "
        f"{link.restaurant_code}, stations {', '.join(link.station_codes or ['any'])}[/]"
    )
    if secret is None:
        console.print("the URL secret is unchanged (--new-secret makes a new one)")
        return
    ini = ext_dll_http_ini(base_url or public_base_url(DEFAULT_BASE_URL), found.slug, secret)
    console.print("ExtDllHttp.ini:")
    console.print(ini, soft_wrap=True, markup=False)
    warn("this secret is not shown again: only its digest is stored. Keep it now.")


@app.command("sub-account")
def sub_account_command(
    ctx: typer.Context,
    tenant: TenantOption,
    source: Annotated[str, typer.Option(help="A point unit's code, or 'accumulation'.")],
    number: Annotated[
        int | None, typer.Option(help="The sub-account, 2..8 (Sum2..Sum8); none: stop.")
    ] = None,
) -> None:
    """Show a balance as one of FarCards' sub-accounts in lookups."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        run_transaction(
            engine,
            partial(
                set_sub_account,
                tenant_id=found.id,
                source=source,
                sub_account=number,
                actor=cli_actor(),
            ),
        )
    shown = f"Sum{number}" if number is not None else "nothing"
    console.print(f"[green]{source} of {found.slug!r} shows as {shown}[/]")


@app.command("codes")
def codes_command(
    ctx: typer.Context,
    tenant: TenantOption,
    program: Annotated[int, typer.Option(help="The loyalty program's id.")],
    tier: Annotated[int | None, typer.Option(help="One of its tiers (id); none: all.")] = None,
    discount: Annotated[int | None, typer.Option(help="r_keeper discount number.")] = None,
    bonus: Annotated[int | None, typer.Option(help="r_keeper bonus number.")] = None,
    clear: Annotated[
        bool, typer.Option(help="Forget the numbers set: a tier's cards get the program's.")
    ] = False,
) -> None:
    """The r_keeper discount and bonus a lookup names for the program's (tier's) cards."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        if clear:
            run_transaction(
                engine,
                partial(
                    clear_codes,
                    tenant_id=found.id,
                    program_id=program,
                    tier_id=tier,
                    actor=cli_actor(),
                ),
            )
            console.print("[green]codes cleared[/]")
            return
        run_transaction(
            engine,
            partial(
                set_codes,
                tenant_id=found.id,
                program_id=program,
                tier_id=tier,
                discount_code=discount,
                bonus_code=bonus,
                actor=cli_actor(),
            ),
        )
    console.print(f"[green]codes set: discount {discount or '-'}, bonus {bonus or '-'}[/]")
