"""Sending webhook deliveries (SPEC X-3): the worker, and the clock inside the server.

``deliver_due`` takes the deliveries that are due, POSTs each event to its endpoint,
signed (``kopilka.events.signing``), and records what came of it. It never holds a
database transaction open while it waits for an endpoint:

1. **Claim**, one short transaction: the due pending deliveries of switched-on
   endpoints, oldest first (on PostgreSQL ``FOR UPDATE SKIP LOCKED``, so several
   workers take different rows; SQLite writes one at a time anyway), are put off by
   ``CLAIM_LEASE``, so no other worker takes them while this one sends. A worker that
   dies mid-way leaves them to be taken again when the lease runs out.
2. **Send**, no transaction: one POST per delivery with httpx (``TIMEOUT_SECONDS``, no
   redirects followed: a 3xx is a failure, the URL should be corrected instead).
3. **Record**, one short transaction per delivery: a row of ``webhook_attempts`` (status
   code, error, duration, the start of the answer) and the delivery's new state. 2xx is
   ``delivered``; anything else is tried again after ``RETRY_DELAYS`` (each with
   ±10 % jitter; a ``Retry-After`` in seconds may put it off longer), and after
   ``MAX_ATTEMPTS`` tries it is ``failed``. ``410 Gone`` says the receiver wants no more:
   the delivery fails at once and the endpoint is switched off.

An endpoint that did not answer at all (timeout, refused connection) is not asked again
in the same run: its other deliveries wait for the next one, so a dead receiver costs a
run one timeout, not one per delivery.

Delivery is at least once: a receiver may see an event twice (a worker that died after
the POST, a redelivery by hand) and should use ``webhook-id`` to notice.

Runs: ``WebhookScheduler``, a daemon thread ``kopilka serve`` starts with its other
background work, every ``EVERY_SECONDS``; and ``kopilka webhooks deliver [--loop]``.
Nothing here logs a URL, a header or a secret: log lines name the delivery, endpoint and
event by id.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.periodic import Periodic
from kopilka.events.feed import EventView, event_of
from kopilka.events.schema import events, webhook_attempts, webhook_deliveries, webhook_endpoints
from kopilka.events.signing import signature_header
from kopilka.events.webhooks import DELIVERED, FAILED, PENDING, signing_secrets
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.audit import record_audit
from kopilka.tenancy.schema import tenants

log = logging.getLogger(__name__)


# Jitter for retries: a generator of its own, never the process-wide ``random``.
_JITTER = random.Random()  # noqa: S311


class _WithoutQueries(logging.Filter):
    """httpx logs each request's URL at INFO; a webhook URL's query may hold the
    receiver's own token, so the query goes before the line does."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                a.copy_with(query=None, fragment=None) if isinstance(a, httpx.URL) else a
                for a in record.args
            )
        return True


if not any(isinstance(f, _WithoutQueries) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_WithoutQueries())

USER_AGENT = "Kopilka-Webhooks/1"
TIMEOUT_SECONDS = 10.0
# The wait after the 1st, 2nd, ... failed try; the try after the last wait is the last.
RETRY_DELAYS = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.1
# Longer than one exchange can take (the timeout applies per connect and per read).
CLAIM_LEASE = timedelta(minutes=2)
DUE_BATCH = 100
EXCERPT_CHARS = 500
MAX_ERROR_CHARS = 500
EVERY_SECONDS = 5.0
GONE = 410
DROPPED = "dropped"  # the endpoint was deleted while the delivery was being sent


@dataclass(frozen=True, slots=True)
class _Job:
    """A claimed delivery with all it takes to send it."""

    delivery_id: int
    tenant_id: int
    endpoint_id: int
    attempts: int
    was_due_at: datetime
    url: str = field(repr=False)
    secret: str = field(repr=False)
    previous_secret: str | None = field(repr=False)
    previous_secret_expires_at: datetime | None
    event: EventView

    def secrets(self, now: datetime) -> tuple[str, ...]:
        return signing_secrets(
            self.secret, self.previous_secret, self.previous_secret_expires_at, now
        )


@dataclass(frozen=True, slots=True)
class _Outcome:
    status_code: int | None  # None: no answer
    error: str
    duration_ms: int
    excerpt: str = ""
    retry_after: timedelta | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code <= 299


@dataclass(slots=True)
class DeliveryCounts:
    """What ``deliver_due`` did."""

    due: int = 0  # deliveries claimed
    delivered: int = 0  # answered 2xx
    retrying: int = 0  # no 2xx: tried again later
    failed: int = 0  # no 2xx on the last try, or 410 Gone
    put_off: int = 0  # not tried: their endpoint did not answer earlier in this run
    dropped: int = 0  # the endpoint was deleted meanwhile
    errors: int = 0  # an unexpected error (logged); tried again when the lease ends

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def note(self, status: str) -> None:
        if status == DELIVERED:
            self.delivered += 1
        elif status == FAILED:
            self.failed += 1
        elif status == PENDING:
            self.retrying += 1
        else:
            assert status == DROPPED, status
            self.dropped += 1


def retry_delay(
    attempts: int,
    *,
    retry_after: timedelta | None = None,
    rand: Callable[[], float] = _JITTER.random,
) -> timedelta:
    """How long to wait after ``attempts`` failed tries: ``RETRY_DELAYS`` with jitter, or
    the receiver's ``Retry-After`` when that is longer (at most the longest delay)."""
    assert 1 <= attempts < MAX_ATTEMPTS
    base = RETRY_DELAYS[attempts - 1]
    delay = base * (1 + JITTER * (2 * rand() - 1))
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_DELAYS[-1]))
    assert timedelta(0) < delay <= RETRY_DELAYS[-1] * (1 + JITTER)
    return delay


# --------------------------------------------------------------------------- claiming


def _claim(engine: Engine, moment: datetime, limit: int, tenant_id: int | None) -> list[_Job]:
    d, ep = webhook_deliveries, webhook_endpoints

    def work(conn: Connection) -> list[_Job]:
        due = (
            select(d.c.id)
            .select_from(d.join(ep, ep.c.id == d.c.endpoint_id))
            .where(d.c.status == PENDING, d.c.next_attempt_at <= moment, ep.c.is_active.is_(True))
            .order_by(d.c.next_attempt_at, d.c.id)
            .limit(limit)
        )
        if tenant_id is not None:
            due = due.where(d.c.tenant_id == tenant_id)
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(of=d, skip_locked=True)
        ids = list(conn.execute(due).scalars())
        if not ids:
            return []
        rows = conn.execute(
            select(
                d.c.id.label("delivery_id"),
                d.c.attempts,
                d.c.next_attempt_at,
                d.c.endpoint_id,
                ep.c.url,
                ep.c.secret,
                ep.c.previous_secret,
                ep.c.previous_secret_expires_at,
                events,
                tenants.c.slug.label("tenant_slug"),
            )
            .select_from(
                d.join(ep, ep.c.id == d.c.endpoint_id)
                .join(events, events.c.id == d.c.event_id)
                .join(tenants, tenants.c.id == d.c.tenant_id)
            )
            .where(d.c.id.in_(ids))
            .order_by(d.c.next_attempt_at, d.c.id)
        ).all()
        conn.execute(update(d).where(d.c.id.in_(ids)).values(next_attempt_at=moment + CLAIM_LEASE))
        return [
            _Job(
                delivery_id=row.delivery_id,
                tenant_id=row.tenant_id,
                endpoint_id=row.endpoint_id,
                attempts=row.attempts,
                was_due_at=row.next_attempt_at,
                url=row.url,
                secret=row.secret,
                previous_secret=row.previous_secret,
                previous_secret_expires_at=row.previous_secret_expires_at,
                event=event_of(row),
            )
            for row in rows
        ]

    jobs = run_transaction(engine, work)
    assert len(jobs) <= limit
    return jobs


def _release(engine: Engine, job: _Job) -> None:
    """Give a claimed delivery back untried: due again as it was."""

    def work(conn: Connection) -> None:
        conn.execute(
            update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == job.delivery_id,
                webhook_deliveries.c.status == PENDING,
                webhook_deliveries.c.attempts == job.attempts,
            )
            .values(next_attempt_at=job.was_due_at)
        )

    run_transaction(engine, work)


# --------------------------------------------------------------------------- sending


def _retry_after(value: str | None) -> timedelta | None:
    """``Retry-After`` in seconds (the HTTP-date form is not worth a parser here)."""
    if value is None or not (value.strip().isascii() and value.strip().isdigit()):
        return None
    return timedelta(seconds=min(int(value.strip()), 10**7))


def _read_excerpt(response: httpx.Response) -> str:
    """The start of the answer, without reading the rest of a large one."""
    wanted, got = 4 * EXCERPT_CHARS, b""
    for chunk in response.iter_bytes():
        got += chunk
        if len(got) >= wanted:
            break
    return got[:wanted].decode("utf-8", errors="replace")[:EXCERPT_CHARS]


def _describe(error: httpx.HTTPError, job: _Job) -> str:
    what = "could not connect" if isinstance(error, httpx.ConnectError) else "the exchange failed"
    # The URL's query may be the receiver's own token: keep it out of what is stored.
    text = f"{what}: {type(error).__name__}: {error}".replace(job.url, "<endpoint>")
    return text[:MAX_ERROR_CHARS]


def _send(client: httpx.Client, job: _Job, now: datetime, timeout_seconds: float) -> _Outcome:
    """One POST of the event to the endpoint (over the network: never in a transaction)."""
    body = job.event.body()
    # The wall clock, even when the caller names another moment: receivers compare the
    # timestamp with their own clock to refuse replays.
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": job.event.key,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            job.secrets(now), msg_id=job.event.key, timestamp=timestamp, body=body
        ),
    }
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        with client.stream("POST", job.url, content=body, headers=headers) as response:
            excerpt = _read_excerpt(response)
            code = response.status_code
            retry_after = _retry_after(response.headers.get("retry-after"))
    except httpx.TimeoutException:
        return _Outcome(None, f"no answer within {timeout_seconds:g} s", took())
    except httpx.HTTPError as failure:
        return _Outcome(None, _describe(failure, job), took())
    problem = "" if 200 <= code <= 299 else f"HTTP {code}"
    return _Outcome(code, problem, took(), excerpt, retry_after)


# --------------------------------------------------------------------------- recording


def _switch_off_gone(conn: Connection, job: _Job, at: datetime) -> None:
    """The receiver answered 410 Gone: it wants no more deliveries (Standard Webhooks)."""
    switched = conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == job.endpoint_id, webhook_endpoints.c.is_active.is_(True))
        .values(is_active=False, updated_at=at)
    ).rowcount
    if switched:
        record_audit(
            conn,
            tenant_id=job.tenant_id,
            actor=Actor.job("webhooks"),
            action="webhook_endpoint.update",
            object_type="webhook_endpoint",
            object_id=job.endpoint_id,
            details={"is_active": False, "is_active_was": True, "reason": "410 Gone"},
        )


def _record(engine: Engine, job: _Job, outcome: _Outcome, at: datetime) -> str:
    """Log the attempt and move the delivery on; its status after."""
    d = webhook_deliveries

    def work(conn: Connection) -> str:
        row = conn.execute(
            select(d.c.status, d.c.attempts).where(d.c.id == job.delivery_id).with_for_update()
        ).first()
        if row is None:
            return DROPPED
        conn.execute(
            webhook_attempts.insert(),
            {
                "tenant_id": job.tenant_id,
                "delivery_id": job.delivery_id,
                "at": at,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "duration_ms": max(outcome.duration_ms, 0),
                "response_excerpt": outcome.excerpt,
            },
        )
        if row.status != PENDING or (row.attempts != job.attempts and not outcome.ok):
            # Delivered or redelivered by someone else meanwhile: theirs stands.
            return str(row.status)
        attempts = row.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_attempt_at": at,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
        }
        if outcome.ok:
            values.update(status=DELIVERED, delivered_at=at, next_attempt_at=None)
        elif outcome.status_code == GONE or attempts >= MAX_ATTEMPTS:
            values.update(status=FAILED, next_attempt_at=None)
            if outcome.status_code == GONE:
                _switch_off_gone(conn, job, at)
        else:
            delay = retry_delay(attempts, retry_after=outcome.retry_after)
            values.update(next_attempt_at=at + delay)
        conn.execute(update(d).where(d.c.id == job.delivery_id).values(**values))
        return str(values.get("status", PENDING))

    return run_transaction(engine, work)


# --------------------------------------------------------------------------- the run


def deliver_due(
    engine: Engine,
    *,
    now: datetime | None = None,
    limit: int = DUE_BATCH,
    tenant_id: int | None = None,
    timeout_seconds: float = TIMEOUT_SECONDS,
    progress: Callable[[int, int], None] | None = None,
) -> DeliveryCounts:
    """Send the deliveries due at ``now`` (of one tenant, or all), at most ``limit``, one
    by one; ``progress(done, total)`` after each. ``now`` names the moment for the
    schedule (tests move it on); the signature's timestamp is always the wall clock."""
    assert limit >= 1 and timeout_seconds > 0

    def clock() -> datetime:
        return as_utc(now) if now is not None else utcnow()

    jobs = _claim(engine, clock(), limit, tenant_id)
    counts = DeliveryCounts(due=len(jobs))
    silent: set[int] = set()  # endpoints that did not answer in this run
    with httpx.Client(
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=False,
        headers={"user-agent": USER_AGENT},
    ) as client:
        for index, job in enumerate(jobs, start=1):
            try:
                if job.endpoint_id in silent:
                    _release(engine, job)
                    counts.put_off += 1
                else:
                    outcome = _send(client, job, clock(), timeout_seconds)
                    status = _record(engine, job, outcome, clock())
                    counts.note(status)
                    if outcome.status_code is None:
                        silent.add(job.endpoint_id)
                    log.info(
                        "webhook delivery %s: %s",
                        job.delivery_id,
                        status,
                        extra={
                            "tenant_id": job.tenant_id,
                            "endpoint_id": job.endpoint_id,
                            "event_id": job.event.id,
                            "status_code": outcome.status_code,
                            "duration_ms": outcome.duration_ms,
                        },
                    )
            except Exception:
                # One delivery's surprise must not stop the others; its lease lapses and
                # it is tried again.
                log.exception("webhook delivery %s could not be processed", job.delivery_id)
                counts.errors += 1
            if progress is not None:
                progress(index, len(jobs))
    assert counts.errors + counts.put_off <= counts.due
    return counts


class WebhookScheduler(Periodic):
    """Runs ``deliver_due`` every ``every_seconds`` until stopped; a full batch means
    more are waiting, and the next runs without the pause."""

    name = "kopilka-webhooks"
    what = "the webhooks' clock"
    join_seconds = TIMEOUT_SECONDS + 5

    def __init__(self, engine: Engine, every_seconds: float = EVERY_SECONDS) -> None:
        super().__init__(every_seconds)
        self.engine = engine

    def tick(self) -> DeliveryCounts:
        counts = deliver_due(self.engine)
        if counts.due:
            log.info("webhook deliveries processed", extra=counts.as_dict())
        return counts

    def more(self, result: DeliveryCounts) -> bool:
        return result.due >= DUE_BATCH
