"""Web sign-in sessions and sign-in throttling.

A session is a 256-bit random secret in an ``HttpOnly`` cookie; the database keeps only
its SHA-256, so a copy of the database signs nobody in. Each session has its own CSRF
token, which every form and every htmx request sends back. Sessions expire after
``session_idle_minutes`` without use and after ``session_max_hours`` in all; signing out
revokes the row, so the cookie is dead everywhere at once.

Throttling counts failed sign-ins in ``login_failures``, by (tenant, login) and by source
address, over a sliding window; both the web form and ``POST /api/v1/auth/token`` use it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import KopilkaError, Unauthenticated
from kopilka.tenancy.actions import User, authenticate, get_user
from kopilka.tenancy.audit import record_audit
from kopilka.tenancy.schema import branches, login_failures, web_sessions

SESSION_IDLE = timedelta(hours=8)
SESSION_MAX = timedelta(days=7)
# How often last_seen_at is written: not on every page view.
TOUCH_EVERY = timedelta(minutes=1)

THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_LOGIN = 5
MAX_FAILURES_PER_ADDRESS = 30


class TooManyAttempts(KopilkaError):
    status = 429
    title = "Too many sign-in attempts"

    def __init__(self, retry_after: timedelta) -> None:
        minutes = max(1, int(retry_after.total_seconds() // 60) + 1)
        super().__init__(
            "too_many_attempts",
            f"too many failed sign-ins; try again in {minutes} min",
            retry_after_seconds=int(retry_after.total_seconds()) + 1,
        )
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class WebSession:
    id: int
    user: User
    csrf_token: str
    branch_id: int | None
    flash: list[dict[str, Any]]
    last_seen_at: datetime


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def open_session(
    conn: Connection,
    *,
    user: User,
    source_ip: str | None,
    user_agent: str,
    actor: Actor,
) -> str:
    """A new session for ``user``; returns the cookie's secret."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    first_branch = conn.execute(
        select(branches.c.id)
        .where(branches.c.tenant_id == user.tenant_id)
        .order_by(branches.c.id)
        .limit(1)
    ).scalar()
    conn.execute(
        web_sessions.insert(),
        {
            "tenant_id": user.tenant_id,
            "user_id": user.id,
            "token_hash": _digest(secret),
            "csrf_token": secrets.token_urlsafe(32),
            "branch_id": first_branch,
            "source_ip": source_ip,
            "user_agent": user_agent[:300],
            "created_at": now,
            "last_seen_at": now,
            "expires_at": now + SESSION_MAX,
        },
    )
    record_audit(
        conn,
        tenant_id=user.tenant_id,
        actor=actor,
        action="session.open",
        object_type="user",
        object_id=user.id,
    )
    return secret


def resolve_session(conn: Connection, secret: str) -> WebSession | None:
    """The live session behind a cookie, or ``None``; refreshes its idle clock."""
    if not secret:
        return None
    row = conn.execute(
        select(web_sessions).where(web_sessions.c.token_hash == _digest(secret))
    ).first()
    now = utcnow()
    if row is None or row.revoked_at is not None:
        return None
    last_seen = as_utc(row.last_seen_at)
    if as_utc(row.expires_at) <= now or last_seen + SESSION_IDLE <= now:
        return None
    user = get_user(conn, row.tenant_id, row.user_id)
    if not user.is_active:
        return None
    if now - last_seen >= TOUCH_EVERY:
        conn.execute(
            update(web_sessions).where(web_sessions.c.id == row.id).values(last_seen_at=now)
        )
    return WebSession(
        id=row.id,
        user=user,
        csrf_token=row.csrf_token,
        branch_id=row.branch_id,
        flash=list(row.flash or []),
        last_seen_at=last_seen,
    )


def close_session(conn: Connection, session: WebSession, actor: Actor) -> None:
    conn.execute(
        update(web_sessions)
        .where(web_sessions.c.id == session.id, web_sessions.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    record_audit(
        conn,
        tenant_id=session.user.tenant_id,
        actor=actor,
        action="session.close",
        object_type="user",
        object_id=session.user.id,
    )


def close_user_sessions(conn: Connection, tenant_id: int, user_id: int) -> None:
    """Signs a user out everywhere (their password changed, or they were disabled)."""
    conn.execute(
        update(web_sessions)
        .where(
            web_sessions.c.tenant_id == tenant_id,
            web_sessions.c.user_id == user_id,
            web_sessions.c.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


def set_branch(conn: Connection, session: WebSession, branch_id: int | None) -> None:
    conn.execute(
        update(web_sessions).where(web_sessions.c.id == session.id).values(branch_id=branch_id)
    )


def push_flash(conn: Connection, session_id: int, kind: str, text: str) -> None:
    """A message shown once, on the next page this session opens."""
    current = conn.execute(
        select(web_sessions.c.flash).where(web_sessions.c.id == session_id)
    ).scalar()
    messages = [*(current or []), {"kind": kind, "text": text}][-5:]
    conn.execute(update(web_sessions).where(web_sessions.c.id == session_id).values(flash=messages))


def take_flash(conn: Connection, session: WebSession) -> list[dict[str, Any]]:
    if not session.flash:
        return []
    conn.execute(update(web_sessions).where(web_sessions.c.id == session.id).values(flash=None))
    return session.flash


# --------------------------------------------------------------------------- throttling


def check_throttle(
    conn: Connection, *, tenant_slug: str, login: str, source_ip: str | None
) -> None:
    """Raises ``TooManyAttempts`` if this login or this address failed too often lately."""
    now = utcnow()
    since = now - THROTTLE_WINDOW
    slug, name = _key(tenant_slug, login)
    per_login = conn.execute(
        select(func.count(), func.min(login_failures.c.at)).where(
            login_failures.c.tenant_slug == slug,
            login_failures.c.login == name,
            login_failures.c.at > since,
        )
    ).one()
    if per_login[0] >= MAX_FAILURES_PER_LOGIN:
        raise TooManyAttempts(as_utc(per_login[1]) + THROTTLE_WINDOW - now)
    if source_ip:
        per_address = conn.execute(
            select(func.count(), func.min(login_failures.c.at)).where(
                login_failures.c.source_ip == source_ip, login_failures.c.at > since
            )
        ).one()
        if per_address[0] >= MAX_FAILURES_PER_ADDRESS:
            raise TooManyAttempts(as_utc(per_address[1]) + THROTTLE_WINDOW - now)


def record_failure(
    conn: Connection, *, tenant_slug: str, login: str, source_ip: str | None
) -> None:
    slug, name = _key(tenant_slug, login)
    now = utcnow()
    conn.execute(
        login_failures.insert(),
        {"tenant_slug": slug, "login": name, "source_ip": source_ip, "at": now},
    )
    # Old rows tell nothing any more.
    conn.execute(delete(login_failures).where(login_failures.c.at < now - THROTTLE_WINDOW * 4))


def clear_failures(conn: Connection, *, tenant_slug: str, login: str) -> None:
    slug, name = _key(tenant_slug, login)
    conn.execute(
        delete(login_failures).where(
            login_failures.c.tenant_slug == slug, login_failures.c.login == name
        )
    )


def _key(tenant_slug: str, login: str) -> tuple[str, str]:
    return tenant_slug.strip().lower()[:64], login.strip().lower()[:100]


def authenticate_throttled(
    engine: Engine, *, tenant_slug: str, login: str, password: str, source_ip: str | None
) -> User:
    """``authenticate`` behind the throttle; a failure is recorded even though it raises."""
    try:
        with engine.begin() as conn:
            check_throttle(conn, tenant_slug=tenant_slug, login=login, source_ip=source_ip)
            user = authenticate(conn, tenant_slug=tenant_slug, login=login, password=password)
            clear_failures(conn, tenant_slug=tenant_slug, login=login)
            return user
    except Unauthenticated:
        with engine.begin() as conn:
            record_failure(conn, tenant_slug=tenant_slug, login=login, source_ip=source_ip)
        raise
