"""The charging routine runs by itself inside ``kopilka serve`` (SPEC S-1).

``ChargingScheduler`` is a daemon thread started with the server's other clocks: every
``every_seconds`` (60) it runs ``run_charging`` for each tenant that has subscribers, so
a day's charges are made within a minute of the tenant's midnight, promised payments end
on time, and a server that was down catches up when it starts. Several server processes
may each run one: a subscriber is settled under its row lock and each period's charge has
one idempotency key, so nothing is charged twice. ``kopilka subscribers charge`` does the
same once, from cron or by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from sqlalchemy import Engine, select

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.periodic import Periodic
from kopilka.subscribers.billing import ChargingResult, run_charging
from kopilka.subscribers.schema import subscribers

log = logging.getLogger(__name__)
EVERY_SECONDS = 60.0


def tenants_with_subscribers(engine: Engine) -> list[int]:
    with read_only(engine) as conn:
        query = select(subscribers.c.tenant_id).distinct().order_by(subscribers.c.tenant_id)
        return [int(x) for x in conn.execute(query).scalars()]


def charge_all(
    engine: Engine, tenant_ids: Collection[int] | None = None
) -> dict[int, ChargingResult]:
    """The routine for every tenant with subscribers (of ``tenant_ids``, when given)."""
    actor = Actor.job("subscribers.charge")
    return {
        tenant_id: run_charging(engine, tenant_id=tenant_id, actor=actor)
        for tenant_id in tenants_with_subscribers(engine)
        if tenant_ids is None or tenant_id in tenant_ids
    }


class ChargingScheduler(Periodic):
    """Runs the charging routine every ``every_seconds`` until stopped."""

    name = "kopilka-charging"
    what = "the charging clock"

    def __init__(
        self,
        engine: Engine,
        every_seconds: float = EVERY_SECONDS,
        tenant_ids: Collection[int] | None = None,
    ) -> None:
        super().__init__(every_seconds)
        self.engine = engine
        self.tenant_ids = tenant_ids

    def tick(self) -> None:
        for tenant_id, result in charge_all(self.engine, self.tenant_ids).items():
            if result.periods_charged or result.blocked or result.promised_ended or result.errors:
                log.info(
                    "subscribers charged",
                    extra={
                        "tenant_id": tenant_id,
                        "periods": result.periods_charged,
                        "blocked": result.blocked,
                        "promised_ended": result.promised_ended,
                        "errors": len(result.errors),
                    },
                )
            for error in result.errors:
                log.warning("charging: %s", error, extra={"tenant_id": tenant_id})
