"""The ``ledger.verify`` job: ``kopilka ledger verify`` for one tenant, with progress.

Its progress message is the name of the check just finished (the UI words it); its result
keeps the problems found, at most ``MAX_PROBLEMS`` of them, and how many there were.
"""

from __future__ import annotations

from typing import Any

from kopilka.core.db import read_only
from kopilka.jobs.runner import JobContext, register
from kopilka.ledger.verify import CHECKS, verify

KIND = "ledger.verify"
MAX_PROBLEMS = 100


@register(KIND)
def check_ledger(ctx: JobContext) -> dict[str, Any]:
    ctx.progress.update(0, len(CHECKS), "")

    def on_progress(done: int, total: int) -> None:
        ctx.progress.update(done, total, CHECKS[done - 1].name)

    with read_only(ctx.engine) as conn:
        problems = verify(conn, tenant_id=ctx.tenant_id, on_progress=on_progress)
    return {
        "checks": len(CHECKS),
        "count": len(problems),
        "problems": [
            {"check": p.check, "where": p.where, "detail": p.detail}
            for p in problems[:MAX_PROBLEMS]
        ],
    }
