"""Receipts go out by themselves: a job with progress, and a clock inside the server.

* The ``fiscal.send`` job (``kopilka.jobs.runner``) runs ``process_due`` for one tenant,
  its progress the receipts handled so far, its result the counts.
* ``ReceiptScheduler`` is a daemon thread ``kopilka serve`` starts with its other
  background work (the nightly routine's clock): every ``every_seconds`` (15) it runs
  ``process_due`` for every tenant. Several server processes may each run one: a receipt
  is taken by one of them at a time (``receipts._claim``), and the register prints a
  receipt sent twice once.
* ``kopilka receipts send`` (``kopilka.cli.receipts``) does the same once, from cron or
  by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

from kopilka.core.periodic import Periodic
from kopilka.fiscal.receipts import process_due
from kopilka.jobs.runner import JobContext, register

log = logging.getLogger(__name__)

KIND = "fiscal.send"
EVERY_SECONDS = 15.0


@register(KIND)
def send_due_receipts(ctx: JobContext) -> dict[str, Any]:
    """Send the tenant's due receipts and ask about the waiting ones."""

    def report(done: int, total: int) -> None:
        ctx.progress.update(done, total)

    counts = process_due(ctx.engine, tenant_id=ctx.tenant_id, progress=report)
    return dict(counts.as_dict())


class ReceiptScheduler(Periodic):
    """Runs ``process_due`` every ``every_seconds`` until stopped."""

    name = "kopilka-receipts"
    what = "the receipts' clock"

    def __init__(self, engine: Engine, every_seconds: float = EVERY_SECONDS) -> None:
        super().__init__(every_seconds)
        self.engine = engine

    def tick(self) -> None:
        counts = process_due(self.engine)
        if counts.due:
            log.info("receipts processed", extra=counts.as_dict())
