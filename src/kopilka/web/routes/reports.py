"""The loyalty reports on screen (SPEC C-10, C-11): balances and turnovers of cards, and
reconciliation with the POS side. Owners and administrators (``reports.view``) only.

Everything here only reads. The figures come from ``kopilka.loyalty.reports`` and
``kopilka.loyalty.reconciliation``, the same functions the API and the CLI call; this
module reads the forms, shows the figures and streams the downloads.

Balances and turnovers are paged by card id (``?after=``), not by offset, so a page deep
in a large tenant costs what the first one does. The totals row adds up the page shown;
the CSV and XLSX downloads hold every card of the period with the totals of all of them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import date, datetime
from types import SimpleNamespace
from typing import Annotated, Any
from urllib.parse import quote_plus, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from sqlalchemy import Connection
from starlette.background import BackgroundTask
from starlette.datastructures import FormData, UploadFile
from wtforms import BooleanField, FileField, SelectChoice, SelectField

from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput, KopilkaError
from kopilka.loyalty import reconciliation as reconciliations
from kopilka.loyalty import reports
from kopilka.loyalty.programs import LoyaltyErrorCode, list_programs
from kopilka.tenancy.actions import TenancyErrorCode
from kopilka.web import i18n
from kopilka.web.deps import Page, render, require
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.ledger import MomentForm, Period, PeriodForm, read_moment, read_period


async def _close_upload(request: Request) -> AsyncIterator[None]:
    """Closes (and so removes) an uploaded file's spooled copy after the request, also
    when the request is refused (403) after the CSRF check has parsed the upload."""
    try:
        yield
    finally:
        await request.close()


router = APIRouter(include_in_schema=False, dependencies=[Depends(_close_upload)])

E = LoyaltyErrorCode
ReportsPage = Annotated[Page, Depends(require("reports.view"))]

ROWS_PER_PAGE = 100
SHOWN_LINES = 500  # reconciliation lines on screen; the CSV has them all
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# The figures of an upload ride in the download form of the result page, while they fit
# in one form field (Starlette refuses a field over 1 MiB).
MAX_CARRIED_BYTES = 900_000
CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMATS = ("csv", "xlsx")

STATUS_NAMES = {
    "active": lazy("Active"),
    "blocked": lazy("Blocked"),
    "expired": lazy("Expired"),
}


async def _form_data(request: Request) -> FormData:
    return await request.form()


Posted = Annotated[FormData, Depends(_form_data)]


def _show(page: Page, template: str, tab: str, *, status_code: int = 200, **context: Any) -> Any:
    return render(
        page,
        f"reports/{template}",
        status_code=status_code,
        active_section="reports",
        tab=tab,
        status_names=STATUS_NAMES,
        currency=_currency,
        **context,
    )


def _currency(code: str, exponent: int) -> SimpleNamespace:
    """What ``money()`` in a template needs to show an amount of a currency."""
    return SimpleNamespace(code=code, exponent=exponent, kind="currency", name="")


def _today() -> date:
    return datetime.now(i18n.current_zone()).date()


def _program_choices(conn: Connection, page: Page) -> list[SelectChoice]:
    return [
        SelectChoice("", _("All programs")),
        *(SelectChoice(str(p.id), p.name) for p in list_programs(conn, page.tenant.id)),
    ]


def _chosen_id(field: SelectField) -> int | None:
    value = str(field.data or "")
    return int(value) if value.isascii() and value.isdigit() else None


# --------------------------------------------------------------------------- balances


class CardsReportForm(PeriodForm):
    program = SelectField(lazy("Program"), default="")
    branch = SelectField(lazy("Branch"), default="")


def other_minor(figures: reports.Figures) -> int:
    """The "other" column: what is neither accrued, spent nor expired, signed. Points a
    refund gave back, accruals it took back, manual write-offs, corrections and (with a
    branch) the net of everything outside the branch."""
    other = (
        figures.returned_minor
        + figures.other_credit_minor
        + figures.outside_minor
        - figures.reversed_minor
        - figures.written_off_minor
        - figures.other_debit_minor
    )
    assert figures.balanced(), "a row of the report adds up"
    assert (
        figures.opening_minor
        + figures.accrued_minor
        - figures.spent_minor
        - figures.expired_minor
        + other
        == figures.closing_minor
    ), "the columns on screen add up to the closing balance"
    return other


def _report_window(page: Page, form: CardsReportForm) -> tuple[Period, datetime, datetime] | None:
    """The period asked for (this month by default) as UTC ``[start, end)``; a bad one
    lands on its field."""
    today = _today()
    period = read_period(form, Period(today.replace(day=1), today))
    if period is None:
        return None
    try:
        start, end = reports.day_period(period.first_day, period.last_day, page.tenant.timezone)
    except InvalidInput:
        limit = i18n.format_number(reports.MAX_PERIOD_DAYS, 0)
        form.add_error("end", _("A period is at most %(n)s days.", n=limit))
        return None
    return period, start, end


def _report_params(form: CardsReportForm, period: Period) -> list[tuple[str, str]]:
    """The query of this report, as links to its other pages and downloads carry it."""
    params = [("from", period.first_day.isoformat()), ("to", period.last_day.isoformat())]
    for name in ("program", "branch"):
        value = str(getattr(form, name).data or "")
        if value:
            params.append((name, value))
    return params


@router.get("/reports/cards")
def cards_report(page: ReportsPage) -> Response:
    params = page.request.query_params
    form = CardsReportForm(params)
    with read_only(page.engine) as conn:
        form.program.choices = _program_choices(conn, page)
    form.branch.choices = [
        SelectChoice("", _("All branches")),
        *(SelectChoice(str(b.id), b.name) for b in page.branches),
    ]
    form.validate()
    window = _report_window(page, form)
    if window is None or form.has_errors:
        return _show(page, "cards.html", "cards_report", status_code=422, form=form, report=None)
    period, start, end = window
    options: dict[str, Any] = {
        "start": start,
        "end": end,
        "program_id": _chosen_id(form.program),
        "branch_id": _chosen_id(form.branch),
    }
    wanted = params.get("format", "")
    if wanted in FORMATS:
        return _download(page, period, options, wanted)
    after_text = params.get("after", "")
    after = (
        int(after_text)
        if after_text.isascii() and after_text.isdigit() and len(after_text) < 18
        else None
    )
    try:
        with read_only(page.engine) as conn:
            report = reports.balances_and_turnovers(
                conn, page.tenant.id, **options, after_card_id=after, limit=ROWS_PER_PAGE
            )
    except KopilkaError as error:
        # The choices were checked above; only a program or branch removed meanwhile.
        form.refuse(
            error,
            {
                E.PROGRAM_NOT_FOUND: ("program", _("Choose a program from the list.")),
                TenancyErrorCode.BRANCH_NOT_FOUND: ("branch", _("Choose a branch from the list.")),
            },
        )
        return _show(page, "cards.html", "cards_report", status_code=422, form=form, report=None)
    query = _report_params(form, period)
    more = report.next_after_card_id
    return _show(
        page,
        "cards.html",
        "cards_report",
        form=form,
        report=report,
        period=period,
        other_minor=other_minor,
        paged=after is not None or more is not None,
        first_url=f"/reports/cards?{urlencode(query)}" if after is not None else None,
        next_url=None if more is None else f"/reports/cards?{urlencode([*query, ('after', more)])}",
        csv_url=f"/reports/cards?{urlencode([*query, ('format', 'csv')])}",
        xlsx_url=f"/reports/cards?{urlencode([*query, ('format', 'xlsx')])}",
    )


def _download(page: Page, period: Period, options: dict[str, Any], wanted: str) -> Response:
    """The whole report, streamed: CSV as it is read, XLSX from a temporary file."""
    name = f"balances-{period.first_day.isoformat()}-{period.last_day.isoformat()}"
    locale = page.locale
    if wanted == "csv":
        return StreamingResponse(
            reports.turnovers_csv(
                page.engine,
                page.tenant.id,
                locale=locale,
                decimal_comma=locale == "ru",
                **options,
            ),
            media_type=CSV_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    title = _("Balances and turnovers") + (
        f": {page.tenant.name}, {period.first_day:%d.%m.%Y}–{period.last_day:%d.%m.%Y}"
    )
    path = reports.turnovers_xlsx_file(
        page.engine, page.tenant.id, locale=locale, title=title, **options
    )
    return FileResponse(
        path,
        media_type=XLSX_TYPE,
        filename=f"{name}.xlsx",
        background=BackgroundTask(os.unlink, path),
    )


# --------------------------------------------------------------------------- reconciliation


class ReconcileForm(MomentForm):
    file = FileField(lazy("The POS's file (CSV)"))
    program = SelectField(lazy("Program (for all cards)"), default="")
    only_differences = BooleanField(lazy("Only the cards that differ"))


def _reconcile_form(page: Page, formdata: Any = None) -> ReconcileForm:
    form = ReconcileForm(formdata)
    with read_only(page.engine) as conn:
        form.program.choices = _program_choices(conn, page)
    return form


@router.get("/reports/reconciliation")
def reconciliation_form(page: ReportsPage) -> Response:
    return _show(
        page, "reconciliation.html", "reconciliation", form=_reconcile_form(page), result=None
    )


def _uploaded_text(form: ReconcileForm, posted: FormData) -> str | None:
    """The POS's figures: the file chosen, or (from the result page's download form) the
    figures the first upload carried. None, with the reason on the file field, if none."""
    carried = posted.get("reported")
    if isinstance(carried, str) and carried.strip():
        return carried
    upload = posted.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        form.add_error("file", _("Choose the file the POS exported."))
        return None
    raw = upload.file.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        form.add_error("file", _("The file is larger than 20 MB."))
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1251")  # what Excel in Russia saves as "CSV"


def file_refusal(error: KopilkaError) -> str:
    """A refusal of the POS's figures in words people read, by what it is about."""
    line = error.params.get("line")
    reason = error.params.get("reason")
    if reason == "repeated":
        numbers = ", ".join(error.params.get("card_numbers", []))
        return _("These cards are in the file more than once: %(numbers)s.", numbers=numbers)
    if reason == "empty":
        return _("The file is empty.")
    if reason == "too_many":
        limit = i18n.format_number(reconciliations.MAX_RECONCILE, 0)
        return _("At most %(n)s cards in one file.", n=limit)
    if reason == "bad_amount":
        return _(
            "Line %(line)s: the amount is not a number in the card's unit (check the decimals).",
            line=line,
        )
    if reason == "bad_shape":
        return _(
            "Line %(line)s: expected a card number, the points and (optionally) the "
            "accumulation, separated by semicolons.",
            line=line,
        )
    if reason != "bad_number":
        return error.detail
    return _("Line %(line)s: a card number is 4 to 32 digits.", line=line)


def _carry(reported: list[reconciliations.Reported]) -> str | None:
    """The figures in the compact form the download form sends back, if they fit."""
    text = "\n".join(f"{r.number};{r.balance or ''};{r.accumulation or ''}" for r in reported)
    return text if len(quote_plus(text)) <= MAX_CARRIED_BYTES else None


@router.post("/reports/reconciliation")
def reconciliation_run(page: ReportsPage, posted: Posted) -> Response:
    """Compares the POS's file (``mode=file``) or lists every card (``mode=all``); with
    ``format=csv`` the corrections come back as a download instead of a page."""
    form = _reconcile_form(page, posted)
    form.validate()
    mode = "all" if posted.get("mode") == "all" else "file"
    as_of = read_moment(form)
    reported: list[reconciliations.Reported] | None = None
    if mode == "file":
        text = _uploaded_text(form, posted)
        if text is not None:
            try:
                reported = reconciliations.parse_reported_csv(text)
            except KopilkaError as error:
                form.add_error("file", file_refusal(error))
    result = None
    if not form.has_errors:
        try:
            with read_only(page.engine) as conn:
                result = reconciliations.reconcile(
                    conn,
                    page.tenant.id,
                    reported,
                    as_of=as_of,
                    only_differences=bool(form.only_differences.data),
                    program_id=_chosen_id(form.program) if mode == "all" else None,
                )
        except KopilkaError as error:
            if error.code == E.PROGRAM_NOT_FOUND:
                form.add_error("program", _("Choose a program from the list."))
            else:
                form.add_error("file", file_refusal(error))
    if result is None:
        return _show(
            page, "reconciliation.html", "reconciliation", status_code=422, form=form, result=None
        )
    if posted.get("format") == "csv":
        return StreamingResponse(
            reconciliations.reconcile_csv_chunks(result),
            media_type=CSV_TYPE,
            headers={"Content-Disposition": 'attachment; filename="reconciliation.csv"'},
        )
    carried = "" if reported is None else _carry(reported)
    return _show(
        page,
        "reconciliation.html",
        "reconciliation",
        form=form,
        result=result,
        mode=mode,
        lines=result.lines[:SHOWN_LINES],
        shown_lines=SHOWN_LINES,
        carried=carried,
        keep={
            "at": form.at.data or "",
            "program": str(form.program.data or "") if mode == "all" else "",
            "only_differences": "y" if form.only_differences.data else "",
        },
    )
