"""The overview every user lands on after signing in."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import func, select

from kopilka.core.db import read_only
from kopilka.ledger.schema import accounts, transfers
from kopilka.tenancy.schema import terminals, users
from kopilka.web import i18n
from kopilka.web.deps import PageDep, render

router = APIRouter(include_in_schema=False)


@router.get("/")
def overview(page: PageDep) -> Response:
    stats: dict[str, Any] | None = None
    if page.can("reports.view"):
        tenant_id = page.tenant.id
        midnight = datetime.combine(
            datetime.now(i18n.current_zone()).date(), time(0), tzinfo=i18n.current_zone()
        )
        with read_only(page.engine) as conn:

            def count(table: Any, *where: Any) -> int:
                return int(
                    conn.execute(
                        select(func.count())
                        .select_from(table)
                        .where(table.c.tenant_id == tenant_id, *where)
                    ).scalar_one()
                )

            stats = {
                "accounts": count(accounts),
                "transfers_today": count(transfers, transfers.c.posted_at >= midnight),
                "users": count(users, users.c.is_active.is_(True)),
                "terminals": count(terminals, terminals.c.revoked_at.is_(None)),
            }
    return render(page, "home.html", stats=stats)
