"""``kopilka certificates``: issue (one or a range), sell, show and block gift certificates
(SPEC C-9)."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from typing import Annotated

import typer
from rich.table import Table

from kopilka.cli.common import cli_actor, console, find_tenant, open_engine, progress_bar
from kopilka.core.clock import as_utc
from kopilka.core.db import read_only
from kopilka.core.money import currency_exponent, parse_amount
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty import certificates as gc

app = typer.Typer(help="Gift certificates: issue, sell, show, block.", no_args_is_help=True)

TenantOption = Annotated[str, typer.Option(help="The tenant's short name.")]
ValidityOption = Annotated[
    int | None,
    typer.Option(help="Days a certificate stays valid once sold (default: no limit)."),
]


@app.command("issue")
def issue_command(
    ctx: typer.Context,
    tenant: TenantOption,
    number: Annotated[str | None, typer.Argument(help="One certificate's number.")] = None,
    prefix: Annotated[str, typer.Option(help="A range: digits before the serial.")] = "",
    first: Annotated[int | None, typer.Option(help="A range: the first serial.")] = None,
    last: Annotated[int | None, typer.Option(help="A range: the last serial.")] = None,
    width: Annotated[int | None, typer.Option(help="A range: digits of the serial.")] = None,
    check_digit: Annotated[bool, typer.Option(help="A range: append a Luhn digit.")] = False,
    validity_days: ValidityOption = None,
) -> None:
    """Issue one certificate (NUMBER) or a range (--first/--last); they are not sold yet."""
    ranged = first is not None or last is not None
    if (number is None) == (not ranged) or (ranged and (first is None or last is None)):
        raise typer.BadParameter("give a NUMBER, or --first and --last for a range")
    actor = cli_actor()
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        if number is not None:
            one = run_transaction(
                engine,
                partial(
                    gc.issue_certificate,
                    tenant_id=found.id,
                    number=number,
                    validity_days=validity_days,
                    actor=actor,
                ),
            )
            console.print(f"[green]certificate {one.number} issued[/]")
            return
        assert first is not None and last is not None
        with progress_bar() as progress:
            task = progress.add_task("issuing certificates", total=last - first + 1)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            ids = run_transaction(
                engine,
                partial(
                    gc.issue_certificate_range,
                    tenant_id=found.id,
                    prefix=prefix,
                    first=first,
                    last=last,
                    width=width,
                    check_digit=check_digit,
                    validity_days=validity_days,
                    actor=actor,
                    progress=report,
                ),
            )
    console.print(f"[green]{len(ids)} certificates issued[/]")


@app.command("sell")
def sell_command(
    ctx: typer.Context,
    tenant: TenantOption,
    number: Annotated[str, typer.Argument(help="The certificate's number.")],
    nominal: Annotated[str, typer.Option(help="What it is sold for, e.g. 3000.00.")],
    expires: Annotated[
        datetime | None, typer.Option(help="When it expires (default: its validity).")
    ] = None,
    validity_days: ValidityOption = None,
    operation_id: Annotated[
        str | None, typer.Option(help="The sale's id; the same id again is a replay.")
    ] = None,
) -> None:
    """Sell (activate) a certificate: its nominal goes onto it."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        sale = run_transaction(
            engine,
            partial(
                gc.sell_certificate,
                tenant_id=found.id,
                number=number,
                nominal_minor=parse_amount(
                    nominal, currency_exponent(found.currency), unit_code=found.currency
                ),
                operation_id=operation_id or f"cli-{uuid.uuid4().hex}",
                expires_at=None if expires is None else as_utc(expires),
                validity_days=validity_days,
                actor=cli_actor(),
            ),
        )
    c = sale.certificate
    until = "" if c.expires_at is None else f", valid until {c.expires_at:%Y-%m-%d %H:%M} UTC"
    again = " (replayed: it was sold by this operation already)" if sale.replayed else ""
    console.print(
        f"[green]certificate {c.number} sold for {c.fmt(c.balance_minor)} {c.currency}"
        f"{until}{again}[/]"
    )


@app.command("show")
def show_command(
    ctx: typer.Context,
    tenant: TenantOption,
    number: Annotated[str, typer.Argument(help="The certificate's number.")],
) -> None:
    """A certificate's status, nominal, balance and dates."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        with read_only(engine) as conn:
            c = gc.find_certificate(conn, found.id, number)
    table = Table(title=f"certificate {c.number}", show_header=False)
    rows = [
        ("status", c.status + (f" ({c.blocked_reason})" if c.blocked_reason else "")),
        ("nominal", "" if c.nominal_minor is None else f"{c.fmt(c.nominal_minor)} {c.currency}"),
        ("balance", f"{c.fmt(c.balance_minor)} {c.currency}"),
        ("issued", f"{c.issued_at:%Y-%m-%d %H:%M}"),
        ("sold", "" if c.sold_at is None else f"{c.sold_at:%Y-%m-%d %H:%M}"),
        ("expires", "" if c.expires_at is None else f"{c.expires_at:%Y-%m-%d %H:%M}"),
        ("validity", "" if c.validity_days is None else f"{c.validity_days} days"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


@app.command("block")
def block_command(
    ctx: typer.Context,
    tenant: TenantOption,
    number: Annotated[str, typer.Argument(help="The certificate's number.")],
    reason: Annotated[str, typer.Option(help="Why (kept with the certificate).")],
) -> None:
    """Block a certificate: it can be neither sold nor paid with."""
    with open_engine(ctx) as engine:
        found = find_tenant(engine, tenant)
        c = run_transaction(
            engine,
            partial(
                gc.block_certificate,
                tenant_id=found.id,
                number=number,
                reason=reason,
                actor=cli_actor(),
            ),
        )
    console.print(f"[green]certificate {c.number} blocked[/]")
