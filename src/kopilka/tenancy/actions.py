"""Tenancy actions: tenants, branches, staff users, staff tokens, terminal keys.

Passwords are hashed with argon2id. Terminal keys and staff tokens are 256-bit random
secrets; they are stored as SHA-256 digests (a slow hash protects guessable passwords and
adds nothing for such secrets, while it would cost every API call tens of milliseconds).
A secret is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from babel import Locale, UnknownLocaleError
from sqlalchemy import Connection, Engine, func, or_, select, update

from kopilka.core.actor import Actor, ActorType
from kopilka.core.cache import ConfigCache
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KopilkaError,
    NotFound,
    Refused,
    Unauthenticated,
)
from kopilka.core.money import UnitKind, currency_exponent
from kopilka.core.settings import get_settings
from kopilka.ledger.accounts import create_unit
from kopilka.ledger.schema import units
from kopilka.tenancy.audit import record_audit
from kopilka.tenancy.roles import OWNER, roles_assignable_by
from kopilka.tenancy.schema import ROLES, branches, staff_tokens, tenants, terminals, users


class TenancyErrorCode(StrEnum):
    INVALID_SLUG = "invalid_slug"
    TENANT_EXISTS = "tenant_exists"
    TENANT_NOT_FOUND = "tenant_not_found"
    INVALID_LOCALE = "invalid_locale"
    INVALID_TIMEZONE = "invalid_timezone"
    BRANCH_EXISTS = "branch_exists"
    BRANCH_NOT_FOUND = "branch_not_found"
    INVALID_LOGIN = "invalid_login"
    WEAK_PASSWORD = "weak_password"  # noqa: S105 (an error code)
    USER_EXISTS = "user_exists"
    INVALID_ROLE = "invalid_role"
    BAD_CREDENTIALS = "bad_credentials"
    TERMINAL_EXISTS = "terminal_exists"
    TERMINAL_NOT_FOUND = "terminal_not_found"
    INVALID_NAME = "invalid_name"
    USER_NOT_FOUND = "user_not_found"
    ROLE_NOT_ASSIGNABLE = "role_not_assignable"
    OWNER_PROTECTED = "owner_protected"
    CANNOT_CHANGE_SELF = "cannot_change_self"
    LAST_OWNER = "last_owner"


E = TenancyErrorCode
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
_LOGIN = re.compile(r"^[A-Za-z0-9._@+-]{2,100}$")
_hasher = PasswordHasher()
TERMINAL_KEY_PREFIX = "kpt_"
STAFF_TOKEN_PREFIX = "kps_"  # noqa: S105 (a visible prefix, not a secret)


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    slug: str
    name: str
    locale: str
    timezone: str
    currency: str


@dataclass(frozen=True, slots=True)
class User:
    id: int
    tenant_id: int
    login: str
    full_name: str
    role: str
    locale: str | None
    is_active: bool


@dataclass(frozen=True, slots=True)
class Branch:
    id: int
    tenant_id: int
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Terminal:
    id: int
    tenant_id: int
    branch_id: int | None
    name: str
    key_prefix: str
    revoked: bool
    created_at: datetime | None = None
    revoked_at: datetime | None = None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _name(value: str, what: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > 200:
        raise InvalidInput(E.INVALID_NAME, f"{what} must have 1 to 200 characters")
    return value


# --------------------------------------------------------------------------- tenants


def create_tenant(
    conn: Connection,
    *,
    slug: str,
    name: str,
    actor: Actor,
    locale: str = "ru",
    timezone: str = "Europe/Moscow",
    currency: str = "RUB",
) -> Tenant:
    """A tenant with its home currency enabled as a unit."""
    slug = slug.strip().lower()
    if not _SLUG.match(slug):
        raise InvalidInput(
            E.INVALID_SLUG,
            "a tenant's short name is 3 to 64 latin letters, "
            "digits or '-', not starting or ending with '-'",
        )
    name = _name(name, "a tenant's name")
    _check_locale(locale)
    _check_timezone(timezone)
    currency = currency.strip().upper()
    currency_exponent(currency)  # refuses an unknown currency before anything is written
    if conn.execute(select(tenants.c.id).where(tenants.c.slug == slug)).first():
        raise Conflict(E.TENANT_EXISTS, f"a tenant named {slug!r} exists already")
    now = utcnow()
    tenant_id = conn.execute(
        tenants.insert().returning(tenants.c.id),
        {
            "slug": slug,
            "name": name,
            "locale": locale,
            "timezone": timezone,
            "currency": currency,
            "created_at": now,
        },
    ).scalar_one()
    create_unit(conn, tenant_id=tenant_id, code=currency, kind=UnitKind.CURRENCY, actor=actor)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="tenant.create",
        object_type="tenant",
        object_id=tenant_id,
        details={"slug": slug},
    )
    return get_tenant(conn, tenant_id)


def _check_locale(locale: str) -> None:
    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError, TypeError) as error:
        raise InvalidInput(E.INVALID_LOCALE, f"{locale!r} is not a known locale") from error


def _check_timezone(timezone: str) -> None:
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidInput(E.INVALID_TIMEZONE, f"{timezone!r} is not a known time zone") from error


def get_tenant(conn: Connection, tenant_id: int) -> Tenant:
    row = conn.execute(select(tenants).where(tenants.c.id == tenant_id)).first()
    if row is None:
        raise NotFound(E.TENANT_NOT_FOUND, f"tenant {tenant_id} does not exist")
    return Tenant(row.id, row.slug, row.name, row.locale, row.timezone, row.currency)


def get_tenant_by_slug(conn: Connection, slug: str) -> Tenant:
    row = conn.execute(select(tenants.c.id).where(tenants.c.slug == slug.strip().lower())).first()
    if row is None:
        raise NotFound(E.TENANT_NOT_FOUND, f"there is no tenant {slug!r}")
    return get_tenant(conn, row.id)


def list_tenants(conn: Connection) -> list[Tenant]:
    return [
        get_tenant(conn, row.id)
        for row in conn.execute(select(tenants.c.id).order_by(tenants.c.id))
    ]


def update_tenant(
    conn: Connection,
    *,
    tenant_id: int,
    name: str,
    locale: str,
    timezone: str,
    currency: str,
    actor: Actor,
) -> Tenant:
    """The tenant's name, language, time zone and home currency (enabled as a unit)."""
    before = get_tenant(conn, tenant_id)
    name = _name(name, "a tenant's name")
    locale = locale.strip()
    _check_locale(locale)
    timezone = timezone.strip()
    _check_timezone(timezone)
    currency = currency.strip().upper()
    currency_exponent(currency)  # refuses an unknown currency before anything is written
    new = {"name": name, "locale": locale, "timezone": timezone, "currency": currency}
    changed = {key: value for key, value in new.items() if getattr(before, key) != value}
    if not changed:
        return before
    conn.execute(update(tenants).where(tenants.c.id == tenant_id).values(**changed))
    if (
        "currency" in changed
        and not conn.execute(
            select(units.c.id).where(units.c.tenant_id == tenant_id, units.c.code == currency)
        ).first()
    ):
        create_unit(conn, tenant_id=tenant_id, code=currency, kind=UnitKind.CURRENCY, actor=actor)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="tenant.update",
        object_type="tenant",
        object_id=tenant_id,
        details=changed,
    )
    return get_tenant(conn, tenant_id)


# --------------------------------------------------------------------------- branches


def create_branch(conn: Connection, *, tenant_id: int, name: str, actor: Actor) -> int:
    name = _name(name, "a branch's name")
    if conn.execute(
        select(branches.c.id).where(branches.c.tenant_id == tenant_id, branches.c.name == name)
    ).first():
        raise Conflict(E.BRANCH_EXISTS, f"a branch named {name!r} exists already")
    branch_id = conn.execute(
        branches.insert().returning(branches.c.id),
        {"tenant_id": tenant_id, "name": name, "created_at": utcnow()},
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="branch.create",
        object_type="branch",
        object_id=branch_id,
        details={"name": name},
    )
    return int(branch_id)


def _check_branch(conn: Connection, tenant_id: int, branch_id: int | None) -> None:
    if branch_id is None:
        return
    if not conn.execute(
        select(branches.c.id).where(branches.c.tenant_id == tenant_id, branches.c.id == branch_id)
    ).first():
        raise NotFound(E.BRANCH_NOT_FOUND, f"branch {branch_id} does not exist")


def list_branches(conn: Connection, tenant_id: int) -> list[Branch]:
    rows = conn.execute(
        select(branches).where(branches.c.tenant_id == tenant_id).order_by(branches.c.name)
    ).all()
    return [Branch(row.id, row.tenant_id, row.name, row.created_at) for row in rows]


def rename_branch(
    conn: Connection, *, tenant_id: int, branch_id: int, name: str, actor: Actor
) -> None:
    name = _name(name, "a branch's name")
    row = conn.execute(
        select(branches.c.name).where(branches.c.tenant_id == tenant_id, branches.c.id == branch_id)
    ).first()
    if row is None:
        raise NotFound(E.BRANCH_NOT_FOUND, f"branch {branch_id} does not exist")
    if row.name == name:
        return
    if conn.execute(
        select(branches.c.id).where(
            branches.c.tenant_id == tenant_id,
            branches.c.name == name,
            branches.c.id != branch_id,
        )
    ).first():
        raise Conflict(E.BRANCH_EXISTS, f"a branch named {name!r} exists already")
    conn.execute(update(branches).where(branches.c.id == branch_id).values(name=name))
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="branch.rename",
        object_type="branch",
        object_id=branch_id,
        details={"from": row.name, "to": name},
    )


# --------------------------------------------------------------------------- users


def create_user(
    conn: Connection,
    *,
    tenant_id: int,
    login: str,
    password: str,
    role: str,
    actor: Actor,
    full_name: str = "",
    locale: str | None = None,
) -> User:
    login = login.strip()
    if not _LOGIN.match(login):
        raise InvalidInput(E.INVALID_LOGIN, "a login is 2 to 100 latin letters, digits or ._@+-")
    if role not in ROLES:
        raise InvalidInput(E.INVALID_ROLE, f"role must be one of {', '.join(ROLES)}")
    acting = _acting_user(conn, tenant_id, actor)
    if acting is not None and role not in roles_assignable_by(acting.role):
        raise Forbidden(E.ROLE_NOT_ASSIGNABLE, f"a {acting.role} may not make a user {role}")
    _check_password(password)
    if locale is not None:
        _check_locale(locale)
    if conn.execute(
        select(users.c.id).where(users.c.tenant_id == tenant_id, users.c.login == login)
    ).first():
        raise Conflict(E.USER_EXISTS, f"user {login!r} exists already")
    user_id = conn.execute(
        users.insert().returning(users.c.id),
        {
            "tenant_id": tenant_id,
            "login": login,
            "full_name": full_name.strip(),
            "password_hash": _hasher.hash(password),
            "role": role,
            "locale": locale,
            "is_active": True,
            "created_at": utcnow(),
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="user.create",
        object_type="user",
        object_id=user_id,
        details={"login": login, "role": role},
    )
    return get_user(conn, tenant_id, user_id)


def set_user_locale(
    conn: Connection, *, tenant_id: int, user_id: int, locale: str, actor: Actor
) -> None:
    """The language a user's screens speak (``None`` elsewhere: the tenant's)."""
    _check_locale(locale)
    conn.execute(
        update(users)
        .where(users.c.tenant_id == tenant_id, users.c.id == user_id)
        .values(locale=locale)
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="user.locale",
        object_type="user",
        object_id=user_id,
        details={"locale": locale},
    )


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise InvalidInput(E.WEAK_PASSWORD, "a password has at least 8 characters")


def _acting_user(conn: Connection, tenant_id: int, actor: Actor) -> User | None:
    """The staff user behind ``actor`` (whose role bounds what they may do), if any.

    The CLI and jobs act for the operator of the server and are not bound by roles.
    """
    if actor.type != ActorType.USER or actor.id is None:
        return None
    try:
        return get_user(conn, tenant_id, int(actor.id))
    except (KopilkaError, ValueError) as error:
        raise Forbidden(E.ROLE_NOT_ASSIGNABLE, "the acting user is not of this tenant") from error


def _user_row(conn: Connection, tenant_id: int, user_id: int, *, lock: bool = False) -> User:
    query = select(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(E.USER_NOT_FOUND, f"user {user_id} does not exist")
    return _user(row)


def _user(row: Any) -> User:
    return User(
        row.id, row.tenant_id, row.login, row.full_name, row.role, row.locale, bool(row.is_active)
    )


@dataclass(frozen=True, slots=True)
class UserList:
    items: list[User]
    total: int


def list_users(
    conn: Connection,
    *,
    tenant_id: int,
    search: str = "",
    role: str | None = None,
    active: bool | None = None,
    offset: int = 0,
    limit: int = 25,
) -> UserList:
    """Staff by login: those matching ``search`` (login or name), a role, a status."""
    where = [users.c.tenant_id == tenant_id]
    search = search.strip()
    if search:
        where.append(
            or_(
                users.c.login.icontains(search, autoescape=True),
                users.c.full_name.icontains(search, autoescape=True),
            )
        )
    if role:
        where.append(users.c.role == role)
    if active is not None:
        where.append(users.c.is_active.is_(active))
    total = conn.execute(select(func.count()).select_from(users).where(*where)).scalar_one()
    rows = conn.execute(
        select(users).where(*where).order_by(users.c.login).offset(offset).limit(limit)
    ).all()
    return UserList([_user(row) for row in rows], int(total))


def update_user(
    conn: Connection,
    *,
    tenant_id: int,
    user_id: int,
    actor: Actor,
    full_name: str | None = None,
    role: str | None = None,
    is_active: bool | None = None,
) -> User:
    """A user's name, role and whether they may sign in (``None``: unchanged).

    An administrator may not touch owners nor make one; nobody changes their own role or
    deactivates themselves; the last active owner stays an active owner. A deactivated
    user is signed out everywhere at once.
    """
    target = _user_row(conn, tenant_id, user_id, lock=True)
    acting = _acting_user(conn, tenant_id, actor)
    new_role = target.role if role is None else role
    new_active = target.is_active if is_active is None else is_active
    new_name = target.full_name if full_name is None else full_name.strip()
    if len(new_name) > 200:
        raise InvalidInput(E.INVALID_NAME, "a person's name has at most 200 characters")
    if new_role not in ROLES:
        raise InvalidInput(E.INVALID_ROLE, f"role must be one of {', '.join(ROLES)}")
    if acting is not None:
        assignable = roles_assignable_by(acting.role)
        if target.role not in assignable:
            raise Forbidden(E.OWNER_PROTECTED, f"a {acting.role} may not change a {target.role}")
        if new_role != target.role and new_role not in assignable:
            raise Forbidden(
                E.ROLE_NOT_ASSIGNABLE, f"a {acting.role} may not make a user {new_role}"
            )
        if acting.id == target.id and (new_role != target.role or not new_active):
            raise Refused(
                E.CANNOT_CHANGE_SELF, "nobody may change their own role or deactivate themselves"
            )
    if target.role == OWNER and target.is_active and (new_role != OWNER or not new_active):
        _keep_an_owner(conn, tenant_id, user_id)
    changed: dict[str, Any] = {}
    if new_name != target.full_name:
        changed["full_name"] = new_name
    if new_role != target.role:
        changed["role"] = new_role
    if new_active != target.is_active:
        changed["is_active"] = new_active
    if not changed:
        return target
    conn.execute(
        update(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id).values(**changed)
    )
    if changed.get("is_active") is False:
        _sign_out_everywhere(conn, tenant_id, user_id)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="user.update",
        object_type="user",
        object_id=user_id,
        details={"login": target.login, **changed},
    )
    return _user_row(conn, tenant_id, user_id)


def _keep_an_owner(conn: Connection, tenant_id: int, leaving_id: int) -> None:
    """Refuses when ``leaving_id`` is the only active owner (rows locked against a race)."""
    owners = conn.execute(
        select(users.c.id)
        .where(
            users.c.tenant_id == tenant_id,
            users.c.role == OWNER,
            users.c.is_active.is_(True),
        )
        .with_for_update()
    ).all()
    if all(row.id == leaving_id for row in owners):
        raise Refused(E.LAST_OWNER, "the last active owner cannot be demoted or deactivated")


def set_password(
    conn: Connection, *, tenant_id: int, user_id: int, password: str, actor: Actor
) -> None:
    """A new password; the user is signed out everywhere (web sessions and API tokens)."""
    target = _user_row(conn, tenant_id, user_id, lock=True)
    acting = _acting_user(conn, tenant_id, actor)
    if acting is not None and target.role not in roles_assignable_by(acting.role):
        raise Forbidden(E.OWNER_PROTECTED, f"a {acting.role} may not change a {target.role}")
    _check_password(password)
    conn.execute(
        update(users)
        .where(users.c.tenant_id == tenant_id, users.c.id == user_id)
        .values(password_hash=_hasher.hash(password))
    )
    _sign_out_everywhere(conn, tenant_id, user_id)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="user.password",
        object_type="user",
        object_id=user_id,
        details={"login": target.login},
    )


def _sign_out_everywhere(conn: Connection, tenant_id: int, user_id: int) -> None:
    # sessions imports this module, so it is imported here.
    from kopilka.tenancy.sessions import close_user_sessions

    close_user_sessions(conn, tenant_id, user_id)
    conn.execute(
        update(staff_tokens)
        .where(
            staff_tokens.c.tenant_id == tenant_id,
            staff_tokens.c.user_id == user_id,
            staff_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


def get_user(conn: Connection, tenant_id: int, user_id: int) -> User:
    row = conn.execute(
        select(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id)
    ).first()
    if row is None:
        raise NotFound(E.BAD_CREDENTIALS, f"user {user_id} does not exist")
    return User(
        row.id, row.tenant_id, row.login, row.full_name, row.role, row.locale, bool(row.is_active)
    )


def authenticate(conn: Connection, *, tenant_slug: str, login: str, password: str) -> User:
    """The user whose password this is; one vague error for every kind of failure."""
    refused = Unauthenticated(E.BAD_CREDENTIALS, "unknown tenant, login or password")
    tenant = conn.execute(
        select(tenants.c.id).where(tenants.c.slug == tenant_slug.strip().lower())
    ).first()
    row = None
    if tenant is not None:
        row = conn.execute(
            select(users).where(users.c.tenant_id == tenant.id, users.c.login == login.strip())
        ).first()
    if row is None or not row.is_active:
        # Spend the same time as a real check, so timing does not tell logins apart.
        _hasher.hash(password)
        raise refused
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError) as error:
        raise refused from error
    return get_user(conn, row.tenant_id, row.id)


def issue_staff_token(conn: Connection, *, user: User, actor: Actor) -> tuple[str, datetime]:
    """A bearer token for the API; returns the secret (shown once) and when it expires."""
    secret = STAFF_TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    expires_at = now + timedelta(hours=get_settings().staff_token_ttl_hours)
    conn.execute(
        staff_tokens.insert(),
        {
            "tenant_id": user.tenant_id,
            "user_id": user.id,
            "token_hash": _digest(secret),
            "created_at": now,
            "expires_at": expires_at,
        },
    )
    record_audit(
        conn,
        tenant_id=user.tenant_id,
        actor=actor,
        action="token.issue",
        object_type="user",
        object_id=user.id,
    )
    return secret, expires_at


def resolve_staff_token(conn: Connection, token: str) -> User | None:
    row = conn.execute(
        select(
            staff_tokens.c.user_id,
            staff_tokens.c.tenant_id,
            staff_tokens.c.expires_at,
            staff_tokens.c.revoked_at,
        ).where(staff_tokens.c.token_hash == _digest(token))
    ).first()
    if row is None or row.revoked_at is not None or as_utc(row.expires_at) <= utcnow():
        return None
    user = get_user(conn, row.tenant_id, row.user_id)
    return user if user.is_active else None


# --------------------------------------------------------------------------- terminals


def create_terminal(
    conn: Connection,
    *,
    tenant_id: int,
    name: str,
    actor: Actor,
    branch_id: int | None = None,
) -> tuple[Terminal, str]:
    """A terminal and its key. The key is returned here and never again."""
    name = _name(name, "a terminal's name")
    _check_branch(conn, tenant_id, branch_id)
    if conn.execute(
        select(terminals.c.id).where(terminals.c.tenant_id == tenant_id, terminals.c.name == name)
    ).first():
        raise Conflict(E.TERMINAL_EXISTS, f"a terminal named {name!r} exists already")
    prefix = secrets.token_hex(6)
    key = f"{TERMINAL_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    terminal_id = conn.execute(
        terminals.insert().returning(terminals.c.id),
        {
            "tenant_id": tenant_id,
            "branch_id": branch_id,
            "name": name,
            "key_prefix": prefix,
            "key_hash": _digest(key),
            "created_at": utcnow(),
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="terminal.create",
        object_type="terminal",
        object_id=terminal_id,
        details={"name": name},
    )
    return get_terminal(conn, tenant_id, terminal_id), key


def get_terminal(conn: Connection, tenant_id: int, terminal_id: int) -> Terminal:
    row = conn.execute(
        select(terminals).where(terminals.c.tenant_id == tenant_id, terminals.c.id == terminal_id)
    ).first()
    if row is None:
        raise NotFound(E.TERMINAL_NOT_FOUND, f"terminal {terminal_id} does not exist")
    return _terminal(row)


def _terminal(row: Any) -> Terminal:
    return Terminal(
        row.id,
        row.tenant_id,
        row.branch_id,
        row.name,
        row.key_prefix,
        row.revoked_at is not None,
        row.created_at,
        row.revoked_at,
    )


def list_terminals(conn: Connection, tenant_id: int) -> list[Terminal]:
    """Every terminal of the tenant, the live ones first, by name."""
    rows = conn.execute(
        select(terminals)
        .where(terminals.c.tenant_id == tenant_id)
        .order_by(terminals.c.revoked_at.is_not(None), terminals.c.name)
    ).all()
    return [_terminal(row) for row in rows]


@dataclass(frozen=True, slots=True)
class TerminalSignIn:
    """A terminal known by its key, with what the POS gateway needs of its tenant."""

    terminal: Terminal
    loyalty_enabled: bool  # the tenant's loyalty switch (SPEC P-9)


# Every POS request signs its terminal in: a process keeps a key's sign-in for a moment
# (kopilka.core.cache), keyed by the key's digest. Revoking a terminal or switching a
# tenant's loyalty module drops them.
TERMINAL_SIGN_INS: ConfigCache[str, TerminalSignIn] = ConfigCache("terminal sign-ins")


def sign_in_terminal(conn: Connection, key: str) -> TerminalSignIn | None:
    """The live terminal whose key this is, in one query."""
    if not key.startswith(TERMINAL_KEY_PREFIX):
        return None
    row = conn.execute(
        select(terminals, tenants.c.loyalty_enabled)
        .join(tenants, tenants.c.id == terminals.c.tenant_id)
        .where(terminals.c.key_hash == _digest(key))
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    return TerminalSignIn(_terminal(row), bool(row.loyalty_enabled))


def sign_in_terminal_cached(engine: Engine, key: str) -> TerminalSignIn | None:
    """``sign_in_terminal`` through this process's short-lived cache: no query at all while
    the key's sign-in is fresh."""
    if not key.startswith(TERMINAL_KEY_PREFIX):
        return None

    def load() -> TerminalSignIn | None:
        with read_only(engine) as conn:
            return sign_in_terminal(conn, key)

    return TERMINAL_SIGN_INS.get(engine, _digest(key), load)


def resolve_terminal_key(conn: Connection, key: str) -> Terminal | None:
    signed_in = sign_in_terminal(conn, key)
    return None if signed_in is None else signed_in.terminal


def revoke_terminal(conn: Connection, *, tenant_id: int, terminal_id: int, actor: Actor) -> None:
    get_terminal(conn, tenant_id, terminal_id)
    conn.execute(
        update(terminals)
        .where(terminals.c.id == terminal_id, terminals.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    TERMINAL_SIGN_INS.forget(conn=conn)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="terminal.revoke",
        object_type="terminal",
        object_id=terminal_id,
    )


def actor_for_user(user: User, source_ip: str | None) -> Actor:
    return Actor(ActorType.USER, str(user.id), user.login, source_ip)


def actor_for_terminal(terminal: Terminal, source_ip: str | None) -> Actor:
    return Actor(ActorType.TERMINAL, str(terminal.id), terminal.name, source_ip)
