"""Card jobs started from the screens: issuing a range of cards (SPEC C-2) with progress.

The parameters are checked on the form before the job starts; the job itself runs the same
domain function as the API, all or nothing, and its progress is the cards written so far.
"""

from __future__ import annotations

from typing import Any

from kopilka.core.actor import Actor, ActorType
from kopilka.jobs.runner import JobContext, register
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.cards import issue_range

ISSUE_RANGE = "cards.issue_range"


@register(ISSUE_RANGE)
def issue_card_range(ctx: JobContext) -> dict[str, Any]:
    params = ctx.params
    actor = Actor(
        ActorType.USER,
        str(params.get("user_id", "")),
        str(params.get("user_login", "")),
        params.get("source_ip") or None,
    )
    total = int(params["last"]) - int(params["first"]) + 1
    ctx.progress.update(0, total)

    # SQLite has one writer: progress written from another connection would wait for this
    # job's own transaction. There the bar jumps from start to end; PostgreSQL shows it move.
    live = ctx.engine.dialect.name != "sqlite"

    def work(conn: Any) -> list[int]:
        return issue_range(
            conn,
            tenant_id=ctx.tenant_id,
            program_id=int(params["program_id"]),
            prefix=str(params.get("prefix") or ""),
            first=int(params["first"]),
            last=int(params["last"]),
            check_digit=bool(params.get("check_digit")),
            width=params.get("width"),
            actor=actor,
            progress=(lambda done, all_: ctx.progress.update(done, all_)) if live else None,
        )

    ids = run_transaction(ctx.engine, work)
    return {"issued": len(ids)}
