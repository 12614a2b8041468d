"""Which Kopilka terminal an r_keeper station is, and what its lookups show.

A FarCards terminal is an ordinary terminal (SPEC P-1) with its own URL secret: the
POS's ``ExtDllHttp.ini`` can carry a URL and nothing else, so the secret rides in the
path. It is not the terminal's API key on purpose: URLs end up in proxy and access logs,
and a FarCards secret that leaks there opens the two FarCards functions of one terminal
only, never the JSON API; rotating it leaves the terminal's key alone. Like every secret
here, only its SHA-256 is stored and it is shown once.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.errors import InvalidInput, NotFound, Unauthenticated
from kopilka.farcards.error_codes import E
from kopilka.farcards.schema import farcards_codes, farcards_sub_accounts, farcards_terminals
from kopilka.loyalty.programs import get_program
from kopilka.tenancy.actions import Terminal, get_terminal
from kopilka.tenancy.audit import record_audit
from kopilka.tenancy.schema import tenants, terminals

SECRET_PREFIX = "kfc_"  # noqa: S105 (a visible prefix, not a secret)
ACCUMULATION = "accumulation"
FIRST_SUB_ACCOUNT, LAST_SUB_ACCOUNT = 2, 8  # Sum2 .. Sum8
MAX_RKEEPER_CODE = 2**31 - 1
_CODE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_SOURCE = re.compile(r"^[A-Z0-9_]{1,16}$")


@dataclass(frozen=True, slots=True)
class FarcardsTerminal:
    id: int
    tenant_id: int
    terminal_id: int
    restaurant_code: str
    station_codes: tuple[str, ...] | None  # None: any station
    allowed_ips: tuple[str, ...] | None  # None: any address
    secret_prefix: str


@dataclass(frozen=True, slots=True)
class Caller:
    """A signed-in FarCards call: its terminal, and what the door needs of the tenant."""

    link: FarcardsTerminal
    terminal: Terminal
    tenant_slug: str
    locale: str
    timezone: str
    loyalty_enabled: bool


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _link(row: Any) -> FarcardsTerminal:
    return FarcardsTerminal(
        id=row.id,
        tenant_id=row.tenant_id,
        terminal_id=row.terminal_id,
        restaurant_code=row.restaurant_code,
        station_codes=None if row.station_codes is None else tuple(row.station_codes),
        allowed_ips=None if row.allowed_ips is None else tuple(row.allowed_ips),
        secret_prefix=row.secret_prefix,
    )


def _codes(values: list[str] | None, what: str, code: E) -> list[str] | None:
    if values is None:
        return None
    cleaned = sorted({v.strip() for v in values})
    bad = next((v for v in cleaned if not _CODE.match(v)), None)
    if not cleaned or bad is not None:
        raise InvalidInput(
            code, f"{what}: 1 to 32 letters, digits, '_' or '-'", value=bad if bad else ""
        )
    return cleaned


def _networks(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError as error:
            raise InvalidInput(
                E.INVALID_ALLOW_LIST,
                f"{value!r} is not an address or a network (CIDR)",
                value=value.strip(),
            ) from error
    if not out:
        raise InvalidInput(E.INVALID_ALLOW_LIST, "an allow-list names at least one address")
    return sorted(set(out))


def configure_terminal(
    conn: Connection,
    *,
    tenant_id: int,
    terminal_id: int,
    restaurant_code: str,
    actor: Actor,
    station_codes: list[str] | None = None,
    allowed_ips: list[str] | None = None,
    new_secret: bool = False,
) -> tuple[FarcardsTerminal, str | None]:
    """Connect ``terminal_id`` to r_keeper's restaurant (and stations); the secret comes
    back when it is made (first time, or ``new_secret``), else ``None``."""
    terminal = get_terminal(conn, tenant_id, terminal_id)
    if terminal.revoked:
        raise InvalidInput(E.TERMINAL_REVOKED, f"terminal {terminal_id} is revoked")
    restaurant = (
        _codes([restaurant_code], "a restaurant code", E.INVALID_RESTAURANT_CODE) or [""]
    )[0]
    values: dict[str, Any] = {
        "restaurant_code": restaurant,
        "station_codes": _codes(station_codes, "a station code", E.INVALID_STATION_CODE),
        "allowed_ips": _networks(allowed_ips),
        "updated_at": utcnow(),
    }
    existing = conn.execute(
        select(farcards_terminals.c.id).where(farcards_terminals.c.terminal_id == terminal_id)
    ).first()
    secret = None
    if existing is None or new_secret:
        prefix = secrets.token_hex(4)
        secret = f"{SECRET_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"
        values |= {"secret_prefix": prefix, "secret_hash": _digest(secret)}
    if existing is None:
        conn.execute(
            farcards_terminals.insert(),
            {"tenant_id": tenant_id, "terminal_id": terminal_id, "created_at": utcnow()} | values,
        )
    else:
        conn.execute(
            update(farcards_terminals)
            .where(farcards_terminals.c.id == existing.id)
            .values(**values)
        )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="farcards.configure",
        object_type="terminal",
        object_id=terminal_id,
        details={
            "restaurant": restaurant,
            "stations": values["station_codes"],
            "allowed_ips": values["allowed_ips"],
            "new_secret": secret is not None,
        },
    )
    return get_link(conn, tenant_id, terminal_id), secret


def get_link(conn: Connection, tenant_id: int, terminal_id: int) -> FarcardsTerminal:
    row = conn.execute(
        select(farcards_terminals).where(
            farcards_terminals.c.tenant_id == tenant_id,
            farcards_terminals.c.terminal_id == terminal_id,
        )
    ).first()
    if row is None:
        raise NotFound(E.NOT_CONFIGURED, f"terminal {terminal_id} is not set up for FarCards")
    return _link(row)


def list_links(conn: Connection, tenant_id: int) -> dict[int, FarcardsTerminal]:
    """The tenant's FarCards terminals, by their terminal's id."""
    rows = conn.execute(
        select(farcards_terminals).where(farcards_terminals.c.tenant_id == tenant_id)
    )
    return {row.terminal_id: _link(row) for row in rows}


def authenticate(conn: Connection, *, tenant_slug: str, secret: str) -> Caller:
    """The live FarCards terminal of ``tenant_slug`` whose secret this is (one query)."""
    refused = Unauthenticated(E.NOT_AUTHORISED, "unknown FarCards address or secret")
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 100:
        raise refused
    row = conn.execute(
        select(
            farcards_terminals,
            terminals.c.name.label("terminal_name"),
            terminals.c.branch_id,
            terminals.c.key_prefix,
            terminals.c.revoked_at,
            tenants.c.slug,
            tenants.c.locale,
            tenants.c.timezone,
            tenants.c.loyalty_enabled,
        )
        .join(terminals, terminals.c.id == farcards_terminals.c.terminal_id)
        .join(tenants, tenants.c.id == farcards_terminals.c.tenant_id)
        .where(farcards_terminals.c.secret_hash == _digest(secret))
    ).first()
    if row is None or row.revoked_at is not None or row.slug != tenant_slug:
        raise refused
    terminal = Terminal(
        row.terminal_id, row.tenant_id, row.branch_id, row.terminal_name, row.key_prefix, False
    )
    return Caller(
        _link(row), terminal, row.slug, row.locale, row.timezone, bool(row.loyalty_enabled)
    )


def address_allowed(link: FarcardsTerminal, source_ip: str | None) -> bool:
    if link.allowed_ips is None:
        return True
    if source_ip is None:
        return False
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n) for n in link.allowed_ips)


# --------------------------------------------------------------------------- what it shows


def set_sub_account(
    conn: Connection, *, tenant_id: int, source: str, sub_account: int | None, actor: Actor
) -> None:
    """Show ``source`` (a point unit's code, or ``accumulation``) as ``Sum<sub_account>``
    (2..8) in lookups; ``None`` stops showing it."""
    source = source.strip()
    if source != ACCUMULATION and not _SOURCE.match(source):
        raise InvalidInput(
            E.INVALID_SOURCE, f"{source!r} is neither a unit code nor {ACCUMULATION!r}"
        )
    if sub_account is not None and not FIRST_SUB_ACCOUNT <= sub_account <= LAST_SUB_ACCOUNT:
        raise InvalidInput(E.INVALID_SUB_ACCOUNT, "FarCards sub-accounts are 2 to 8")
    mine = farcards_sub_accounts.c.tenant_id == tenant_id
    conn.execute(
        delete(farcards_sub_accounts).where(mine, farcards_sub_accounts.c.source == source)
    )
    if sub_account is not None:
        conn.execute(
            delete(farcards_sub_accounts).where(
                mine, farcards_sub_accounts.c.sub_account == sub_account
            )
        )
        conn.execute(
            farcards_sub_accounts.insert(),
            {"tenant_id": tenant_id, "source": source, "sub_account": sub_account},
        )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="farcards.sub_account",
        object_type="tenant",
        object_id=tenant_id,
        details={"source": source, "sub_account": sub_account},
    )


def sub_accounts(conn: Connection, tenant_id: int) -> dict[str, int]:
    rows = conn.execute(
        select(farcards_sub_accounts.c.source, farcards_sub_accounts.c.sub_account).where(
            farcards_sub_accounts.c.tenant_id == tenant_id
        )
    )
    return {row.source: row.sub_account for row in rows}


def set_codes(
    conn: Connection,
    *,
    tenant_id: int,
    program_id: int,
    actor: Actor,
    tier_id: int | None = None,
    discount_code: int | None = None,
    bonus_code: int | None = None,
) -> None:
    """The r_keeper discount and bonus numbers a lookup names for cards of the program
    (``tier_id`` None) or of one of its tiers."""
    _check_tier(conn, tenant_id, program_id, tier_id)
    for code, error in (
        (discount_code, E.INVALID_DISCOUNT_CODE),
        (bonus_code, E.INVALID_BONUS_CODE),
    ):
        if code is not None and not 0 < code <= MAX_RKEEPER_CODE:
            raise InvalidInput(error, "r_keeper codes are positive numbers")
    conn.execute(delete(farcards_codes).where(*_codes_row(program_id, tier_id)))
    conn.execute(
        farcards_codes.insert(),
        {
            "tenant_id": tenant_id,
            "program_id": program_id,
            "tier_id": tier_id,
            "discount_code": discount_code,
            "bonus_code": bonus_code,
        },
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="farcards.codes",
        object_type="program",
        object_id=program_id,
        details={"tier": tier_id, "discount": discount_code, "bonus": bonus_code},
    )


def clear_codes(
    conn: Connection, *, tenant_id: int, program_id: int, actor: Actor, tier_id: int | None = None
) -> None:
    """Forget the tier's own numbers (its cards get the program's again), or the
    program's (``tier_id`` None: its cards on no tier of their own get none)."""
    _check_tier(conn, tenant_id, program_id, tier_id)
    removed = conn.execute(delete(farcards_codes).where(*_codes_row(program_id, tier_id)))
    if removed.rowcount:
        record_audit(
            conn,
            tenant_id=tenant_id,
            actor=actor,
            action="farcards.codes",
            object_type="program",
            object_id=program_id,
            details={"tier": tier_id, "cleared": True},
        )


def list_codes(
    conn: Connection, tenant_id: int
) -> dict[tuple[int, int | None], tuple[int | None, int | None]]:
    """Every (program, tier) row set: (discount, bonus); tier None is the program's own."""
    rows = conn.execute(select(farcards_codes).where(farcards_codes.c.tenant_id == tenant_id))
    return {(r.program_id, r.tier_id): (r.discount_code, r.bonus_code) for r in rows}


def _check_tier(conn: Connection, tenant_id: int, program_id: int, tier_id: int | None) -> None:
    program = get_program(conn, tenant_id, program_id)
    if tier_id is not None and tier_id not in {t.id for t in program.tiers}:
        raise InvalidInput(E.UNKNOWN_TIER, f"tier {tier_id} is not a tier of {program.name!r}")


def _codes_row(program_id: int, tier_id: int | None) -> tuple[Any, Any]:
    tier = (
        farcards_codes.c.tier_id.is_(None)
        if tier_id is None
        else farcards_codes.c.tier_id == tier_id
    )
    return farcards_codes.c.program_id == program_id, tier


def codes_for(
    conn: Connection, tenant_id: int, program_id: int, tier_id: int | None
) -> tuple[int | None, int | None]:
    """(discount, bonus) r_keeper numbers for a card: its tier's row, else its program's."""
    rows = {
        row.tier_id: row
        for row in conn.execute(
            select(farcards_codes).where(
                farcards_codes.c.tenant_id == tenant_id, farcards_codes.c.program_id == program_id
            )
        )
    }
    row = rows.get(tier_id) if tier_id is not None else None
    row = row or rows.get(None)
    return (None, None) if row is None else (row.discount_code, row.bonus_code)
