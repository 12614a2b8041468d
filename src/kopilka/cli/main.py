"""``kopilka``: the root command, its global options and its command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from kopilka.cli import (
    cards,
    certificates,
    db,
    demo,
    farcards,
    ledger,
    loyalty,
    mail,
    nightly,
    receipts,
    reports,
    serve,
    subscribers,
    tenant,
    terminal,
    user,
    webhooks,
)
from kopilka.cli.common import CliState, KopilkaGroup

app = typer.Typer(
    cls=KopilkaGroup,
    name="kopilka",
    help="Kopilka: billing and loyalty on one double-entry ledger.",
    no_args_is_help=True,
    # Locals in a traceback may hold passwords and database URLs.
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Database to use (default: KOPILKA_DATABASE_URL, the config file, "
            "or sqlite:///var/kopilka.db).",
            show_default=False,
        ),
    ] = None,
) -> None:
    ctx.obj = CliState(database_url=database_url)


app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("nightly")(nightly.nightly)
app.add_typer(db.app, name="db")
app.add_typer(ledger.app, name="ledger")
app.add_typer(loyalty.app, name="loyalty")
app.add_typer(tenant.app, name="tenant")
app.add_typer(user.app, name="user")
app.add_typer(terminal.app, name="terminal")
app.add_typer(cards.app, name="cards")
app.add_typer(certificates.app, name="certificates")
app.add_typer(reports.app, name="report")
app.add_typer(farcards.app, name="farcards")
app.add_typer(receipts.app, name="receipts")
app.add_typer(subscribers.app, name="subscribers")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(mail.app, name="mail")
