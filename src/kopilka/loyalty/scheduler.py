"""The nightly routine's own clock inside ``kopilka serve`` (SPEC C-8).

Once a minute it asks, for each tenant, whether it is past ``nightly_hour`` in the
tenant's time zone and the routine has not run there since that local midnight (the
audit trail's last ``nightly.run`` says when it last did), and runs it if so. Several
server processes may each run a scheduler: on PostgreSQL an advisory lock per tenant lets
one of them run at a time, and the routine is idempotent besides.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select, text

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import read_only
from kopilka.loyalty.nightly import run_nightly
from kopilka.tenancy.actions import Tenant, list_tenants
from kopilka.tenancy.schema import audit_events, tenants

log = logging.getLogger(__name__)
ADVISORY_BASE = 0x4B4F5049  # "KOPI": keeps our advisory keys apart from others'


def due_tenants(
    engine: Engine,
    hour: int,
    now: datetime | None = None,
    tenant_ids: Collection[int] | None = None,
) -> list[Tenant]:
    """Tenants (of ``tenant_ids``, or all) for which the routine should run now.

    A tenant whose loyalty module is switched off (SPEC P-9) is never due: as in seed 002,
    its scheduled routine stops with it (``kopilka nightly`` can still run it on demand).
    """
    now = as_utc(now) if now else utcnow()
    due: list[Tenant] = []
    with read_only(engine) as conn:
        switched_off = set(
            conn.execute(select(tenants.c.id).where(tenants.c.loyalty_enabled.is_(False))).scalars()
        )
        for tenant in list_tenants(conn):
            if tenant_ids is not None and tenant.id not in tenant_ids:
                continue
            if tenant.id in switched_off:
                continue
            zone = ZoneInfo(tenant.timezone)
            local = now.astimezone(zone)
            if local.time() < time(hour):
                continue
            since = datetime.combine(local.date(), time(0), tzinfo=zone)
            last = conn.execute(
                select(func.max(audit_events.c.at)).where(
                    audit_events.c.tenant_id == tenant.id,
                    audit_events.c.action == "nightly.run",
                )
            ).scalar()
            if last is None or as_utc(last) < since:
                due.append(tenant)
    return due


def tick(
    engine: Engine,
    hour: int,
    now: datetime | None = None,
    tenant_ids: Collection[int] | None = None,
) -> list[int]:
    """Run the routine for every tenant that is due; returns their ids."""
    ran: list[int] = []
    for tenant in due_tenants(engine, hour, now, tenant_ids):
        if _run_locked(engine, tenant, now):
            ran.append(tenant.id)
    return ran


def _run_locked(engine: Engine, tenant: Tenant, now: datetime | None) -> bool:
    actor = Actor.job("nightly")
    if engine.dialect.name != "postgresql":
        run_nightly(engine, tenant_id=tenant.id, actor=actor, now=now)
        return True
    with engine.connect() as lock_conn:
        key = ADVISORY_BASE * 1_000_003 + tenant.id
        got = lock_conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        if not got:
            return False
        try:
            # Another process may have finished it while this one waited for the lock.
            if not due_tenants(engine, 0, now, [tenant.id]):
                return False
            run_nightly(engine, tenant_id=tenant.id, actor=actor, now=now)
            return True
        finally:
            lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            lock_conn.commit()


class NightlyScheduler:
    """A daemon thread that calls ``tick`` once a minute until stopped."""

    def __init__(self, engine: Engine, hour: int, every_seconds: float = 60) -> None:
        self.engine = engine
        self.hour = hour
        self.every = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kopilka-nightly", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        # The first look comes a minute after start: a server starting up has other work.
        while not self._stop.wait(self.every):
            try:
                ran = tick(self.engine, self.hour)
                if ran:
                    log.info("nightly routine ran", extra={"tenants": ran})
            except Exception:
                log.exception("the nightly scheduler's tick failed; it tries again")
