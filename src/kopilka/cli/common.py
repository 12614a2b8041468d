"""What every command group shares: consoles, the engine, the actor, errors, progress.

The CLI is a door: each command parses its options, calls one action inside
``run_transaction`` (writes) or ``read_only`` (reads), and prints the result. Every
``KopilkaError`` that escapes a command becomes one red line on stderr,
``error [code]: detail``, and exit code 2; ``KopilkaGroup`` does this in one place.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from typer.core import TyperGroup

from kopilka.core.actor import Actor
from kopilka.core.db import make_engine, read_only
from kopilka.core.errors import KopilkaError
from kopilka.core.migrate import current_revision, head_revision
from kopilka.core.settings import get_settings
from kopilka.tenancy.actions import Tenant, get_tenant_by_slug, list_tenants

# Results go to stdout; errors, warnings and progress bars to stderr, so that output
# piped into another program stays clean.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_ERROR = 2


class CliErrorCode(StrEnum):
    DATABASE_NOT_MIGRATED = "database_not_migrated"
    DATABASE_ERROR = "database_error"
    API_UNAVAILABLE = "api_unavailable"


class KopilkaGroup(TyperGroup):
    """The root command group: turns our errors into one red line and exit code 2."""

    def invoke(self, ctx: Any) -> Any:  # Any: the click Context typer vendors
        try:
            return super().invoke(ctx)
        except KopilkaError as error:
            fail(error.code, error.detail)
        except OperationalError as error:
            # Unreachable server, locked file and the like: say what the driver said.
            first_line = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
            fail(CliErrorCode.DATABASE_ERROR, first_line)


def fail(code: str, detail: str) -> NoReturn:
    """Print ``error [code]: detail`` in red on stderr and leave with exit code 2."""
    err_console.print(Text(f"error [{code}]: {detail}", style="bold red"), soft_wrap=True)
    raise typer.Exit(EXIT_ERROR)


def warn(message: str) -> None:
    err_console.print(Text(message, style="yellow"), soft_wrap=True)


@dataclass(slots=True)
class CliState:
    """Options of the root command, handed to every subcommand through ``ctx.obj``."""

    database_url: str | None = None

    @property
    def url(self) -> str:
        return self.database_url or get_settings().database_url


def state_of(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def shown_url(url: str) -> str:
    """The database URL with its password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def open_engine(ctx: typer.Context, *, migrated: bool = True) -> Iterator[Engine]:
    """An engine on the chosen database, disposed afterwards.

    With ``migrated`` (every command that reads or writes data) a database that is not at
    the newest migration is refused with a hint, rather than failing on a missing table.
    """
    url = state_of(ctx).url
    engine = make_engine(url)
    try:
        if migrated:
            require_current(engine)
        yield engine
    finally:
        engine.dispose()


def require_current(engine: Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = "empty" if current is None else f"at revision {current}"
        raise KopilkaError(
            CliErrorCode.DATABASE_NOT_MIGRATED,
            f"the database is {where}, this Kopilka needs {head}; run `kopilka db upgrade`",
        )


def cli_actor() -> Actor:
    """The actor recorded for CLI writes, naming the operating-system user."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid, as in some containers
        who = "unknown"
    return Actor.cli(f"kopilka cli ({who})")


def find_tenant(engine: Engine, slug: str) -> Tenant:
    with read_only(engine) as conn:
        return get_tenant_by_slug(conn, slug)


def tenants_to_process(engine: Engine, slug: str | None) -> list[Tenant]:
    """One tenant when ``--tenant`` names it, otherwise every tenant."""
    if slug is not None:
        return [find_tenant(engine, slug)]
    with read_only(engine) as conn:
        return list_tenants(conn)


def progress_bar() -> Progress:
    """The progress display every long command uses (on stderr)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
