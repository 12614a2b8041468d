"""Billing of discount cards, switched on and off (seed 002; SPEC P-9, C-7).

* **The switch** is ``tenants.loyalty_enabled``. Off, the POS gateway answers every card
  request with ``loyalty_module_disabled`` (``kopilka.api.deps``, which reads the switch
  in the very query that signs the terminal in); staff still see and export everything.
* **Export** writes all the tenant's loyalty data (``kopilka.loyalty.billing_scope`` says
  which rows) as a zip: one JSON-lines file per table, rows in id order, and
  ``manifest.json`` with each file's row count and SHA-256 and one checksum over them.
  It reads one snapshot, streaming, so its size is bounded by the disk, not the memory.
* **Purge** removes exactly those rows, in one transaction, and writes one audit event
  with the counts. It is refused while the switch is on, and it needs three
  confirmations: the switch turned off, a purge request (a short-lived secret, good
  once, only for the one who asked for it), and the tenant's short name typed back.
  The append-only ledger tables let it through because it says so: on PostgreSQL by
  ``SET LOCAL kopilka.purge_tenant``, on SQLite by a row of ``purge_permits`` that lives
  only inside the purge's transaction (migration 0006). Afterwards the tenant's ledger
  verifies clean and loyalty can start again from nothing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import IO, Any

from sqlalchemy import Connection, Engine, delete, func, select, text, update

from kopilka.core.actor import Actor
from kopilka.core.cache import forget_all
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import Refused
from kopilka.loyalty import billing_scope as scope
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.tenancy.actions import TERMINAL_SIGN_INS, Tenant, get_tenant
from kopilka.tenancy.audit import record_audit
from kopilka.tenancy.schema import purge_permits, purge_requests, tenants

EXPORT_FORMAT = "kopilka.loyalty-export"
EXPORT_VERSION = 1
PURGE_REQUEST_TTL = timedelta(minutes=10)
PURGE_TOKEN_PREFIX = "kpp_"  # noqa: S105 (a visible prefix, not a secret)
_STREAM_ROWS = 1_000

# Called with (done, in all, what is being done): rows for an export, tables for a purge.
Progress = Callable[[int, int, str], None]


def _quiet(done: int, total: int, what: str) -> None:
    """The progress callback of callers that want none."""


# --------------------------------------------------------------------------- the switch


def is_loyalty_enabled(conn: Connection, tenant_id: int) -> bool:
    enabled = conn.execute(
        select(tenants.c.loyalty_enabled).where(tenants.c.id == tenant_id)
    ).scalar_one_or_none()
    assert enabled is not None, f"tenant {tenant_id} does not exist"
    return bool(enabled)


def _lock_tenant(conn: Connection, tenant_id: int) -> tuple[Tenant, bool]:
    """The tenant and its switch, its row locked: switching and purging queue on it."""
    get_tenant(conn, tenant_id)  # a clear not-found before the lock
    enabled = conn.execute(
        select(tenants.c.loyalty_enabled).where(tenants.c.id == tenant_id).with_for_update()
    ).scalar_one()
    return get_tenant(conn, tenant_id), bool(enabled)


def set_loyalty_enabled(conn: Connection, *, tenant_id: int, enabled: bool, actor: Actor) -> bool:
    """Switches the tenant's loyalty module on or off; returns whether anything changed."""
    _, before = _lock_tenant(conn, tenant_id)
    if before == enabled:
        return False
    conn.execute(update(tenants).where(tenants.c.id == tenant_id).values(loyalty_enabled=enabled))
    TERMINAL_SIGN_INS.forget(conn=conn)  # a terminal's sign-in carries the switch
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="loyalty.enable" if enabled else "loyalty.disable",
        object_type="tenant",
        object_id=tenant_id,
    )
    assert is_loyalty_enabled(conn, tenant_id) == enabled
    return True


@dataclass(frozen=True, slots=True)
class LoyaltyStatus:
    enabled: bool
    rows: dict[str, int]  # by table, what an export writes and a purge would remove
    crossing_accounts: tuple[int, ...]  # while any, a purge is refused

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def loyalty_status(conn: Connection, tenant_id: int) -> LoyaltyStatus:
    enabled = is_loyalty_enabled(conn, tenant_id)
    found, parts = scope.snapshot_parts(conn, tenant_id)
    return LoyaltyStatus(enabled, _count(conn, parts), found.crossing)


def _count(conn: Connection, parts: list[scope.Part]) -> dict[str, int]:
    return {
        part.name: int(
            conn.execute(
                select(func.count()).select_from(part.table).where(part.where)
            ).scalar_one()
        )
        for part in parts
    }


# --------------------------------------------------------------------------- export


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection that sees one moment throughout (REPEATABLE READ on
    PostgreSQL; a SQLite read transaction is a snapshot already)."""
    with engine.connect() as conn:
        options: dict[str, Any] = {"kopilka_readonly": True}
        if conn.dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        conn = conn.execution_options(**options)
        with conn.begin():
            yield conn


@dataclass(frozen=True, slots=True)
class ExportedFile:
    name: str
    table: str
    rows: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ExportReport:
    files: tuple[ExportedFile, ...]
    checksum: str

    @property
    def total_rows(self) -> int:
        return sum(f.rows for f in self.files)


def export_loyalty(
    conn: Connection, tenant_id: int, out: IO[bytes], *, progress: Progress = _quiet
) -> ExportReport:
    """Writes the tenant's loyalty data to ``out`` as a zip (see the module's docstring)."""
    tenant = get_tenant(conn, tenant_id)
    found, parts = scope.snapshot_parts(conn, tenant_id)
    total = sum(_count(conn, parts).values())
    done = 0
    files: list[ExportedFile] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for part in parts:
            name = f"{part.name}.jsonl"
            digest = hashlib.sha256()
            rows = 0
            query = select(part.table).where(part.where).order_by(*part.table.primary_key)
            result = conn.execution_options(yield_per=_STREAM_ROWS).execute(query)
            with archive.open(name, "w", force_zip64=True) as member:
                for row in result:
                    line = json.dumps(row._asdict(), default=_plain, ensure_ascii=False)
                    data = (line + "\n").encode()
                    member.write(data)
                    digest.update(data)
                    rows += 1
                    if rows % _STREAM_ROWS == 0:
                        progress(done + rows, total, part.name)
            done += rows
            progress(done, total, part.name)
            files.append(ExportedFile(name, part.name, rows, digest.hexdigest()))
        checksum = _checksum(files)
        manifest = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "tenant": {"id": tenant.id, "slug": tenant.slug, "name": tenant.name},
            "exported_at": utcnow().isoformat(),
            "loyalty_enabled": is_loyalty_enabled(conn, tenant_id),
            "crossing_accounts": list(found.crossing),
            "files": [
                {"name": f.name, "table": f.table, "rows": f.rows, "sha256": f.sha256}
                for f in files
            ],
            "rows": sum(f.rows for f in files),
            "checksum": checksum,
        }
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    assert done == sum(f.rows for f in files)
    return ExportReport(tuple(files), checksum)


def _checksum(files: list[ExportedFile]) -> str:
    """SHA-256 over the files' names and digests, one ``name sha256`` line each."""
    lines = "".join(f"{f.name} {f.sha256}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot export a {type(value).__name__}")


# --------------------------------------------------------------------------- purge


@dataclass(frozen=True, slots=True)
class PurgeRequest:
    token: str  # shown once; the purge must bring it back
    expires_at: datetime
    confirm_with: str  # what to type back: the tenant's short name


@dataclass(frozen=True, slots=True)
class PurgeConfirmation:
    token: str
    typed_slug: str


@dataclass(frozen=True, slots=True)
class PurgeReport:
    removed: dict[str, int]  # rows by table

    @property
    def total_rows(self) -> int:
        return sum(self.removed.values())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _refuse_while_enabled(enabled: bool, tenant: Tenant) -> None:
    if enabled:
        raise Refused(
            E.LOYALTY_STILL_ENABLED,
            f"the loyalty module of {tenant.slug!r} is on; switch it off before purging its data",
        )


def request_purge(conn: Connection, *, tenant_id: int, actor: Actor) -> PurgeRequest:
    """The first step of a purge: a secret good once, for a few minutes, for ``actor``."""
    tenant, enabled = _lock_tenant(conn, tenant_id)
    _refuse_while_enabled(enabled, tenant)
    token = PURGE_TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    expires_at = now + PURGE_REQUEST_TTL
    conn.execute(
        purge_requests.insert(),
        {
            "tenant_id": tenant_id,
            "scope": "loyalty",
            "token_hash": _digest(token),
            "actor_type": actor.type.value,
            "actor_id": actor.id,
            "created_at": now,
            "expires_at": expires_at,
        },
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="loyalty.purge_request",
        object_type="tenant",
        object_id=tenant_id,
        details={"expires_at": expires_at.isoformat()},
    )
    return PurgeRequest(token, expires_at, tenant.slug)


def _redeem(
    conn: Connection, tenant: Tenant, confirmation: PurgeConfirmation, actor: Actor
) -> None:
    """Marks the purge request used, or refuses: unknown, expired, used, someone else's."""
    row = conn.execute(
        select(purge_requests)
        .where(purge_requests.c.token_hash == _digest(confirmation.token.strip()))
        .with_for_update()
    ).first()
    now = utcnow()
    if (
        row is None
        or row.tenant_id != tenant.id
        or row.scope != "loyalty"
        or row.used_at is not None
        or as_utc(row.expires_at) <= now
        or (row.actor_type, row.actor_id) != (actor.type.value, actor.id)
    ):
        raise Refused(
            E.PURGE_REQUEST_INVALID,
            "the purge request is unknown, expired, used already or someone else's; "
            "ask for a new one",
        )
    if confirmation.typed_slug.strip().lower() != tenant.slug:
        raise Refused(
            E.PURGE_NOT_CONFIRMED,
            f"type the tenant's short name ({tenant.slug!r}) to confirm the purge",
        )
    conn.execute(update(purge_requests).where(purge_requests.c.id == row.id).values(used_at=now))


def _refuse_folio_points(conn: Connection, tenant_id: int, unit_ids: tuple[int, ...]) -> None:
    """Hotel folios paid with the points going keep their payment types (the payments
    are the hotel's money history, not loyalty data): while any exists, no purge."""
    from kopilka.hotel.schema import hotel_payments
    from kopilka.payments.schema import payment_types

    if not unit_ids:
        return
    paid = conn.execute(
        select(func.count())
        .select_from(hotel_payments)
        .join(payment_types, payment_types.c.id == hotel_payments.c.payment_type_id)
        .where(
            hotel_payments.c.tenant_id == tenant_id,
            payment_types.c.unit_id.in_(list(unit_ids)),
        )
    ).scalar_one()
    if paid:
        raise Refused(
            E.PURGE_FOLIO_POINTS,
            f"{paid} hotel folio payment(s) were made with these points; they stay in the "
            "hotel's books with their payment types, so nothing was purged",
            payments=int(paid),
        )


def purge_loyalty(
    conn: Connection,
    *,
    tenant_id: int,
    confirmation: PurgeConfirmation,
    actor: Actor,
    progress: Progress = _quiet,
) -> PurgeReport:
    """Removes all the tenant's loyalty data (and nothing else); see the module docstring.

    The caller's transaction is the purge's: on any refusal or failure it rolls back
    whole, and nothing is half-removed.
    """
    tenant, enabled = _lock_tenant(conn, tenant_id)
    _refuse_while_enabled(enabled, tenant)
    _redeem(conn, tenant, confirmation, actor)
    found = scope.find_accounts(conn, tenant_id)
    if found.crossing:
        raise Refused(
            E.PURGE_CROSSES_LEDGER,
            "loyalty transfers also moved accounts that stay "
            f"({', '.join(map(str, found.crossing[:10]))}); removing them would change those "
            "accounts, so nothing was purged",
            accounts=list(found.crossing),
        )
    _refuse_folio_points(conn, tenant_id, found.unit_ids)
    removed: dict[str, int] = {}
    with _purge_permit(conn, tenant_id):
        parts = list(reversed(scope.materialise(conn, tenant_id, found)))
        for number, part in enumerate(parts):
            progress(number, len(parts), part.name)
            removed[part.name] = conn.execute(delete(part.table).where(part.where)).rowcount
        scope.drop_scratch(conn)
        progress(len(parts), len(parts), "done")
    forget_all(conn)  # programs, system accounts and sign-ins of this process
    assert scope.program_unit_ids(conn, tenant_id) == (), "no program is left"
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="loyalty.purge",
        object_type="tenant",
        object_id=tenant_id,
        details={"rows": sum(removed.values()), **{k: v for k, v in removed.items() if v}},
    )
    return PurgeReport(removed)


@contextmanager
def _purge_permit(conn: Connection, tenant_id: int) -> Iterator[None]:
    """Lets the append-only triggers pass this tenant's deletes, in this transaction only.

    On an error the transaction rolls back, taking the permit (or the setting) with it.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT set_config('kopilka.purge_tenant', :tenant, true)"),
            {"tenant": str(tenant_id)},
        )
        yield
        conn.execute(text("SELECT set_config('kopilka.purge_tenant', '', true)"))
        return
    conn.execute(purge_permits.insert(), {"tenant_id": tenant_id, "created_at": utcnow()})
    yield
    conn.execute(delete(purge_permits).where(purge_permits.c.tenant_id == tenant_id))
