"""Cards and opening balances imported from a CSV file, on screen (SPEC C-5, C-6, X-5).

The form takes the program, the start date, the file and two ticks (numbers carry a
check digit; a dry run that only checks and counts). What can be checked without reading
the file is checked here, next to its field; the file itself is read by the background
job ``cards.import`` (``kopilka.loyalty.imports``), whose page shows the progress and,
at the end, what was imported or every bad row with its line and column. The job gets
the file in its parameters, so it does not depend on this request's temporary upload.

An import is idempotent by the file's content: the same file again is answered with the
first result ("replayed"), and nothing is written twice.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData, UploadFile
from wtforms import BooleanField, FileField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired

from kopilka.core.db import read_only
from kopilka.jobs.runner import start_job
from kopilka.loyalty import imports
from kopilka.loyalty.cards import is_valid_luhn
from kopilka.loyalty.programs import list_programs
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.cards import show_section  # the cards section's frame and tabs


async def _close_upload(request: Request) -> AsyncIterator[None]:
    """Closes (and so removes) the uploaded file's spooled copy after the request, also
    when the request is refused (403) after the CSRF check has parsed the upload."""
    try:
        yield
    finally:
        await request.close()


router = APIRouter(include_in_schema=False, dependencies=[Depends(_close_upload)])

ManagePage = Annotated[Page, Depends(require("cards.manage"))]

# The file travels to the job inside its parameters (a JSON row), so the screen takes
# less than the import itself could read; larger files go through the API or the CLI.
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
SAMPLE_NAME = "kopilka-cards-sample.csv"

# What each column holds, in the order the help lists them; the header names the file
# may use are the import's own (``imports._ALIASES``), so the help cannot drift.
COLUMN_HELP = {
    "number": lazy("Card number; the only column required."),
    "holder_name": lazy("Holder's name."),
    "phone": lazy("Phone, such as +7 912 345-67-89."),
    "email": lazy("E-mail address."),
    "expires": lazy("Valid until: 31.12.2027 or 2027-12-31; empty: for ever."),
    "accumulation": lazy("Sum of purchases so far, in the program's currency: 12 345,67."),
    "checks": lazy("Number of checks so far, a whole number."),
    "points": lazy("Bonus balance in the program's points: 250,00."),
    "status": lazy("active/активна or blocked/заблокирована; empty: active."),
}
assert set(COLUMN_HELP) == set(imports.COLUMNS), "every column of the import is explained"

# The stages the import job reports its progress in (``imports.ImportProgress``).
IMPORT_STAGES = {
    "checking": lazy("checking the file"),
    "issuing": lazy("issuing the cards"),
    "updating": lazy("updating known cards"),
    "posting": lazy("opening the balances"),
    "done": lazy("done"),
}


async def _form_data(request: Request) -> FormData:
    return await request.form()  # parsed already by the CSRF check


Posted = Annotated[FormData, Depends(_form_data)]


class ImportForm(WebForm):
    program_id = SelectField(lazy("Program"), validators=[InputRequired()])
    start_date = StringField(
        lazy("Start of billing"), validators=[DataRequired()], render_kw={"type": "date"}
    )
    file = FileField(lazy("CSV file"), render_kw={"accept": ".csv,text/csv,text/plain"})
    check_digit = BooleanField(lazy("Card numbers end with a check digit (Luhn)"))
    dry_run = BooleanField(lazy("Dry run: check the file and count, import nothing"))


def _program_choices(page: Page) -> list[SelectChoice]:
    with read_only(page.engine) as conn:
        programs = list_programs(conn, page.tenant.id)
    return [SelectChoice(str(p.id), p.name) for p in programs]


def _today() -> date:
    return datetime.now(i18n.current_zone()).date()


def _page(page: Page, form: ImportForm, *, status_code: int = 200) -> Response:
    aliases = imports._ALIASES
    columns = [(name, aliases[name], COLUMN_HELP[name]) for name in imports.COLUMNS]
    return show_section(
        page,
        "import.html",
        "cards",
        status_code=status_code,
        form=form,
        columns=columns,
        has_programs=bool(form.program_id.choices),
        max_megabytes=MAX_UPLOAD_BYTES // (1024 * 1024),
    )


@router.get("/cards/import")
def import_form(page: ManagePage) -> Response:
    form = ImportForm(data={"start_date": _today().isoformat()})
    form.program_id.choices = _program_choices(page)
    return _page(page, form)


@router.post("/cards/import")
def import_start(page: ManagePage, posted: Posted) -> Response:
    """Checks the form, then hands the file to the ``cards.import`` job and shows it."""
    form = ImportForm(posted)
    form.program_id.choices = _program_choices(page)
    form.validate()
    start = _start_date(form)
    data = _upload(form, posted.get("file"))
    if form.has_errors or start is None or data is None:
        return _page(page, form, status_code=422)
    job_id = start_job(
        page.engine,
        tenant_id=page.tenant.id,
        kind=imports.JOB_KIND,
        params={
            "program_id": int(form.program_id.data or 0),
            "start_date": start.isoformat(),
            "data_base64": base64.b64encode(data).decode("ascii"),
            "check_digit": bool(form.check_digit.data),
            "dry_run": bool(form.dry_run.data),
            "user_id": page.user.id,
            "user_login": page.user.login,
            "source_ip": page.source_ip,
        },
        actor=page.actor,
    )
    return redirect(f"/jobs/{job_id}", page.request)


def _start_date(form: ImportForm) -> date | None:
    text = str(form.start_date.data or "").strip()
    if not text:
        return None
    try:
        start = date.fromisoformat(text)
    except ValueError:
        form.add_error("start_date", _("Enter a date such as 2026-12-31."))
        return None
    if start > _today():
        form.add_error("start_date", _("Billing starts today or on a day that has passed."))
        return None
    return start


def _upload(form: ImportForm, value: Any) -> bytes | None:
    """The file's bytes, or an error by the file field."""
    if not isinstance(value, UploadFile) or not value.filename:
        form.add_error("file", _("Choose a CSV file."))
        return None
    data = value.file.read(MAX_UPLOAD_BYTES + 1)
    if not data.strip():
        form.add_error("file", _("The chosen file is empty."))
        return None
    if len(data) > MAX_UPLOAD_BYTES:
        limit = i18n.format_number(MAX_UPLOAD_BYTES // (1024 * 1024), 0)
        form.add_error("file", _("A file of at most %(n)s MB.", n=limit))
        return None
    return data


# --------------------------------------------------------------------------- the sample


def sample_csv() -> bytes:
    """A file as Excel in Russia saves it: UTF-8 with a BOM, ``;``, Russian headers."""
    numbers = [_with_luhn("277000000001"), _with_luhn("277000000002")]
    lines = [
        "номер;ФИО;телефон;email;срок;накопление;чеков;бонусы;статус",
        f"{numbers[0]};Иванова Анна;+7 912 345-67-89;anna@example.ru;31.12.2027;"
        "12 345,67;15;250,00;активна",
        f"{numbers[1]};Петров Олег;;;;0;0;0;",
    ]
    return "\ufeff".encode() + ("\r\n".join(lines) + "\r\n").encode()


def _with_luhn(body: str) -> str:
    digit = next(d for d in "0123456789" if is_valid_luhn(body + d))
    return body + digit


@router.get("/cards/import/sample.csv")
def import_sample(page: ManagePage) -> Response:
    return Response(
        sample_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{SAMPLE_NAME}"'},
    )
