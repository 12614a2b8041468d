"""Where a tenant's points for paying folios live (SPEC H-5): its own loyalty ledger, or
an external processing centre reached over HTTP (the seed's "Kontur"; it may be another
Kopilka server).

The choice is one row of ``hotel_loyalty_centres`` per tenant: no row is the own ledger;
a row names the centre's base URL, the key Kopilka presents there (a terminal key of the
centre, ``Authorization: Bearer``), how long each step of a request may wait
(``timeout_ms``) and whether it is switched on. The key is write-only: it is never shown
back whole (``key_hint``), never logged, never put in an audit event. Every change writes
an audit event in the same transaction.

``kopilka.hotel.loyalty_provider.provider_for`` reads this to pick the provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Connection, delete, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import InvalidInput, NotFound
from kopilka.hotel.schema import hotel_loyalty_centres
from kopilka.tenancy.audit import record_audit

MIN_TIMEOUT_MS = 100
MAX_TIMEOUT_MS = 60_000
DEFAULT_TIMEOUT_MS = 5_000
MAX_URL = 500
MAX_KEY = 500
_KOPILKA_KEY = "kpt_"  # a Kopilka terminal key: kpt_<public prefix>_<secret>


class LoyaltyCentreErrorCode(StrEnum):
    INVALID_CENTRE_URL = "invalid_centre_url"
    INVALID_CENTRE_KEY = "invalid_centre_key"
    INVALID_CENTRE_TIMEOUT = "invalid_centre_timeout"
    LOYALTY_CENTRE_NOT_SET = "loyalty_centre_not_set"
    # The centre did not answer, answered garbage or an error of its own, or refused the
    # key: nothing could be done there (kopilka.hotel.loyalty_provider).
    LOYALTY_CENTRE_UNAVAILABLE = "loyalty_centre_unavailable"


E = LoyaltyCentreErrorCode


@dataclass(frozen=True, slots=True)
class CentreSettings:
    """What a provider needs to reach the centre. Holds the key: keep it server-side."""

    tenant_id: int
    base_url: str
    api_key: str = field(repr=False)
    timeout_ms: int
    enabled: bool
    updated_at: datetime

    @property
    def key_hint(self) -> str:
        return mask_key(self.api_key)


@dataclass(frozen=True, slots=True)
class CentreView:
    """The settings as people and the API see them: the key only as a hint."""

    base_url: str
    key_hint: str
    timeout_ms: int
    enabled: bool
    updated_at: datetime


def mask_key(key: str) -> str:
    """Enough of a key to tell which one it is, never enough to use it: a Kopilka
    terminal key shows its public prefix (``kpt_3fa2c9d1e0b4_…``), another its last four
    characters when it is long."""
    if key.startswith(_KOPILKA_KEY) and key.count("_") >= 2:
        prefix = key.split("_", 2)[1]
        if 1 <= len(prefix) <= 16:
            return f"{_KOPILKA_KEY}{prefix}_…"
    return f"…{key[-4:]}" if len(key) >= 16 else "…"


# --------------------------------------------------------------------------- checks


def normalise_url(text: str) -> str:
    """An ``http``/``https`` address with a host, without user, query or fragment, and
    without the trailing slash (the API's paths go after it)."""
    raw = text.strip() if isinstance(text, str) else ""
    refusal = InvalidInput(
        E.INVALID_CENTRE_URL,
        "the centre's address is http:// or https://, a host and an optional path, "
        "such as https://centre.example",
    )
    if not raw or len(raw) > MAX_URL or any(ch.isspace() or ord(ch) < 32 for ch in raw):
        raise refusal
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as error:
        raise refusal from error
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise refusal
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            E.INVALID_CENTRE_URL, "the key goes in its own field, not in the centre's address"
        )
    if parts.query or parts.fragment:
        raise refusal
    cleaned = urlunsplit((parts.scheme.lower(), parts.netloc, parts.path.rstrip("/"), "", ""))
    assert cleaned.startswith(("http://", "https://"))
    return cleaned


def check_key(key: str) -> str:
    cleaned = key.strip() if isinstance(key, str) else ""
    if not 1 <= len(cleaned) <= MAX_KEY or not all(33 <= ord(ch) <= 126 for ch in cleaned):
        raise InvalidInput(
            E.INVALID_CENTRE_KEY,
            f"the centre's key is 1 to {MAX_KEY} visible characters without spaces "
            "(for another Kopilka server: one of its terminal keys, kpt_…)",
        )
    return cleaned


def check_timeout(timeout_ms: int) -> int:
    if (
        not isinstance(timeout_ms, int)
        or isinstance(timeout_ms, bool)
        or not MIN_TIMEOUT_MS <= timeout_ms <= MAX_TIMEOUT_MS
    ):
        raise InvalidInput(
            E.INVALID_CENTRE_TIMEOUT,
            f"the timeout is {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS} milliseconds",
        )
    return timeout_ms


# --------------------------------------------------------------------------- reading


def centre_not_set() -> NotFound:
    return NotFound(
        E.LOYALTY_CENTRE_NOT_SET,
        "no external loyalty centre is set: folios are paid with the company's own cards",
    )


def get_centre(conn: Connection, tenant_id: int) -> CentreSettings | None:
    """The tenant's centre with its key (for the provider), or None: the own ledger."""
    row = conn.execute(
        select(hotel_loyalty_centres).where(hotel_loyalty_centres.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        return None
    return CentreSettings(
        tenant_id=row.tenant_id,
        base_url=row.base_url,
        api_key=row.api_key,
        timeout_ms=row.timeout_ms,
        enabled=bool(row.enabled),
        updated_at=as_utc(row.updated_at),
    )


def centre_view(conn: Connection, tenant_id: int) -> CentreView | None:
    centre = get_centre(conn, tenant_id)
    if centre is None:
        return None
    return CentreView(
        centre.base_url, centre.key_hint, centre.timeout_ms, centre.enabled, centre.updated_at
    )


# --------------------------------------------------------------------------- writing


def set_centre(
    conn: Connection,
    *,
    tenant_id: int,
    base_url: str,
    api_key: str | None,
    actor: Actor,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    enabled: bool = True,
) -> CentreView:
    """Pay folios with the points of the centre at ``base_url``. ``api_key`` None keeps
    the key set before (the screens never show it, so leaving it blank keeps it); a
    first setting needs one."""
    url = normalise_url(base_url)
    timeout = check_timeout(timeout_ms)
    key = None if api_key is None or not api_key.strip() else check_key(api_key)
    row = conn.execute(
        select(hotel_loyalty_centres.c.id, hotel_loyalty_centres.c.api_key)
        .where(hotel_loyalty_centres.c.tenant_id == tenant_id)
        .with_for_update()
    ).first()
    if row is None and key is None:
        raise InvalidInput(E.INVALID_CENTRE_KEY, "the centre's key is required")
    values = {
        "base_url": url,
        "timeout_ms": timeout,
        "enabled": bool(enabled),
        "updated_at": utcnow(),
    }
    if key is not None:
        values["api_key"] = key
    if row is None:
        centre_id = conn.execute(
            hotel_loyalty_centres.insert().returning(hotel_loyalty_centres.c.id),
            {"tenant_id": tenant_id, **values},
        ).scalar_one()
    else:
        centre_id = row.id
        conn.execute(
            update(hotel_loyalty_centres)
            .where(hotel_loyalty_centres.c.id == row.id)
            .values(**values)
        )
    view = centre_view(conn, tenant_id)
    assert view is not None and view.base_url == url
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="loyalty_centre.set",
        object_type="loyalty_centre",
        object_id=centre_id,
        details={
            "base_url": url,
            "timeout_ms": timeout,
            "enabled": bool(enabled),
            "key": "changed" if key is not None else "kept",
            "key_hint": view.key_hint,
        },
    )
    return view


def clear_centre(conn: Connection, *, tenant_id: int, actor: Actor) -> bool:
    """Back to the own ledger: the centre's settings and key are forgotten. False when
    there were none."""
    row = conn.execute(
        select(hotel_loyalty_centres.c.id, hotel_loyalty_centres.c.base_url)
        .where(hotel_loyalty_centres.c.tenant_id == tenant_id)
        .with_for_update()
    ).first()
    if row is None:
        return False
    conn.execute(delete(hotel_loyalty_centres).where(hotel_loyalty_centres.c.id == row.id))
    assert get_centre(conn, tenant_id) is None
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="loyalty_centre.clear",
        object_type="loyalty_centre",
        object_id=row.id,
        details={"base_url": row.base_url},
    )
    return True
