"""Cards and bonuses on screen (SPEC C-1 … C-5): cards, programs, documents, debts.

Everyone with the ``cards`` permission (owner, administrator, cashier) finds cards and
reads a card's page; changing anything (issuing, group operations, manual documents,
programs) takes ``cards.manage``. Every change runs in one transaction through the same
domain functions the API uses, and a refusal lands next to the field it concerns.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.datastructures import FormData
from wtforms import BooleanField, HiddenField, IntegerField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput, KopilkaError, NotFound
from kopilka.core.money import parse_amount
from kopilka.jobs import card_jobs
from kopilka.jobs.runner import start_job
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty import cards as card_ops
from kopilka.loyalty import documents
from kopilka.loyalty.card_history import CardHistory, HistoryItem, card_history
from kopilka.loyalty.card_search import matching_ids, search_cards
from kopilka.loyalty.cards import CardView, get_card
from kopilka.loyalty.programs import (
    BP,
    LoyaltyErrorCode,
    Program,
    add_tier,
    create_program,
    get_program,
    list_programs,
)
from kopilka.loyalty.schema import CARD_STATUSES
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, render, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.paging import paging_of

router = APIRouter(include_in_schema=False)

E = LoyaltyErrorCode
T = TypeVar("T")

CardsPage = Annotated[Page, Depends(require("cards"))]
ManagePage = Annotated[Page, Depends(require("cards.manage"))]

# Russian agrees the word with "карта" (feminine); the English is the plain word.
STATUS_NAMES = {
    "active": lazy("Active card"),
    "blocked": lazy("Blocked card"),
    "expired": lazy("Expired card"),
}
HISTORY_PER_PAGE = 50


async def _form_data(request: Request) -> FormData:
    return await request.form()


Posted = Annotated[FormData, Depends(_form_data)]


def show_section(
    page: Page, template: str, tab: str, *, status_code: int = 200, **context: Any
) -> Any:
    """A page of the Cards and bonuses section (``cards/<template>``) with its tabs."""
    tabs = [("cards", _("Cards"), "/cards")]
    tabs += [("certificates", _("Gift certificates"), "/cards/certificates")]
    if page.can("cards.manage"):
        tabs += [("programs", _("Programs"), "/cards/programs")]
        tabs += [("debts", _("Debts"), "/cards/debts")]
    return render(
        page,
        f"cards/{template}",
        status_code=status_code,
        active_section="cards",
        tabs=tabs,
        tab=tab,
        status_names=STATUS_NAMES,
        **context,
    )


def save_form(
    page: Page,
    form: WebForm,
    work: Callable[[Connection], T],
    fields: dict[str, tuple[str, str]],
) -> T | None:
    """Runs ``work`` in one transaction; a domain refusal lands on the form (``None``)."""
    try:
        return run_transaction(page.engine, work)
    except KopilkaError as error:
        if isinstance(error, NotFound) and error.code not in fields:
            raise HTTPException(404) from error
        form.refuse(error, fields)
        return None


def read_amount(form: WebForm, field: str, exponent: int) -> int | None:
    """A positive amount as people type it: ``1 234,56`` or ``1234.56``."""
    text = str(getattr(form, field).data or "")
    cleaned = text.replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        return parse_amount(cleaned, exponent, positive=True)
    except KopilkaError:
        if exponent:
            message = _("Enter an amount above zero with at most %(n)s decimals.", n=exponent)
        else:
            message = _("Enter a whole amount above zero.")
        form.add_error(field, message)
        return None


def read_percent(form: WebForm, field: str) -> int | None:
    """A percentage typed as ``5`` or ``2,5`` in basis points (0 … 10000)."""
    text = str(getattr(form, field).data or "0").strip().replace(",", ".").rstrip("%").strip()
    try:
        value = parse_amount(text or "0", 2)
    except KopilkaError:
        value = -1
    if not 0 <= value <= BP:
        form.add_error(field, _("Enter a percentage from 0 to 100."))
        return None
    return value


def _end_of_day(day: date) -> datetime:
    start = datetime.combine(day + timedelta(days=1), time(0), tzinfo=i18n.current_zone())
    return start - timedelta(microseconds=1)


def read_day(form: WebForm, field: str) -> tuple[bool, datetime | None]:
    """A date typed in a field (the end of that day in the tenant's zone), or none."""
    text = str(getattr(form, field).data or "").strip()
    if not text:
        return True, None
    try:
        return True, _end_of_day(date.fromisoformat(text))
    except ValueError:
        form.add_error(field, _("Enter a date such as 2026-12-31."))
        return False, None


def _program_choices(conn: Connection, page: Page) -> list[SelectChoice]:
    return [SelectChoice(str(p.id), p.name) for p in list_programs(conn, page.tenant.id)]


def currency_unit(code: str, exponent: int) -> SimpleNamespace:
    """What ``money()`` in a template needs to show an amount of a currency."""
    return SimpleNamespace(code=code, exponent=exponent, kind="currency", name="")


def _percent(bp: int) -> str:
    return i18n.format_number(bp, 2) + "\u00a0%"


# --------------------------------------------------------------------------- the list


@router.get("/cards")
def cards_list(
    page: CardsPage, q: str = "", program: str = "", status: str = "", tier: str = ""
) -> Response:
    paging = paging_of(page.request)
    with read_only(page.engine) as conn:
        programs = list_programs(conn, page.tenant.id)
        program_id = next((p.id for p in programs if str(p.id) == program), None)
        found = search_cards(
            conn,
            page.tenant.id,
            search=q[:100],
            program_id=program_id,
            status=status if status in CARD_STATUSES else None,
            offset=paging.offset,
            limit=paging.limit,
        )
    filters = [
        ("program", _("Program"), [(str(p.id), p.name) for p in programs], program),
        (
            "status",
            _("Status"),
            [(key, str(label)) for key, label in STATUS_NAMES.items()],
            status if status in CARD_STATUSES else "",
        ),
    ]
    return show_section(
        page,
        "list.html",
        "cards",
        cards=found.items,
        paging=paging.with_total(found.total),
        q=q,
        filters=filters,
        filtered=bool(q or program_id or status in CARD_STATUSES),
        programs=programs,
        programs_by_id={p.id: p for p in programs},
        tier_names={t.id: t.name for p in programs for t in p.tiers},
        query=page.request.url.query,
    )


GROUP_ACTIONS = ("block", "unblock", "expiry", "program", "delete")


@router.post("/cards/group")
def cards_group(page: ManagePage, posted: Posted) -> Response:
    """A group operation on the ticked cards, or on all that the search matched."""
    action = str(posted.get("action", ""))
    back = "/cards" + (f"?{posted.get('query')}" if posted.get("query") else "")
    if action not in GROUP_ACTIONS:
        return redirect(back, page.request)
    ticked = [int(str(v)) for v in posted.getlist("card") if str(v).isascii() and str(v).isdigit()]

    def work(conn: Connection) -> int:
        ids = ticked
        if posted.get("scope") == "all":
            args = {k: v[0] for k, v in parse_qs(str(posted.get("query", ""))).items()}
            programs = {str(p.id): p.id for p in list_programs(conn, page.tenant.id)}
            status = args.get("status")
            ids = matching_ids(
                conn,
                page.tenant.id,
                search=args.get("q", "")[:100],
                program_id=programs.get(args.get("program", "")),
                status=status if status in CARD_STATUSES else None,
            )
        common: dict[str, Any] = {
            "tenant_id": page.tenant.id,
            "card_ids": ids,
            "actor": page.actor,
        }
        if action == "block":
            return card_ops.block_cards(conn, reason=str(posted.get("reason", "")), **common)
        if action == "unblock":
            return card_ops.unblock_cards(conn, **common)
        if action == "delete":
            return card_ops.delete_unused(conn, **common)
        if action == "program":
            target = str(posted.get("program_id") or "")
            if not (target.isascii() and target.isdigit()):
                raise_invalid(_("Choose the program to move the cards to."))
            return card_ops.change_program(conn, program_id=int(target), **common)
        text = str(posted.get("expires", "")).strip()
        try:
            expires = _end_of_day(date.fromisoformat(text)) if text else None
        except ValueError:
            raise_invalid(_("Enter a date such as 2026-12-31."))
        return card_ops.set_expiry(conn, expires_at=expires, **common)

    try:
        changed = run_transaction(page.engine, work)
    except KopilkaError as error:
        with page.engine.begin() as conn:
            page.flash_next(conn, "error", _group_refusal(error))
        return redirect(back, page.request)
    with page.engine.begin() as conn:
        page.flash_next(
            conn,
            "success",
            i18n.ngettext("%(num)s card changed.", "%(num)s cards changed.", changed),
        )
    return redirect(back, page.request)


def raise_invalid(message: str) -> Any:
    raise InvalidInput("invalid_group_operation", message)


def _group_refusal(error: KopilkaError) -> str:
    messages: dict[str, str] = {
        E.INVALID_CARD: _("Give a reason of 1 to 200 characters to block cards."),
        E.PROGRAM_UNIT_MISMATCH: _("Cards can move only to a program with the same points."),
        E.PROGRAM_NOT_FOUND: _("There is no such program."),
    }
    return messages.get(str(error.code), error.detail)


# --------------------------------------------------------------------------- issuing


class CardForm(WebForm):
    program_id = SelectField(lazy("Program"), validators=[InputRequired()])
    number = StringField(lazy("Card number"), validators=[DataRequired(), Length(max=64)])
    holder_name = StringField(lazy("Holder's name"), validators=[Length(max=200)])
    holder_phone = StringField(lazy("Phone"), validators=[Length(max=32)])
    holder_email = StringField(lazy("E-mail"), validators=[Length(max=200)])
    expires = StringField(lazy("Valid until"), render_kw={"type": "date"})


def _card_errors() -> dict[str, tuple[str, str]]:
    return {
        E.CARD_EXISTS: ("number", _("A card with this number exists already.")),
        E.INVALID_CARD_NUMBER: ("number", _("A card number is 1 to 64 letters and digits.")),
        E.INVALID_PHONE: ("holder_phone", _("Enter a phone number such as +7 912 345-67-89.")),
        E.INVALID_EMAIL: ("holder_email", _("Enter an e-mail address such as anna@example.ru.")),
        E.INVALID_HOLDER: ("holder_name", _("A name has at most 200 characters.")),
        E.INVALID_CARD: ("expires", _("A card expires after it is issued.")),
        E.PROGRAM_NOT_FOUND: ("program_id", _("Choose a program from the list.")),
    }


@router.get("/cards/new")
def card_new(page: ManagePage) -> Response:
    form = CardForm()
    with read_only(page.engine) as conn:
        form.program_id.choices = _program_choices(conn, page)
    return show_section(page, "new.html", "cards", form=form)


@router.post("/cards/new")
def card_create(page: ManagePage, posted: Posted) -> Response:
    form = CardForm(posted)
    with read_only(page.engine) as conn:
        form.program_id.choices = _program_choices(conn, page)
    valid = form.validate()
    ok_day, expires = read_day(form, "expires")
    if valid and ok_day and not form.has_errors:

        def work(conn: Connection) -> CardView:
            card = card_ops.issue_card(
                conn,
                tenant_id=page.tenant.id,
                program_id=int(form.program_id.data or 0),
                number=form.number.data or "",
                actor=page.actor,
                holder_name=form.holder_name.data or None,
                holder_phone=form.holder_phone.data or None,
                holder_email=form.holder_email.data or None,
                expires_at=expires,
            )
            page.flash_next(conn, "success", _("Card %(number)s is issued.", number=card.number))
            return card

        card = save_form(page, form, work, _card_errors())
        if card is not None:
            return redirect(f"/cards/{card.id}", page.request)
    return show_section(page, "new.html", "cards", status_code=422, form=form)


class RangeForm(WebForm):
    program_id = SelectField(lazy("Program"), validators=[InputRequired()])
    prefix = StringField(lazy("Prefix"), validators=[Length(max=20)])
    first = IntegerField(lazy("First number"), validators=[InputRequired(), NumberRange(min=0)])
    last = IntegerField(lazy("Last number"), validators=[InputRequired(), NumberRange(min=0)])
    width = IntegerField(
        lazy("Digits in the number"), validators=[Optional(), NumberRange(min=1, max=30)]
    )
    check_digit = BooleanField(lazy("Add a check digit (Luhn)"))


@router.get("/cards/range")
def range_new(page: ManagePage) -> Response:
    form = RangeForm()
    with read_only(page.engine) as conn:
        form.program_id.choices = _program_choices(conn, page)
    return show_section(page, "range.html", "cards", form=form)


@router.post("/cards/range")
def range_start(page: ManagePage, posted: Posted) -> Response:
    """Checks the range here (so errors show by their fields), then issues it as a job."""
    form = RangeForm(posted)
    with read_only(page.engine) as conn:
        form.program_id.choices = _program_choices(conn, page)
    if form.validate():
        first, last = int(form.first.data or 0), int(form.last.data or 0)
        if last < first:
            form.add_error("last", _("The last number is not below the first."))
        elif last - first + 1 > card_ops.MAX_RANGE:
            limit = i18n.format_number(card_ops.MAX_RANGE, 0)
            form.add_error("last", _("At most %(n)s cards at once.", n=limit))
        else:
            try:
                card_ops.range_numbers(
                    form.prefix.data or "",
                    first,
                    last,
                    check_digit=bool(form.check_digit.data),
                    width=form.width.data,
                )
            except KopilkaError:
                form.add_error("prefix", _("A prefix is digits only, and the numbers fit."))
        if not form.has_errors:
            job_id = start_job(
                page.engine,
                tenant_id=page.tenant.id,
                kind=card_jobs.ISSUE_RANGE,
                params={
                    "program_id": int(form.program_id.data or 0),
                    "prefix": form.prefix.data or "",
                    "first": first,
                    "last": last,
                    "width": form.width.data,
                    "check_digit": bool(form.check_digit.data),
                    "user_id": page.user.id,
                    "user_login": page.user.login,
                    "source_ip": page.source_ip,
                },
                actor=page.actor,
            )
            return redirect(f"/jobs/{job_id}", page.request)
    return show_section(page, "range.html", "cards", status_code=422, form=form)


# --------------------------------------------------------------------------- one card


class DocumentForm(WebForm):
    kind = SelectField(
        lazy("Operation"),
        choices=[
            SelectChoice("accrual", lazy("Accrue points")),
            SelectChoice("write_off", lazy("Write points off")),
        ],
    )
    amount = StringField(lazy("Points"), validators=[DataRequired()])
    reason = StringField(lazy("Reason"), validators=[DataRequired(), Length(max=200)])
    document_id = HiddenField()


class BlockForm(WebForm):
    reason = StringField(lazy("Reason"), validators=[DataRequired(), Length(max=200)])


def _card_of(conn: Connection, page: Page, card_id: int) -> tuple[CardView, Program]:
    try:
        card = get_card(conn, page.tenant.id, card_id)
    except NotFound:
        raise HTTPException(404) from None
    return card, get_program(conn, page.tenant.id, card.program_id)


HISTORY_KINDS = {
    "check_accrual": lazy("Accrued for a check"),
    "check_spend": lazy("Paid with points"),
    "check": lazy("Check"),
    "refund": lazy("Refund: points returned"),
    "accrual_reversal": lazy("Refund: accrual taken back"),
    "manual_accrual": lazy("Accrued by hand"),
    "manual_write_off": lazy("Written off by hand"),
    "opening_balance": lazy("Opening balance"),
    "expiry": lazy("Points expired"),
    "hold": lazy("Points held"),
    "hold_captured": lazy("Hold spent"),
    "hold_voided": lazy("Hold released"),
    "hold_expired": lazy("Hold expired"),
    "capture": lazy("Hold spent"),
    "card_issue": lazy("Card issued"),
    "card_issue_range": lazy("Card issued in a range"),
    "card_block": lazy("Card blocked"),
    "card_unblock": lazy("Card unblocked"),
    "card_change_program": lazy("Moved to another program"),
    "card_set_expiry": lazy("Expiry date set"),
    "card_update_holder": lazy("Holder changed"),
    "card_import": lazy("Imported"),
    "redemption": lazy("Paid a bill with points"),
    "redemption_refund": lazy("Points back for a bill"),
}


def _explain(item: HistoryItem, program: Program) -> tuple[str, str]:
    """What a line of the card's history was, in the reader's language, and its details."""
    d = item.details
    label = HISTORY_KINDS.get(item.kind)
    parts: list[str] = []
    if d.get("check_id"):
        parts.append(_("check %(check)s", check=d["check_id"]))
    if d.get("terminal"):
        parts.append(_("till %(name)s", name=d["terminal"]))
    if d.get("share"):
        parts.append(_("share of the check %(share)s", share=d["share"]))
    if d.get("rate_bp") is not None:
        parts.append(_("rate %(rate)s", rate=_percent(int(d["rate_bp"]))))
    if d.get("tier"):
        parts.append(_("tier %(tier)s", tier=d["tier"]))
    if d.get("accrued_at"):
        accrued = datetime.fromisoformat(str(d["accrued_at"]))
        parts.append(_("accrued %(date)s", date=i18n.format_date(accrued)))
    if d.get("reason"):
        parts.append(str(d["reason"]))
    if d.get("debt_minor"):
        owed = i18n.format_number(int(d["debt_minor"]), program.unit.exponent)
        parts.append(_("owed %(points)s", points=owed))
    if not parts and label is None:
        parts.append(item.title)
    return (str(label) if label is not None else item.kind), "; ".join(parts)


def _card_page(
    page: Page,
    card_id: int,
    *,
    document: DocumentForm | None = None,
    block: BlockForm | None = None,
    status_code: int = 200,
) -> Response:
    cursor = page.request.query_params.get("after") or None
    with read_only(page.engine) as conn:
        card, program = _card_of(conn, page, card_id)
        try:
            found: CardHistory | None = card_history(
                conn,
                page.tenant.id,
                card.id,
                limit=HISTORY_PER_PAGE,
                cursor=cursor,
                newest_first=True,
            )
        except KopilkaError:  # a cursor typed by hand
            found = None
        tier = next((t for t in program.tiers if t.id == card.tier_id), None)
    lines = [(item, *_explain(item, program)) for item in (found.items if found else [])]
    if document is None:
        document = DocumentForm(data={"document_id": uuid.uuid4().hex})
    return show_section(
        page,
        "card.html",
        "cards",
        status_code=status_code,
        card=card,
        program=program,
        tier=tier,
        currency=currency_unit(program.currency, program.currency_exponent),
        percent=_percent,
        lines=lines,
        next_cursor=found.next_cursor if found else None,
        first_page=cursor is None,
        document=document,
        block=block or BlockForm(),
    )


@router.get("/cards/{card_id:int}")
def card_page(page: CardsPage, card_id: int) -> Response:
    return _card_page(page, card_id)


@router.post("/cards/{card_id:int}/documents")
def card_document(page: ManagePage, card_id: int, posted: Posted) -> Response:
    form = DocumentForm(posted)
    with read_only(page.engine) as conn:
        card, program = _card_of(conn, page, card_id)
    valid = form.validate()
    amount = read_amount(form, "amount", program.unit.exponent) if form.amount.data else None
    if valid and amount is not None and not form.has_errors:

        def work(conn: Connection) -> None:
            common: dict[str, Any] = {
                "tenant_id": page.tenant.id,
                "card_numbers": [card.number],
                "amount_minor": amount,
                "reason": form.reason.data or "",
                "actor": page.actor,
                "document_id": f"web:{form.document_id.data or uuid.uuid4().hex}",
            }
            if form.kind.data == "accrual":
                documents.accrue_points(conn, **common)
            else:
                documents.write_off_points(conn, **common)
            page.flash_next(conn, "success", _("The document is posted."))

        fields: dict[str, tuple[str, str]] = {
            E.INSUFFICIENT_POINTS: ("amount", _("The card has fewer points to spend now.")),
            E.REASON_REQUIRED: ("reason", _("Say why.")),
            E.INVALID_DOCUMENT: ("amount", _("Check the amount.")),
            E.INVALID_AMOUNT: ("amount", _("Check the amount.")),
            E.DOCUMENT_CONFLICT: ("", _("This form was sent already; reload the page.")),
        }
        if save_form(page, form, work, fields) is not None or not form.has_errors:
            return redirect(f"/cards/{card_id}", page.request)
    return _card_page(page, card_id, document=form, status_code=422)


@router.post("/cards/{card_id:int}/block")
def card_block(page: ManagePage, card_id: int, posted: Posted) -> Response:
    form = BlockForm(posted)
    if form.validate():

        def work(conn: Connection) -> int:
            changed = card_ops.block_cards(
                conn,
                tenant_id=page.tenant.id,
                card_ids=[card_id],
                reason=form.reason.data or "",
                actor=page.actor,
            )
            page.flash_next(conn, "success", _("The card is blocked."))
            return changed

        if save_form(page, form, work, {E.INVALID_CARD: ("reason", _("Say why."))}) is not None:
            return redirect(f"/cards/{card_id}", page.request)
    return _card_page(page, card_id, block=form, status_code=422)


@router.post("/cards/{card_id:int}/unblock")
def card_unblock(page: ManagePage, card_id: int) -> Response:
    def work(conn: Connection) -> None:
        card_ops.unblock_cards(conn, tenant_id=page.tenant.id, card_ids=[card_id], actor=page.actor)
        page.flash_next(conn, "success", _("The card is unblocked."))

    run_transaction(page.engine, work)
    return redirect(f"/cards/{card_id}", page.request)


# --------------------------------------------------------------------------- programs


class ProgramForm(WebForm):
    name = StringField(lazy("Name"), validators=[DataRequired(), Length(max=200)])
    unit_code = SelectField(lazy("Points"), validators=[InputRequired()])
    accrual = StringField(lazy("Accrual, %"), default="0")
    exclude_points_part = BooleanField(lazy("No accrual on the part paid with points"))
    activation_delay_days = IntegerField(
        lazy("Points become spendable after, days"),
        default=0,
        validators=[InputRequired(), NumberRange(min=0, max=3650)],
    )
    lifetime_days = IntegerField(
        lazy("Points live, days"), validators=[Optional(), NumberRange(min=1, max=36500)]
    )
    max_share = StringField(lazy("Points pay at most, % of a check"), default="100")
    min_check = StringField(lazy("Smallest check for points"), default="0")
    accumulation_window_days = IntegerField(
        lazy("Accumulation counts the last, days"),
        validators=[Optional(), NumberRange(min=1, max=36500)],
    )


class TierForm(WebForm):
    name = StringField(lazy("Tier"), validators=[DataRequired(), Length(max=100)])
    threshold = StringField(lazy("From accumulation"), validators=[DataRequired()])
    discount = StringField(lazy("Discount, %"), default="0")
    accrual = StringField(lazy("Accrual, %"), default="0")


def _point_units(conn: Connection, page: Page) -> list[SelectChoice]:
    from kopilka.core.money import UnitKind
    from kopilka.ledger.accounts import list_units

    return [
        SelectChoice(u.code, f"{u.name or u.code} ({u.code})")
        for u in list_units(conn, page.tenant.id)
        if u.kind == UnitKind.POINTS
    ]


def _programs_page(
    page: Page,
    form: ProgramForm | None = None,
    tier_forms: dict[int, TierForm] | None = None,
    status_code: int = 200,
) -> Response:
    with read_only(page.engine) as conn:
        programs = list_programs(conn, page.tenant.id)
        units = _point_units(conn, page)
    if form is None:
        form = ProgramForm(data={"exclude_points_part": True})
    form.unit_code.choices = units
    forms = {p.id: TierForm() for p in programs}
    forms.update(tier_forms or {})
    return show_section(
        page,
        "programs.html",
        "programs",
        status_code=status_code,
        programs=programs,
        form=form,
        tier_forms=forms,
        percent=_percent,
        currency_of=lambda p: currency_unit(p.currency, p.currency_exponent),
        has_units=bool(units),
    )


@router.get("/cards/programs")
def programs_list(page: ManagePage) -> Response:
    return _programs_page(page)


@router.post("/cards/programs")
def program_create(page: ManagePage, posted: Posted) -> Response:
    form = ProgramForm(posted)
    with read_only(page.engine) as conn:
        form.unit_code.choices = _point_units(conn, page)
        currency_exponent = _currency_exponent(page)
    valid = form.validate()
    accrual = read_percent(form, "accrual")
    share = read_percent(form, "max_share")
    min_check = 0
    if str(form.min_check.data or "").strip() not in ("", "0"):
        min_check = read_amount(form, "min_check", currency_exponent) or 0
    if valid and not form.has_errors and accrual is not None and share is not None:

        def work(conn: Connection) -> Program:
            program = create_program(
                conn,
                tenant_id=page.tenant.id,
                name=form.name.data or "",
                unit_code=form.unit_code.data or "",
                actor=page.actor,
                accrual_bp=accrual,
                exclude_points_part=bool(form.exclude_points_part.data),
                activation_delay_days=int(form.activation_delay_days.data or 0),
                lifetime_days=form.lifetime_days.data,
                max_share_bp=share,
                min_check_minor=min_check,
                accumulation_window_days=form.accumulation_window_days.data,
            )
            page.flash_next(conn, "success", _("Program %(name)s is created.", name=program.name))
            return program

        fields: dict[str, tuple[str, str]] = {
            E.PROGRAM_EXISTS: ("name", _("A program with this name exists already.")),
            E.INVALID_PROGRAM: ("", _("Check the program's rules.")),
        }
        if save_form(page, form, work, fields) is not None:
            return redirect("/cards/programs", page.request)
    return _programs_page(page, form=form, status_code=422)


def _currency_exponent(page: Page) -> int:
    from kopilka.core.money import currency_exponent

    return currency_exponent(page.tenant.currency)


@router.post("/cards/programs/{program_id:int}/tiers")
def tier_create(page: ManagePage, program_id: int, posted: Posted) -> Response:
    form = TierForm(posted)
    valid = form.validate()
    threshold = read_amount(form, "threshold", _currency_exponent(page)) if valid else None
    discount = read_percent(form, "discount")
    accrual = read_percent(form, "accrual")
    if valid and None not in (threshold, discount, accrual) and not form.has_errors:

        def work(conn: Connection) -> Any:
            tier = add_tier(
                conn,
                tenant_id=page.tenant.id,
                program_id=program_id,
                name=form.name.data or "",
                threshold_minor=threshold or 0,
                discount_bp=discount or 0,
                accrual_bp=accrual or 0,
                actor=page.actor,
            )
            page.flash_next(conn, "success", _("Tier %(name)s is added.", name=tier.name))
            return tier

        fields: dict[str, tuple[str, str]] = {
            E.TIER_EXISTS: ("threshold", _("A tier starts at this accumulation already.")),
            E.INVALID_TIER: ("", _("Check the tier.")),
        }
        if save_form(page, form, work, fields) is not None:
            return redirect("/cards/programs", page.request)
    return _programs_page(page, tier_forms={program_id: form}, status_code=422)


# --------------------------------------------------------------------------- debts


@router.get("/cards/debts")
def debts_list(page: ManagePage) -> Response:
    paging = paging_of(page.request)
    with read_only(page.engine) as conn:
        found = search_cards(
            conn, page.tenant.id, in_debt=True, offset=paging.offset, limit=paging.limit
        )
        programs = list_programs(conn, page.tenant.id)
    return show_section(
        page,
        "debts.html",
        "debts",
        rows=found.items,
        paging=paging.with_total(found.total),
        programs_by_id={p.id: p for p in programs},
    )
