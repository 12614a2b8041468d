"""``kopilka db``: the schema, created and upgraded by migrations only; backups and
their restore into an empty database (``kopilka.core.backup``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kopilka.cli.common import console, open_engine, shown_url, state_of
from kopilka.core.backup import backup, ledger_fingerprint, restore
from kopilka.core.db import read_only
from kopilka.core.migrate import current_revision, head_revision, upgrade
from kopilka.ledger.verify import verify

app = typer.Typer(
    help="Database: apply migrations, show the revision, back up and restore.", no_args_is_help=True
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


@app.command("backup")
def backup_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Where to write the backup (overwritten).")],
) -> None:
    """Copy the whole database into FILE while the server runs (SQLite's online backup;
    on PostgreSQL pg_dump's custom format), and print the ledger's fingerprint."""
    url = state_of(ctx).url
    with open_engine(ctx) as engine:
        before = ledger_fingerprint(engine)
        with console.status(f"backing up {shown_url(url)}"):
            backup(url, file)
    console.print(f"[green]{shown_url(url)} backed up to {file} ({_size(file)})[/]")
    console.print(f"ledger at the start of the backup: {before}")


@app.command("restore")
def restore_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A file made by `kopilka db backup`.")],
) -> None:
    """Restore FILE into the chosen database, which must be empty; then verify the ledger
    and print its fingerprint, to compare with the one the backup printed."""
    url = state_of(ctx).url
    with open_engine(ctx, migrated=False) as engine:
        with console.status(f"restoring {file} into {shown_url(url)}"):
            restore(url, file, engine)
        engine.dispose()
        revision = current_revision(engine)
        with read_only(engine) as conn:
            problems = verify(conn)
        after = ledger_fingerprint(engine)
    console.print(f"[green]{file} restored into {shown_url(url)} (revision {revision})[/]")
    console.print(f"ledger restored: {after}")
    if revision != head_revision():
        console.print("[yellow]the backup is of an older Kopilka: run `kopilka db upgrade`[/]")
    if problems:
        for problem in problems:
            console.print(f"[red]{problem.check}[/] {problem.where}: {problem.detail}")
        raise typer.Exit(1)
    console.print("[green]ledger is consistent[/]")


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1024 / 1024:.1f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.0f} KiB"
