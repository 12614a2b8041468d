"""The ledger's screens (SPEC L-6): accounts, one account's figures and history, turnovers.

Everything here only reads. Dates people type are in the tenant's time zone; a period is
whole days, from the start of its first day to the end of its last (the ledger's own
periods are half-open, ``[start, end)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response
from sqlalchemy import Connection, func, or_, select
from wtforms import StringField

from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import AccountView, UnitView, find_accounts, get_account, list_units
from kopilka.ledger.balances import Turnover, balance_at, history, turnovers
from kopilka.ledger.schema import accounts, entries, units
from kopilka.web import i18n
from kopilka.web.chart import Step, balance_chart
from kopilka.web.deps import Page, render, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.paging import paging_of
from kopilka.web.templating import money

router = APIRouter(include_in_schema=False)

_KIND_NAMES = {
    "wallet": lazy("Bonus wallet"),
    "system": lazy("System account"),
    "subscriber": lazy("Subscriber account"),
    "gift_certificate": lazy("Gift certificate"),
    "folio": lazy("Guest folio"),
    "deposit": lazy("Deposit"),
}


def kind_label(kind: str) -> str:
    """The name people read for a kind of account (as in ``ui.account_kind``)."""
    name = _KIND_NAMES.get(kind)
    return str(name) if name is not None else kind


ReportsPage = Annotated[Page, Depends(require("reports.view"))]

PAGE_SIZES = (10, 20, 50, 100, 200)
ACCOUNTS_PER_PAGE = 50
HISTORY_PER_PAGE = 50
CHART_POINTS = 400  # the chart draws at most this many entries (the latest of the period)
DEFAULT_PERIOD_DAYS = 30
GROUP_MAX_ACCOUNTS = 2000  # turnovers of a larger group are refused, not computed slowly

POLICY_NAMES = {
    "non_negative": lazy("Never below zero"),
    "credit_limit": lazy("Credit limit"),
    "unlimited": lazy("Unlimited"),
}
SCOPES = (("customer", lazy("Customers' accounts")), ("system", lazy("System accounts")))


# --------------------------------------------------------------------------- input


class MomentForm(WebForm):
    at = StringField(lazy("Date and time"), render_kw={"type": "datetime-local", "step": "1"})


class PeriodForm(WebForm):
    start = StringField(lazy("From"), name="from", render_kw={"type": "date"})
    end = StringField(lazy("To"), name="to", render_kw={"type": "date"})


def _parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()[:10]) if len(text.strip()) == 10 else None
    except ValueError:
        return None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=i18n.current_zone())


def _today() -> date:
    return datetime.now(i18n.current_zone()).date()


def read_moment(form: MomentForm) -> datetime | None:
    """The moment asked for: a date means the end of that day; a time, that very second."""
    text = (form.at.data or "").strip()
    if not text:
        return None
    day = _parse_day(text)
    if day is not None:
        return _midnight(day + timedelta(days=1)) - timedelta(microseconds=1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        form.add_error("at", _("Enter a date, or a date and time, such as 2026-03-31 18:00."))
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=i18n.current_zone())
    if moment.second == 0 and moment.microsecond == 0 and len(text) <= 16:
        # "18:00" means the whole minute, up to 18:00:59.999999.
        moment += timedelta(minutes=1, microseconds=-1)
    return moment


@dataclass(frozen=True, slots=True)
class Period:
    first_day: date
    last_day: date

    @property
    def start(self) -> datetime:
        return _midnight(self.first_day)

    @property
    def end(self) -> datetime:
        return _midnight(self.last_day + timedelta(days=1))


def read_period(form: PeriodForm, default: Period) -> Period | None:
    """The period of whole days asked for (the default where a day is left out)."""
    days: dict[str, date] = {}
    for name, fallback in (("start", default.first_day), ("end", default.last_day)):
        field = getattr(form, name)
        text = (field.data or "").strip()
        if not text:
            field.data = fallback.isoformat()
            days[name] = fallback
            continue
        day = _parse_day(text)
        if day is None:
            form.add_error(name, _("Enter a date such as 2026-03-31."))
        else:
            days[name] = day
    if form.has_errors:
        return None
    if days["end"] < days["start"]:
        form.add_error("end", _("The period cannot end before it starts."))
        return None
    return Period(days["start"], days["end"])


def _url_params(page: Page, *names: str) -> list[tuple[str, str]]:
    """The query parameters of the page to carry into another form on it."""
    return [(k, v) for k, v in page.request.query_params.multi_items() if k in names and v]


def _page_size(raw: str | None, default: int) -> int:
    return (
        int(raw) if raw and raw.isascii() and raw.isdigit() and int(raw) in PAGE_SIZES else default
    )


# --------------------------------------------------------------------------- accounts


@router.get("/ledger/accounts")
def account_list(page: ReportsPage) -> Response:
    params = page.request.query_params
    q = (params.get("q") or "").strip()[:100]
    unit_code = (params.get("unit") or "").strip().upper()[:16]
    kind = (params.get("kind") or "").strip()[:32]
    scope = params.get("scope") or ""
    scope = scope if scope in ("system", "customer") else ""
    paging = paging_of(page.request, per_page=_page_size(params.get("size"), ACCOUNTS_PER_PAGE))
    tenant_id = page.tenant.id

    where: list[Any] = []
    if q:
        words = [
            accounts.c.name.icontains(q, autoescape=True),
            accounts.c.code.icontains(q, autoescape=True),
            accounts.c.owner_id.icontains(q, autoescape=True),
        ]
        number = q.removeprefix("#")
        if number.isascii() and number.isdigit() and len(number) < 18:
            words.append(accounts.c.id == int(number))
        where.append(or_(*words))
    if unit_code:
        where.append(units.c.code == unit_code)
    if kind:
        where.append(accounts.c.kind == kind)
    if scope == "system":
        where.append(accounts.c.owner_type.is_(None))
    elif scope == "customer":
        where.append(accounts.c.owner_type.is_not(None))

    with read_only(page.engine) as conn:
        joined = accounts.join(units, units.c.id == accounts.c.unit_id)
        total = conn.execute(
            select(func.count())
            .select_from(joined)
            .where(accounts.c.tenant_id == tenant_id, *where)
        ).scalar_one()
        rows = find_accounts(conn, tenant_id, where=where, limit=paging.limit, offset=paging.offset)
        unit_list = list_units(conn, tenant_id)
        kinds = list(
            conn.execute(
                select(accounts.c.kind)
                .distinct()
                .where(accounts.c.tenant_id == tenant_id)
                .order_by(accounts.c.kind)
            ).scalars()
        )
    filters = [
        ("unit", _("Unit"), [(u.code, u.name or u.code) for u in unit_list], unit_code or None),
        ("kind", _("Kind"), [(k, kind_label(k)) for k in kinds], kind or None),
        ("scope", _("Whose"), [(v, str(t)) for v, t in SCOPES], scope or None),
    ]
    return render(
        page,
        "ledger/accounts.html",
        rows=rows,
        q=q,
        filters=filters,
        paging=paging.with_total(total),
        filtered=bool(q or unit_code or kind or scope),
    )


# --------------------------------------------------------------------------- one account


def _account_or_404(conn: Connection, tenant_id: int, account_id: int) -> AccountView:
    try:
        return get_account(conn, tenant_id, account_id)
    except NotFound:
        raise HTTPException(status_code=404) from None


def _first_entry_at(conn: Connection, account_id: int) -> datetime | None:
    first = conn.execute(
        select(func.min(entries.c.posted_at)).where(entries.c.account_id == account_id)
    ).scalar_one()
    return as_utc(first) if first is not None else None


def default_period(first_entry_at: datetime | None) -> Period:
    """The last 30 days, or since the first entry when the account is younger."""
    today = _today()
    start = today - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
    if first_entry_at is not None:
        first_day = first_entry_at.astimezone(i18n.current_zone()).date()
        start = min(max(start, first_day), today)
    return Period(start, today)


def chart_steps(
    conn: Connection, account_id: int, start: datetime, end: datetime, closing_minor: int
) -> tuple[list[Step], datetime, int]:
    """The latest ``CHART_POINTS`` entries of the period as steps, where the line starts
    and the balance it starts from.

    Ordinary accounts keep the balance after each entry; for hot ones (which do not) it is
    counted back from the closing balance.
    """
    rows = conn.execute(
        select(entries.c.posted_at, entries.c.amount_minor, entries.c.balance_after_minor)
        .where(
            entries.c.account_id == account_id,
            entries.c.posted_at >= as_utc(start),
            entries.c.posted_at < as_utc(end),
        )
        .order_by(entries.c.posted_at.desc(), entries.c.id.desc())
        .limit(CHART_POINTS + 1)
    ).all()
    truncated = len(rows) > CHART_POINTS
    rows = rows[:CHART_POINTS]
    steps: list[Step] = []
    balance = closing_minor
    for row in rows:  # newest first: walk back from the closing balance
        after = row.balance_after_minor if row.balance_after_minor is not None else balance
        steps.append(Step(as_utc(row.posted_at), after))
        balance = after - row.amount_minor
    steps.reverse()
    line_start = steps[0].at if truncated and steps else start
    return steps, line_start, balance


def _amount_label(unit: UnitView) -> Any:
    """Money with its sign; points as bare numbers (their unit is the chart's caption)."""
    if unit.kind == UnitKind.CURRENCY:
        return lambda amount: money(amount, unit)
    return lambda amount: i18n.format_number(amount, unit.exponent)


def _date_label(span: timedelta) -> Any:
    if span <= timedelta(days=2):
        return lambda moment: i18n.format_datetime(moment, "d MMM HH:mm")
    return lambda moment: i18n.format_date(moment, "d MMM")


@router.get("/ledger/accounts/{account_id}")
def account_page(account_id: int, page: ReportsPage) -> Response:
    params = page.request.query_params
    tenant_id = page.tenant.id
    history_paging = paging_of(page.request, per_page=HISTORY_PER_PAGE)
    moment_form = MomentForm(params)
    period_form = PeriodForm(params)
    at_moment = read_moment(moment_form)
    shown_at: dict[str, Any] | None = None
    turnover: Turnover | None = None
    chart = None
    with read_only(page.engine) as conn:
        account = _account_or_404(conn, tenant_id, account_id)
        period = read_period(period_form, default_period(_first_entry_at(conn, account_id)))
        if at_moment is not None:
            shown_at = {
                "moment": at_moment,
                "balance": balance_at(conn, tenant_id, account_id, at_moment),
            }
        if period is not None:
            turnover = turnovers(conn, tenant_id, [account_id], period.start, period.end)
            steps, line_start, opening = chart_steps(
                conn, account_id, period.start, period.end, turnover.closing_minor
            )
            chart_end = min(period.end, max(utcnow(), line_start + timedelta(seconds=1)))
            chart = balance_chart(
                steps,
                start=line_start,
                end=chart_end,
                opening_minor=opening,
                amount_label=_amount_label(account.unit),
                caption="" if account.unit.kind == UnitKind.CURRENCY else account.unit.name,
                date_label=_date_label(chart_end - line_start),
                title=_(
                    "Balance of account %(id)s from %(start)s to %(end)s: "
                    "%(opening)s at the start, %(closing)s at the end, %(n)s changes.",
                    id=account.id,
                    start=i18n.format_date(period.first_day),
                    end=i18n.format_date(period.last_day),
                    opening=money(opening, account.unit),
                    closing=money(turnover.closing_minor, account.unit),
                    n=len(steps),
                ),
            )
        total = conn.execute(
            select(func.count()).select_from(entries).where(entries.c.account_id == account_id)
        ).scalar_one()
        lines = history(
            conn,
            tenant_id,
            account_id,
            newest_first=True,
            offset=history_paging.offset,
            limit=history_paging.limit,
        )
    status = 422 if moment_form.has_errors or period_form.has_errors else 200
    return render(
        page,
        "ledger/account.html",
        status_code=status,
        account=account,
        policy_name=POLICY_NAMES.get(account.policy.value, account.policy.value),
        moment_form=moment_form,
        period_form=period_form,
        shown_at=shown_at,
        period=period,
        turnover=turnover,
        chart=chart,
        lines=lines,
        paging=history_paging.with_total(total),
        keep_for_moment=_url_params(page, "from", "to"),
        keep_for_period=_url_params(page, "at"),
    )


# --------------------------------------------------------------------------- turnovers


@dataclass(frozen=True, slots=True)
class GroupTurnover:
    unit: UnitView
    accounts: int
    turnover: Turnover | None  # None when the group has no accounts in this unit
    too_many: bool = False


@router.get("/ledger/turnovers")
def turnover_report(page: ReportsPage) -> Response:
    params = page.request.query_params
    tenant_id = page.tenant.id
    unit_code = (params.get("unit") or "").strip().upper()[:16]
    kind = (params.get("kind") or "").strip()[:32]
    scope = params.get("scope") or ""
    scope = scope if scope in ("system", "customer") else ""
    form = PeriodForm(params)
    today = _today()
    period = read_period(form, Period(today.replace(day=1), today))
    groups: list[GroupTurnover] = []
    with read_only(page.engine) as conn:
        unit_list = list_units(conn, tenant_id)
        kinds = list(
            conn.execute(
                select(accounts.c.kind)
                .distinct()
                .where(accounts.c.tenant_id == tenant_id)
                .order_by(accounts.c.kind)
            ).scalars()
        )
        if period is not None:
            for unit in unit_list:
                if unit_code and unit.code != unit_code:
                    continue
                where: list[Any] = [
                    accounts.c.tenant_id == tenant_id,
                    accounts.c.unit_id == unit.id,
                ]
                if kind:
                    where.append(accounts.c.kind == kind)
                if scope == "system":
                    where.append(accounts.c.owner_type.is_(None))
                elif scope == "customer":
                    where.append(accounts.c.owner_type.is_not(None))
                ids = list(
                    conn.execute(
                        select(accounts.c.id)
                        .where(*where)
                        .order_by(accounts.c.id)
                        .limit(GROUP_MAX_ACCOUNTS + 1)
                    ).scalars()
                )
                if not ids:
                    continue
                if len(ids) > GROUP_MAX_ACCOUNTS:
                    groups.append(GroupTurnover(unit, len(ids), None, too_many=True))
                    continue
                try:
                    figures = turnovers(conn, tenant_id, ids, period.start, period.end)
                except KopilkaError:  # pragma: no cover - one unit and a valid period
                    figures = None
                groups.append(GroupTurnover(unit, len(ids), figures))
    filters = [
        ("unit", _("Unit"), [(u.code, u.name or u.code) for u in unit_list], unit_code or None),
        ("kind", _("Kind"), [(k, kind_label(k)) for k in kinds], kind or None),
        ("scope", _("Whose"), [(v, str(t)) for v, t in SCOPES], scope or None),
    ]
    return render(
        page,
        "ledger/turnovers.html",
        status_code=422 if form.has_errors else 200,
        form=form,
        filters=filters,
        period=period,
        groups=groups,
        group_max=GROUP_MAX_ACCOUNTS,
    )
