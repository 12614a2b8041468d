"""Sending the outbox (``kopilka.mail.outbox``): the worker, and the clock inside the server.

``deliver_due_mail`` sends the messages that are due, one by one, over one SMTP
connection (``kopilka.mail.smtp``), and never holds a database transaction open while
it talks to the server:

1. **Claim**, one short transaction per message: the oldest due pending message (on
   PostgreSQL ``FOR UPDATE SKIP LOCKED``, so several workers take different ones; SQLite
   writes one at a time anyway) is put off by ``lease()``, longer than one exchange with
   the server can take, so no other worker takes it while this one sends. A worker that
   dies mid-way leaves it to be taken again when the lease runs out.
2. **Send**, no transaction.
3. **Record**, one short transaction: ``sent``; or ``attempts + 1`` and the next try
   after ``RETRY_DELAYS`` (±10 %), ``last_error`` saying why; after ``MAX_ATTEMPTS``
   tries, or at once when the server refuses the message for good (5xx to the recipient
   or to the message), ``failed``. A failed message stays in the outbox, shown under
   Settings -> E-mail, and may be sent again from there.

A server that does not answer at all (refused connection, timeout, refused sign-in)
ends the run after the message it was tried with: the others wait for the next run
untouched, so a dead server costs a run one timeout, not one per message.

Delivery is at least once: a worker whose lease ran out mid-send may see its message
sent again by another. The Message-ID stays the same, so a mail client can tell.

Runs: ``MailScheduler``, a daemon thread ``kopilka serve`` starts with its other
background work, every ``EVERY_SECONDS``; and ``kopilka mail send [--loop]``. Log lines
name a message by id, never its address, subject or the SMTP password.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, select, update

from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import read_only
from kopilka.core.periodic import Periodic
from kopilka.ledger.posting import run_transaction
from kopilka.mail.outbox import FAILED, PENDING, SENT
from kopilka.mail.schema import mail_outbox
from kopilka.mail.smtp import Outgoing, SendOutcome, SmtpConfig, SmtpSession, build_message

log = logging.getLogger(__name__)

# The wait after the 1st, 2nd, ... failed try; the try after the last wait is the last.
RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=12),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.1
DUE_BATCH = 50
EVERY_SECONDS = 10.0
# One exchange is at most about a dozen steps (connect, EHLO, STARTTLS, EHLO, AUTH, MAIL,
# RCPT, DATA, the message, its answer), each within the timeout.
LEASE_STEPS = 12
MIN_LEASE = timedelta(minutes=5)
DROPPED = "dropped"  # the message was deleted while it was being sent


# Jitter for retries: a generator of its own, never the process-wide ``random``.
_JITTER = random.Random()  # noqa: S311


def lease(timeout_seconds: float) -> timedelta:
    """How long a claimed message is kept from other workers."""
    return max(MIN_LEASE, timedelta(seconds=LEASE_STEPS * timeout_seconds))


def retry_delay(attempts: int, *, rand: Callable[[], float] = _JITTER.random) -> timedelta:
    """How long to wait after ``attempts`` failed tries: ``RETRY_DELAYS`` with jitter."""
    assert 1 <= attempts < MAX_ATTEMPTS
    base = RETRY_DELAYS[attempts - 1]
    delay = base * (1 + JITTER * (2 * rand() - 1))
    assert base * (1 - JITTER) <= delay <= base * (1 + JITTER)
    return delay


@dataclass(frozen=True, slots=True)
class _Job:
    """A claimed message with what it takes to send it and to record how it went."""

    outgoing: Outgoing
    attempts: int  # as claimed: a record finding another number was overtaken


@dataclass(slots=True)
class MailCounts:
    """What ``deliver_due_mail`` did."""

    claimed: int = 0  # messages taken from the outbox and tried
    sent: int = 0  # taken by the server
    retrying: int = 0  # not taken: tried again later
    failed: int = 0  # refused for good, or not taken on the last try
    errors: int = 0  # an unexpected error (logged); tried again when the lease ends
    server_down: int = 0  # 1: the run stopped at a server that did not answer

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def note(self, status: str) -> None:
        if status == SENT:
            self.sent += 1
        elif status == FAILED:
            self.failed += 1
        elif status == PENDING:
            self.retrying += 1
        else:
            assert status == DROPPED, status


# --------------------------------------------------------------------------- claiming


def _due(moment: datetime, tenant_id: int | None) -> Select[tuple[int]]:
    query = select(mail_outbox.c.id).where(
        mail_outbox.c.status == PENDING, mail_outbox.c.next_attempt_at <= moment
    )
    return query if tenant_id is None else query.where(mail_outbox.c.tenant_id == tenant_id)


def count_due(engine: Engine, *, now: datetime | None = None, tenant_id: int | None = None) -> int:
    moment = as_utc(now) if now is not None else utcnow()
    with read_only(engine) as conn:
        due = _due(moment, tenant_id).subquery()
        return int(conn.execute(select(func.count()).select_from(due)).scalar_one())


def _claim(
    engine: Engine, moment: datetime, held_for: timedelta, tenant_id: int | None
) -> _Job | None:
    """The oldest due message, put off by ``held_for``; None when nothing is due."""

    def work(conn: Connection) -> _Job | None:
        query = _due(moment, tenant_id).order_by(mail_outbox.c.next_attempt_at, mail_outbox.c.id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        mail_id = conn.execute(query.limit(1)).scalar()
        if mail_id is None:
            return None
        row = conn.execute(select(mail_outbox).where(mail_outbox.c.id == mail_id)).one()
        conn.execute(
            update(mail_outbox)
            .where(mail_outbox.c.id == mail_id)
            .values(next_attempt_at=moment + held_for)
        )
        assert row.status == PENDING
        return _Job(
            Outgoing(
                mail_id=row.id,
                tenant_id=row.tenant_id,
                to_addr=row.to_addr,
                subject=row.subject,
                body_text=row.body_text,
                body_html=row.body_html,
                created_at=as_utc(row.created_at),
            ),
            attempts=row.attempts,
        )

    return run_transaction(engine, work)


# --------------------------------------------------------------------------- recording


def _record(engine: Engine, job: _Job, outcome: SendOutcome, at: datetime) -> str:
    """Move the message on by what came of the try; its status after."""
    m = mail_outbox

    def work(conn: Connection) -> str:
        row = conn.execute(
            select(m.c.status, m.c.attempts).where(m.c.id == job.outgoing.mail_id).with_for_update()
        ).first()
        if row is None:
            return DROPPED
        if row.status == SENT:
            return SENT  # sent by another worker whose lease this one outlived
        if not outcome.sent and (row.status != PENDING or row.attempts != job.attempts):
            return str(row.status)  # overtaken by another worker or "send again": theirs stands
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_error": outcome.error}
        if outcome.sent:
            values.update(status=SENT, sent_at=at, next_attempt_at=None)
        elif outcome.permanent or attempts >= MAX_ATTEMPTS:
            values.update(status=FAILED, next_attempt_at=None)
        else:
            values.update(next_attempt_at=at + retry_delay(attempts))
        conn.execute(update(m).where(m.c.id == job.outgoing.mail_id).values(**values))
        return str(values.get("status", PENDING))

    return run_transaction(engine, work)


# --------------------------------------------------------------------------- the run


def _try(session: SmtpSession, job: _Job, config: SmtpConfig) -> SendOutcome:
    try:
        message = build_message(job.outgoing, config)
    except (ValueError, TypeError, UnicodeError) as error:
        # A row that cannot become a message (an address the checks of queue_mail would
        # have refused, written some other way) will not become one by waiting.
        return SendOutcome(False, f"cannot be built: {type(error).__name__}: {error}"[:500], True)
    return session.send(message, job.outgoing.to_addr)


def deliver_due_mail(
    engine: Engine,
    *,
    now: datetime | None = None,
    limit: int = DUE_BATCH,
    tenant_id: int | None = None,
    config: SmtpConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MailCounts:
    """Send the messages due at ``now`` (of one tenant, or all), at most ``limit``;
    ``progress(done, total)`` after each. ``config``: the server (default: the settings,
    read afresh each run). ``now`` names the moment for the schedule (tests move it on)."""
    assert limit >= 1

    def clock() -> datetime:
        return as_utc(now) if now is not None else utcnow()

    config = config or SmtpConfig.from_settings()
    held_for = lease(config.timeout_seconds)
    total = min(limit, count_due(engine, now=clock(), tenant_id=tenant_id)) if progress else 0
    counts = MailCounts()
    with SmtpSession(config) as session:
        while counts.claimed < limit:
            job = _claim(engine, clock(), held_for, tenant_id)
            if job is None:
                break
            counts.claimed += 1
            mail_id, server_down = job.outgoing.mail_id, False
            try:
                outcome = _try(session, job, config)
                server_down = outcome.server_down
                status = _record(engine, job, outcome, clock())
                counts.note(status)
                log.log(
                    logging.WARNING if status == FAILED else logging.INFO,
                    "mail %s: %s",
                    mail_id,
                    status,
                    extra={"tenant_id": job.outgoing.tenant_id, "attempt": job.attempts + 1},
                )
            except Exception:
                # One message's surprise must not stop the others; its lease lapses and
                # it is tried again.
                log.exception("mail %s could not be processed", mail_id)
                counts.errors += 1
            if progress is not None:
                progress(counts.claimed, max(total, counts.claimed))
            if server_down:
                counts.server_down = 1
                break
    assert counts.sent + counts.retrying + counts.failed + counts.errors <= counts.claimed
    return counts


class MailScheduler(Periodic):
    """Runs ``deliver_due_mail`` every ``every_seconds`` until stopped (the SMTP settings
    read at each run); a full batch means more are waiting, and the next runs without the
    pause. Stopping lets a send under way finish (at most a few of the SMTP timeouts)."""

    name = "kopilka-mail"
    what = "the mail clock"

    def __init__(self, engine: Engine, every_seconds: float = EVERY_SECONDS) -> None:
        super().__init__(every_seconds)
        self.engine = engine

    def tick(self) -> MailCounts:
        counts = deliver_due_mail(self.engine)
        if counts.claimed:
            log.info("mail processed", extra=counts.as_dict())
        return counts

    def more(self, result: MailCounts) -> bool:
        return result.claimed >= DUE_BATCH
