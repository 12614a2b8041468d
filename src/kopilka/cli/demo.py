"""``kopilka demo``: load the demo tenant (idempotent) and say how to sign in."""

from __future__ import annotations

import typer
from rich.panel import Panel
from rich.table import Table

from kopilka.cli.common import cli_actor, console, open_engine, progress_bar, warn
from kopilka.core.migrate import is_current, upgrade
from kopilka.demo import DEMO_CABINET_PASSWORD, DEMO_SUBSCRIBERS, DemoInfo, load_demo


def demo(ctx: typer.Context) -> None:
    """Load a demo tenant with staff, a terminal, wallets and postings."""
    with open_engine(ctx, migrated=False) as engine:
        if not is_current(engine):
            # The demo is for trying Kopilka out: make the database ready first.
            upgrade(engine)
            console.print("database schema upgraded to the newest revision")
        with progress_bar() as progress:
            task = progress.add_task("loading the demo", total=None)

            def report(done: int, total: int, what: str) -> None:
                progress.update(task, completed=done, total=total, description=what)

            info = load_demo(engine, progress=report, actor=cli_actor())
    _print(info)


def _print(info: DemoInfo) -> None:
    if info.created:
        console.print(
            f"[green]demo tenant {info.tenant.slug!r} ({info.tenant.name}) loaded: "
            f"{info.accounts} accounts, {info.transfers} transfers, {info.holds} holds[/]"
        )
    else:
        console.print(
            f"demo tenant {info.tenant.slug!r} exists already; nothing was changed. "
            "Its credentials:"
        )
    table = Table(title=f"Sign in at {info.url}")
    table.add_column("role")
    table.add_column("login", style="bold")
    table.add_column("password", style="bold")
    table.add_column("name")
    for user in info.users:
        table.add_row(user.role, user.login, user.password, user.full_name)
    console.print(table)
    owner = info.users[0]
    console.print(
        f"Open {info.url} and sign in to tenant [bold]{info.tenant.slug}[/] as "
        f"[bold]{owner.login}[/] / [bold]{owner.password}[/]"
    )
    console.print(
        f"Subscriber cabinet: {info.url}/cabinet/{info.tenant.slug}/ as "
        f"[bold]{DEMO_SUBSCRIBERS[1]}[/] / [bold]{DEMO_CABINET_PASSWORD}[/] "
        "(blocked for debt: try a promised payment)"
    )
    if info.terminal_key:
        console.print(
            Panel(
                info.terminal_key,
                title=f"key of terminal {info.terminal_name!r}",
                subtitle="shown once: it is not stored",
            )
        )
        warn("keep the terminal key now: it is not shown again")
    else:
        console.print(
            f"The key of terminal {info.terminal_name!r} was shown when the demo was loaded. "
            f"For a new one: kopilka terminal create --tenant {info.tenant.slug} --name NAME"
        )
