"""``kopilka db``: the schema, created and upgraded by migrations only."""

from __future__ import annotations

from typing import Annotated

import typer

from kopilka.cli.common import console, open_engine, shown_url, state_of
from kopilka.core.migrate import current_revision, head_revision, upgrade

app = typer.Typer(
    help="Database schema: apply migrations, show the revision.", no_args_is_help=True
)


@app.command("upgrade")
def upgrade_command(ctx: typer.Context) -> None:
    """Apply every migration the database has not had yet."""
    with open_engine(ctx, migrated=False) as engine:
        before = current_revision(engine)
        head = head_revision()
        where = shown_url(state_of(ctx).url)
        if before == head:
            console.print(f"{where} is at revision {head} (the newest); nothing to do")
            return
        upgrade(engine)
        after = current_revision(engine)
    assert after == head, "upgrade ends at the newest revision"
    console.print(
        f"[green]{where} upgraded from {before or 'an empty database'} to revision {after}[/]"
    )


@app.command("current")
def current_command(
    ctx: typer.Context,
    check: Annotated[
        bool, typer.Option("--check", help="Exit with 1 when the database is behind.")
    ] = False,
) -> None:
    """Show the database's revision and the newest one."""
    with open_engine(ctx, migrated=False) as engine:
        current = current_revision(engine)
    head = head_revision()
    if current == head:
        console.print(f"revision {current} (the newest)")
        return
    console.print(
        f"[yellow]revision {current or 'none (empty database)'}; the newest is {head}: "
        "run `kopilka db upgrade`[/]"
    )
    if check:
        raise typer.Exit(1)
