"""``kopilka mail``: outgoing e-mail from the command line: send what is due (from cron, or
as a worker of its own beside ``kopilka serve --no-nightly``), or check the SMTP settings
with one message."""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated

import typer
from rich.progress import Progress, TaskID
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from kopilka.cli.common import EXIT_ERROR, console, fail, find_tenant, open_engine, progress_bar
from kopilka.core.clock import utcnow
from kopilka.core.errors import InvalidInput
from kopilka.mail.outbox import clean_address
from kopilka.mail.sender import DUE_BATCH, EVERY_SECONDS, MailCounts, deliver_due_mail
from kopilka.mail.smtp import Outgoing, SmtpConfig, SmtpSession, build_message

app = typer.Typer(help="Outgoing e-mail: send the messages that are due.", no_args_is_help=True)

COLUMNS = ("claimed", "sent", "retrying", "failed", "errors")


@app.command("send")
def send(
    ctx: typer.Context,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Only this tenant (its short name); default: every tenant."),
    ] = None,
    loop: Annotated[
        bool,
        typer.Option("--loop", help="Keep going every --every seconds until interrupted."),
    ] = False,
    every: Annotated[
        float, typer.Option(min=0.5, help="Seconds between runs with --loop.")
    ] = EVERY_SECONDS,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="At most this many messages a run.")
    ] = DUE_BATCH,
) -> None:
    """Send the e-mail that is due through the SMTP server (KOPILKA_SMTP_*).

    Safe to run at any time and from several places at once: each message is taken by
    one of them. Without --loop: one run and a table of what it did; exit code 2 when the
    server did not answer or a message could not be processed (see the log). With
    --loop: a line per run that found work; Ctrl-C stops it.
    """
    with open_engine(ctx) as engine:
        tenant_id = find_tenant(engine, tenant).id if tenant is not None else None
        if loop:
            _loop(engine, tenant_id, every, limit)
            return
        with progress_bar() as progress:
            task = progress.add_task("messages", total=None)
            counts = deliver_due_mail(
                engine, tenant_id=tenant_id, limit=limit, progress=partial(_report, progress, task)
            )
    table = Table(title="e-mail")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    values = counts.as_dict()
    table.add_row(*(str(values[column]) for column in COLUMNS))
    console.print(table)
    if counts.server_down:
        config = SmtpConfig.from_settings()
        console.print(
            Text(
                f"The SMTP server {config.where} did not answer; the rest wait for the next run.",
                style="yellow",
            )
        )
    if counts.errors or counts.server_down:
        raise typer.Exit(EXIT_ERROR)


def _loop(engine: Engine, tenant_id: int | None, every: float, limit: int) -> None:
    console.print(f"Sending e-mail every {every:g} s; Ctrl-C stops.")
    try:
        while True:
            counts: MailCounts = deliver_due_mail(engine, tenant_id=tenant_id, limit=limit)
            if counts.claimed:
                shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.as_dict().items())
                console.print(f"{utcnow():%Y-%m-%d %H:%M:%S}Z  {shown}")
            if counts.claimed < limit or counts.server_down:  # a full batch: no pause
                time.sleep(every)
    except KeyboardInterrupt:
        console.print("Stopped.")


def _report(progress: Progress, task: TaskID, done: int, total: int) -> None:
    progress.update(task, completed=done, total=total)


@app.command("test")
def test(
    to: Annotated[str, typer.Argument(help="The address to send the test message to.")],
) -> None:
    """Send one message straight to TO, past the outbox, to check the SMTP settings.

    Prints what the server answered; exit code 2 when it did not take the message.
    """
    try:
        address = clean_address(to)
    except InvalidInput as error:
        fail(error.code, error.detail)
    config = SmtpConfig.from_settings()
    now = utcnow()
    message = build_message(
        Outgoing(
            mail_id=0,
            tenant_id=0,
            to_addr=address,
            subject="Kopilka: test message",
            body_text=f"Kopilka can send e-mail through {config.where}.\n\nSent at {now:%c} UTC.",
            body_html=None,
            created_at=now,
        ),
        config,
    )
    with SmtpSession(config) as session:
        outcome = session.send(message, address)
    if not outcome.sent:
        fail("smtp_error", outcome.error)
    console.print(f"Sent to {address} through {config.where}.")
