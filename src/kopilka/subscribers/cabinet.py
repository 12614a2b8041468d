"""The subscriber's self-service cabinet (SPEC S-7): signing in, its sessions, a change
of password, and a promised payment taken from it.

**Signing in.** A subscriber signs in with the account number and the cabinet's
password (argon2id, ``registry.authenticate``). Failed attempts are counted with the
staff's in ``login_failures`` under the login ``subscriber:<ACCOUNT NO>``: a staff
login cannot contain a colon, so a subscriber and a staff user never throttle each
other by name (by address, they count together, as guessing from one place should).

**Sessions.** A session is a 256-bit random secret in the cabinet's own cookie; the
database (``sub_sessions``) keeps only its SHA-256, so a copy of the database signs
nobody in. Each session has its own CSRF token, lives ``SESSION_TTL`` from signing in,
belongs to one tenant (a secret presented at another tenant's cabinet is nobody's), and
ends on sign-out. A change of password ends the subscriber's other sessions.

**Promised payments.** The cabinet takes them with ``source="cabinet"`` and an
operation id made when the page was shown, so a form sent twice takes one: the second
request answers with the first's promised payment, even when it raced the first and was
refused as "one is active already".
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, select, update

from kopilka.core.actor import Actor, ActorType
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import Refused, Unauthenticated
from kopilka.ledger.posting import run_transaction
from kopilka.subscribers import promised
from kopilka.subscribers.promised import PromisedView
from kopilka.subscribers.registry import (
    MAX_ACCOUNT_NO,
    HistoryLine,
    SubscriberView,
    authenticate,
    get_subscriber,
    history,
    set_password,
)
from kopilka.subscribers.schema import sub_promised_payments, sub_sessions
from kopilka.subscribers.tariffs import ServiceView, list_services
from kopilka.tenancy.audit import record_audit
from kopilka.tenancy.sessions import check_throttle, clear_failures, record_failure

SESSION_TTL = timedelta(hours=12)
THROTTLE_PREFIX = "subscriber:"
OPERATION_PREFIX = "cabinet:"
MAX_HISTORY_LINES = 1_000  # the history is paged this far back


@dataclass(frozen=True, slots=True)
class CabinetSession:
    id: int
    tenant_id: int
    subscriber_id: int
    csrf_token: str
    created_at: datetime
    expires_at: datetime


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def throttle_login(account_no: str) -> str:
    """The name a subscriber's failed sign-ins are counted under (never a staff login)."""
    key = account_no.strip().upper() if isinstance(account_no, str) else ""
    return THROTTLE_PREFIX + key[:MAX_ACCOUNT_NO]


def subscriber_actor(subscriber: SubscriberView, source_ip: str | None) -> Actor:
    return Actor(ActorType.SUBSCRIBER, str(subscriber.id), subscriber.account_no, source_ip)


# --------------------------------------------------------------------------- signing in


def sign_in(
    engine: Engine,
    *,
    tenant_id: int,
    tenant_slug: str,
    account_no: str,
    password: str,
    source_ip: str | None,
) -> SubscriberView:
    """The subscriber whose account number and password these are, behind the throttle
    (``TooManyAttempts``); a failure is recorded even though it raises
    ``Unauthenticated``."""
    login = throttle_login(account_no)
    try:
        with read_only(engine) as conn:
            check_throttle(conn, tenant_slug=tenant_slug, login=login, source_ip=source_ip)
            subscriber = authenticate(
                conn, tenant_id=tenant_id, account_no=account_no, password=password
            )
    except Unauthenticated:
        with engine.begin() as conn:
            record_failure(conn, tenant_slug=tenant_slug, login=login, source_ip=source_ip)
        raise
    with engine.begin() as conn:
        clear_failures(conn, tenant_slug=tenant_slug, login=login)
    return subscriber


def open_session(
    conn: Connection,
    *,
    tenant_id: int,
    subscriber: SubscriberView,
    actor: Actor,
    now: datetime | None = None,
) -> str:
    """A new session for ``subscriber``; returns the cookie's secret."""
    moment = as_utc(now) if now else utcnow()
    secret = secrets.token_urlsafe(32)
    conn.execute(
        sub_sessions.insert(),
        {
            "tenant_id": tenant_id,
            "subscriber_id": subscriber.id,
            "token_hash": _digest(secret),
            "csrf_token": secrets.token_urlsafe(32),
            "created_at": moment,
            "expires_at": moment + SESSION_TTL,
        },
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="cabinet.sign_in",
        object_type="subscriber",
        object_id=subscriber.id,
    )
    return secret


def resolve_session(
    conn: Connection, *, tenant_id: int, secret: str, now: datetime | None = None
) -> CabinetSession | None:
    """The live session of this tenant's cabinet behind a cookie, or ``None``."""
    if not secret or len(secret) > 200:
        return None
    moment = as_utc(now) if now else utcnow()
    row = conn.execute(
        select(sub_sessions).where(
            sub_sessions.c.token_hash == _digest(secret),
            sub_sessions.c.tenant_id == tenant_id,
        )
    ).first()
    if row is None or row.closed_at is not None or as_utc(row.expires_at) <= moment:
        return None
    return CabinetSession(
        id=row.id,
        tenant_id=row.tenant_id,
        subscriber_id=row.subscriber_id,
        csrf_token=row.csrf_token,
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at),
    )


def close_session(
    conn: Connection, *, session: CabinetSession, actor: Actor, now: datetime | None = None
) -> None:
    """Sign out: the row is closed, so the cookie is dead wherever it is."""
    moment = as_utc(now) if now else utcnow()
    conn.execute(
        update(sub_sessions)
        .where(sub_sessions.c.id == session.id, sub_sessions.c.closed_at.is_(None))
        .values(closed_at=moment)
    )
    record_audit(
        conn,
        tenant_id=session.tenant_id,
        actor=actor,
        action="cabinet.sign_out",
        object_type="subscriber",
        object_id=session.subscriber_id,
    )


def close_subscriber_sessions(
    conn: Connection, *, tenant_id: int, subscriber_id: int, keep_session_id: int | None = None
) -> int:
    """End the subscriber's sessions (all but ``keep_session_id``); how many were open."""
    query = update(sub_sessions).where(
        sub_sessions.c.tenant_id == tenant_id,
        sub_sessions.c.subscriber_id == subscriber_id,
        sub_sessions.c.closed_at.is_(None),
    )
    if keep_session_id is not None:
        query = query.where(sub_sessions.c.id != keep_session_id)
    return int(conn.execute(query.values(closed_at=utcnow())).rowcount or 0)


def change_password(
    engine: Engine,
    *,
    tenant_slug: str,
    session: CabinetSession,
    old_password: str,
    new_password: str,
    actor: Actor,
    source_ip: str | None,
) -> None:
    """The subscriber's new password, the old one checked behind the sign-in throttle
    (a wrong one counts as a failed sign-in); the subscriber's other sessions end."""
    tenant_id, subscriber_id = session.tenant_id, session.subscriber_id
    with read_only(engine) as conn:
        account_no = get_subscriber(conn, tenant_id, subscriber_id).account_no
    login = throttle_login(account_no)

    def work(conn: Connection) -> None:
        check_throttle(conn, tenant_slug=tenant_slug, login=login, source_ip=source_ip)
        authenticate(conn, tenant_id=tenant_id, account_no=account_no, password=old_password)
        set_password(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            password=new_password,
            actor=actor,
        )
        close_subscriber_sessions(
            conn, tenant_id=tenant_id, subscriber_id=subscriber_id, keep_session_id=session.id
        )

    try:
        run_transaction(engine, work)
    except Unauthenticated:
        with engine.begin() as conn:
            record_failure(conn, tenant_slug=tenant_slug, login=login, source_ip=source_ip)
        raise


# --------------------------------------------------------------------------- what is shown


def cabinet_services(conn: Connection, tenant_id: int, tariff_id: int) -> list[ServiceView]:
    """The promised payment services this subscriber may order in the cabinet."""
    return [
        s
        for s in list_services(conn, tenant_id)
        if s.self_service and s.is_active and s.allows(tariff_id)
    ]


def active_promised(
    conn: Connection, tenant_id: int, subscriber_id: int, now: datetime | None = None
) -> list[PromisedView]:
    """The promised payments in force now, the soonest to end first."""
    moment = as_utc(now) if now else utcnow()
    found = [
        p
        for p in promised.list_promised(conn, tenant_id, subscriber_id)
        if p.status == "active" and p.ends_at > moment
    ]
    return sorted(found, key=lambda p: (p.ends_at, p.id))


def history_page(
    conn: Connection, tenant_id: int, subscriber_id: int, *, page: int, per_page: int
) -> tuple[list[HistoryLine], bool]:
    """Lines ``page`` (1-based) of the subscriber's history, newest first, and whether
    there are more (the history is read up to ``MAX_HISTORY_LINES`` back)."""
    assert page >= 1 and per_page >= 1
    last_page = max(1, MAX_HISTORY_LINES // per_page)
    page = min(page, last_page)
    lines = history(conn, tenant_id, subscriber_id, limit=page * per_page + 1)
    start = (page - 1) * per_page
    more = len(lines) > page * per_page and page < last_page
    return lines[start : start + per_page], more


# --------------------------------------------------------------------------- promised payment


def operation_id(subscriber_id: int, shown_id: str) -> str:
    """The domain's operation id of a cabinet form shown with ``shown_id``."""
    assert shown_id and len(shown_id) <= 64, shown_id
    return f"{OPERATION_PREFIX}{subscriber_id}:{shown_id}"


def promised_by_operation(
    conn: Connection, tenant_id: int, subscriber_id: int, operation: str
) -> PromisedView | None:
    found = conn.execute(
        select(sub_promised_payments.c.id).where(
            sub_promised_payments.c.tenant_id == tenant_id,
            sub_promised_payments.c.subscriber_id == subscriber_id,
            sub_promised_payments.c.operation_id == operation,
        )
    ).scalar()
    return None if found is None else promised.get_promised(conn, tenant_id, int(found))


def take_promised(
    engine: Engine,
    *,
    tenant_id: int,
    subscriber_id: int,
    service_id: int,
    operation: str,
    actor: Actor,
    now: datetime | None = None,
) -> PromisedView:
    """Take a promised payment from the cabinet. The same operation sent again answers
    with the first's promised payment (``replayed``); so does one refused only because
    the first, racing it, was taken while it waited."""
    try:
        return run_transaction(
            engine,
            lambda conn: promised.take(
                conn,
                tenant_id=tenant_id,
                subscriber_id=subscriber_id,
                service_id=service_id,
                operation_id=operation,
                actor=actor,
                source="cabinet",
                now=now,
            ),
        )
    except Refused:
        with read_only(engine) as conn:
            known = promised_by_operation(conn, tenant_id, subscriber_id, operation)
        if known is None or known.service_id != service_id:
            raise
        return replace(known, replayed=True)
