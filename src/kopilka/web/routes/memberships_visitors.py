"""The studio's visitors at the desk (SPEC M-6, M-7; seed 004 "Профиль посетителя"):
found by name or phone as one types (htmx asks for the table again; without scripts the
search is a plain GET form), and a visitor's profile with the memberships attached to
them: status, validity, groups, classes booked, what was paid; a refunded one is marked
so, and owners and administrators reach its refund from here (M-7: "В случае возврата
уже привязанного к клиенту абонемента ... Профиль посетителя - Абонементы").
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.memberships import attaching, catalogue
from kopilka.web.deps import render
from kopilka.web.routes.front_desk import is_fragment
from kopilka.web.routes.memberships import (
    HOME,
    DeskPage,
    currency_ns,
    show,
)

router = APIRouter(include_in_schema=False)

VISITORS = HOME + "/visitors"
FOUND_AT_MOST = 50
MEMBERSHIPS_SHOWN = 200


@router.get(VISITORS)
def visitors_list(page: DeskPage, q: str = "") -> Response:
    text = q[:100]
    with read_only(page.engine) as conn:
        found = catalogue.find_visitors(conn, page.tenant.id, text, limit=FOUND_AT_MOST)
    context: dict[str, Any] = {"rows": found, "q": q}
    if is_fragment(page.request, "visitors"):
        return render(page, "memberships/_visitor_rows.html", **context)
    return show(page, "visitors.html", tab="visitors", **context)


@router.get(VISITORS + "/{visitor_id:int}")
def visitor_profile(page: DeskPage, visitor_id: int) -> Response:
    t = page.tenant.id
    with read_only(page.engine) as conn:
        try:
            visitor = catalogue.get_visitor(conn, t, visitor_id)
        except KopilkaError as error:
            raise HTTPException(404) from error
        held = attaching.list_memberships(conn, t, visitor_id=visitor.id, limit=MEMBERSHIPS_SHOWN)
        group_names = {g.id: g.name for g in catalogue.list_groups(conn, t)}
        booked_ids = sorted({c for m in held for c in m.booked_class_ids})
        classes = (
            {c.id: c for c in catalogue.list_classes(conn, t, class_ids=booked_ids)}
            if booked_ids
            else {}
        )
    return show(
        page,
        "visitor.html",
        tab="visitors",
        visitor=visitor,
        held=held,
        group_names=group_names,
        classes=classes,
        currency=currency_ns(page.tenant.currency),
    )
