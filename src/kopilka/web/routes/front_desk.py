"""The front desk (SPEC H-1; seeds 000, 001): find a stay, book or check a guest in, a
stay's guests and folios. The folio itself is ``front_desk_folio``; the hotel's
properties and rooms are set up in Settings (``front_desk_settings``).

Roles with the ``hotel`` permission come in (owner, administrator, front desk). The home
screen finds stays by room number or guest's name as one types (htmx asks for the table
again; without scripts the search is a plain GET form) and lists the stays booked and
checked in with their room, guests, dates and balance. Every write is one transaction
through ``kopilka.hotel``; a refusal is shown in the user's language
(``refusal_text``), next to its field when it has one, and writes nothing.

This module also holds what the front desk's screens share: the page dependency, the
frame, the refusal texts of the hotel's codes (the domain's details are English, for
integrators), reading dates and amounts as people type them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from types import SimpleNamespace
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from wtforms import BooleanField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.core.money import currency_exponent, format_amount, parse_amount
from kopilka.fiscal.error_codes import FiscalErrorCode
from kopilka.hotel import stays
from kopilka.hotel.error_codes import HotelErrorCode as E
from kopilka.hotel.loyalty_centre import LoyaltyCentreErrorCode
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.programs import LoyaltyErrorCode
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, render, require, safe_next
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy

router = APIRouter(include_in_schema=False)
T = TypeVar("T")

DeskPage = Annotated[Page, Depends(require("hotel"))]
HOME = "/front-desk"
MAX_ID = 2**63 - 1
MAX_OTHER_GUESTS = stays.MAX_GUESTS - 1

STAY_STATUSES = {
    stays.BOOKED: lazy("Booked"),
    stays.CHECKED_IN: lazy("Checked in"),
    stays.CHECKED_OUT: lazy("Checked out"),
    stays.CANCELLED: lazy("Cancelled"),
}
# The home screen's filter: what each choice lists ("" is the stays still open).
STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "": stays.OPEN_STATUSES,
    stays.BOOKED: (stays.BOOKED,),
    stays.CHECKED_IN: (stays.CHECKED_IN,),
    stays.CHECKED_OUT: (stays.CHECKED_OUT,),
    stays.CANCELLED: (stays.CANCELLED,),
    "all": (),
}


async def _form_data(request: Request) -> FormData:
    return await request.form()


Posted = Annotated[FormData, Depends(_form_data)]


# --------------------------------------------------------------------------- shared


def show(page: Page, template: str, *, status_code: int = 200, **context: Any) -> Response:
    """A screen of the front desk (``front_desk/<template>``)."""
    return render(
        page,
        f"front_desk/{template}",
        status_code=status_code,
        active_section="hotel",
        stay_statuses=STAY_STATUSES,
        **context,
    )


def is_fragment(request: Request, target: str) -> bool:
    """An htmx request for the part of a page with the id ``target``."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-Boosted") is None
        and request.headers.get("HX-Target") == target
    )


def currency_of(page: Page) -> SimpleNamespace:
    """What ``money()`` in a template needs for the tenant's currency."""
    code = page.tenant.currency
    return SimpleNamespace(code=code, exponent=currency_exponent(code), kind="currency", name="")


def today() -> date:
    return datetime.now(i18n.current_zone()).date()


def object_id(value: object) -> int | None:
    """An id from a form or a query (digits only, in range), else ``None``."""
    text = value.strip() if isinstance(value, str) else ""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None


def read_date(form: WebForm, field: str) -> date | None:
    text = str(getattr(form, field).data or "").strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        form.add_error(field, _("Enter a date."))
        return None


def read_money(form: WebForm, field: str, exponent: int) -> int | None:
    """An amount above zero as people type it: ``10 000,00`` or ``10000.00``."""
    text = str(getattr(form, field).data or "")
    cleaned = text.replace("\u00a0", "").replace("\u202f", "").replace(" ", "").replace(",", ".")
    try:
        return parse_amount(cleaned, exponent, positive=True)
    except KopilkaError:
        if exponent:
            message = _("Enter an amount above zero with at most %(n)s decimals.", n=exponent)
        else:
            message = _("Enter a whole amount above zero.")
        form.add_error(field, message)
        return None


def typed(amount_minor: int, exponent: int) -> str:
    """An amount as people of the current language type it (``10000,00`` in Russian)."""
    text = format_amount(amount_minor, exponent)
    return text.replace(".", ",") if i18n.current_locale() == "ru" else text


def _shown_decimal(text: object, currency: str | None) -> str:
    """A decimal string of an error's parameters, written the user's way."""
    value = str(text or "0")
    exponent = len(value.partition(".")[2])
    try:
        minor = parse_amount(value, exponent)
    except KopilkaError:
        return value
    if currency is not None:
        return i18n.format_money(minor, currency, exponent)
    return i18n.format_number(minor, exponent)


def _messages() -> dict[str, str]:
    """What each refusal means to a person at the desk (codes without parameters)."""
    return {
        E.INVALID_HOTEL_INPUT: _("Check what is entered."),
        E.PROPERTY_NOT_FOUND: _("Choose a property from the list."),
        E.PROPERTY_EXISTS: _("A property with this name exists already."),
        E.ROOM_NOT_FOUND: _("Choose a room from the list."),
        E.ROOM_EXISTS: _("This room number exists already in the property."),
        E.GUEST_NOT_FOUND: _("Choose a guest of this stay."),
        E.STAY_NOT_FOUND: _("There is no such stay."),
        E.ROOM_OCCUPIED: _("Someone is checked into this room; check that stay out first."),
        E.STAY_CLOSED: _("The stay is checked out or cancelled: nothing more can be charged."),
        E.FOLIO_NOT_FOUND: _("There is no such folio."),
        E.INVOICE_NOT_FOUND: _("Choose an invoice of this folio."),
        E.INVOICE_VOID: _("The invoice is void: it takes no payments."),
        E.INVOICE_PAID: _("The invoice has payments: it cannot be voided, only refunded."),
        E.PAYMENT_NOT_FOUND: _("Choose a payment of this folio."),
        E.PAYMENT_TYPE_NOT_USABLE: _(
            "This payment type cannot be used here: it is switched off, charges the room, or "
            "pays with points (points are refunded by their own type)."
        ),
        E.INVALID_DIRECTION: _("Choose where the money goes back."),
        E.FOLIO_NOT_IN_DEBT: _("The guest owes nothing: points pay only what is owed."),
        E.DEPOSIT_INSUFFICIENT: _("The deposit does not cover this."),
        E.HOTEL_OPERATION_CONFLICT: _("This form was sent already; reload the page."),
        E.POS_ORDER_TERMINAL_ONLY: _(
            "A restaurant order is cancelled only at its terminal; once paid, refund it."
        ),
        LoyaltyErrorCode.CERTIFICATE_NOT_FOUND: _("There is no gift certificate with this number."),
        LoyaltyErrorCode.INVALID_CERTIFICATE_NUMBER: _(
            "There is no gift certificate with this number."
        ),
        LoyaltyErrorCode.CERTIFICATE_NOT_SOLD: _("This gift certificate has not been sold."),
        LoyaltyErrorCode.CERTIFICATE_BLOCKED: _("This gift certificate is blocked."),
        LoyaltyErrorCode.CERTIFICATE_EXPIRED: _("This gift certificate has expired."),
        LoyaltyErrorCode.INSUFFICIENT_CERTIFICATE_BALANCE: _(
            "The gift certificate holds less than that."
        ),
        LoyaltyErrorCode.CARD_NOT_FOUND: _("There is no card with this number."),
        LoyaltyErrorCode.INVALID_CARD_NUMBER: _("There is no card with this number."),
        LoyaltyErrorCode.CARD_BLOCKED: _("The card is blocked."),
        LoyaltyErrorCode.CARD_EXPIRED: _("The card has expired."),
        LoyaltyErrorCode.INSUFFICIENT_POINTS: _("The card has fewer points than that."),
        LoyaltyErrorCode.LOYALTY_DISABLED: _("The card's loyalty program is switched off."),
        LoyaltyErrorCode.LOYALTY_MODULE_DISABLED: _(
            "The loyalty module of the company is switched off: cards cannot pay now."
        ),
        LoyaltyErrorCode.INVALID_PHONE: _("Enter a phone number, such as +7 916 123-45-67."),
        LoyaltyErrorCode.INVALID_EMAIL: _("Enter an e-mail address, such as anna@example.ru."),
        LoyaltyCentreErrorCode.LOYALTY_CENTRE_UNAVAILABLE: _(
            "The loyalty centre does not answer; nothing was written. Try again in a while."
        ),
        LoyaltyCentreErrorCode.LOYALTY_CENTRE_NOT_SET: _(
            "The loyalty centre is not set up; see Settings."
        ),
        FiscalErrorCode.CASH_REGISTER_NOT_FOUND: _("Choose a cash register from the list."),
        FiscalErrorCode.CASH_REGISTER_DISABLED: _("This cash register is switched off."),
        FiscalErrorCode.RECEIPT_CONTACT_REQUIRED: _(
            "Give the payer's e-mail or phone for the receipt's electronic copy."
        ),
        FiscalErrorCode.INVALID_CONTACT: _("Check the e-mail and the phone."),
        FiscalErrorCode.RECEIPT_NOT_RETRYABLE: _("The receipt is registered already."),
        FiscalErrorCode.RECEIPT_NOT_FOUND: _("There is no such receipt."),
        FiscalErrorCode.RECEIPT_SUM_MISMATCH: _(
            "The register would not take this receipt; take the payment without a receipt "
            "and retry the receipt later."
        ),
        FiscalErrorCode.INVALID_RECEIPT: _(
            "The register would not take this receipt; take the payment without a receipt "
            "and retry the receipt later."
        ),
        "idempotency_conflict": _("This form was sent already; reload the page."),
    }


def refusal_text(error: KopilkaError, currency: str) -> str:
    """A domain's refusal in the user's language; amounts in its parameters are written
    the user's way (money in ``currency``)."""
    params = error.params
    if error.code == E.OVERPAYMENT:
        return _(
            "The invoice owes only %(amount)s.",
            amount=_shown_decimal(params.get("owed"), currency),
        )
    if error.code == E.REFUND_TOO_LARGE:
        return _(
            "At most %(amount)s can be given back.",
            amount=_shown_decimal(params.get("refundable"), currency),
        )
    if error.code == E.POINTS_ABOVE_CAP:
        return _(
            "At most %(points)s %(unit)s may be spent on this folio now.",
            points=_shown_decimal(params.get("cap"), None),
            unit=params.get("unit", ""),
        )
    if error.code == E.STAY_STATE:
        status = STAY_STATUSES.get(str(params.get("status")), params.get("status"))
        return _("Not possible while the stay is “%(status)s”.", status=status)
    known = _messages().get(error.code)
    return known if known is not None else _("Refused: %(detail)s", detail=error.detail)


def refuse(form: WebForm, error: KopilkaError, fields: Mapping[str, str], currency: str) -> None:
    """The refusal next to its field (``fields``: code -> field name), else on top."""
    field = fields.get(error.code, "")
    if error.code == FiscalErrorCode.INVALID_CONTACT:
        field = {"phone": "receipt_phone", "email": "receipt_email"}.get(
            str(error.params.get("field", "")), field
        )
    form.add_error(field, refusal_text(error, currency))


def not_found(error: KopilkaError) -> bool:
    """A refusal that means the page's own object is not the tenant's (404)."""
    return error.code in (E.STAY_NOT_FOUND, E.FOLIO_NOT_FOUND)


def save(
    page: Page,
    form: WebForm,
    work: Callable[[Connection], T],
    fields: Mapping[str, str],
) -> T | None:
    """Runs ``work`` in one transaction; a refusal lands on the form (``None``)."""
    try:
        return run_transaction(page.engine, work)
    except KopilkaError as error:
        if not_found(error):
            raise HTTPException(404) from error
        refuse(form, error, fields, page.tenant.currency)
        return None


def flash_now(page: Page, kind: str, text: str) -> None:
    """A message for the next page, written on its own (after a refused transaction)."""
    with page.engine.begin() as conn:
        page.flash_next(conn, kind, text)


# --------------------------------------------------------------------------- home


def _stay_rows(conn: Connection, found: list[stays.StayView]) -> list[tuple[stays.StayView, int]]:
    """Each stay with its balance: all its folios together (below zero: owes)."""
    balances = stays.folio_balances(conn, [f.account_id for s in found for f in s.folios])
    return [(s, sum(balances.get(f.account_id, 0) for f in s.folios)) for s in found]


@router.get(HOME)
def desk_home(page: DeskPage, q: str = "", status: str = "") -> Response:
    chosen = status if status in STATUS_FILTERS else ""
    with read_only(page.engine) as conn:
        found = stays.find_stays(
            conn, page.tenant.id, text=q[:200], statuses=STATUS_FILTERS[chosen], limit=100
        )
        rows = _stay_rows(conn, found)
        has_rooms = bool(found) or bool(stays.list_rooms(conn, page.tenant.id))
    context: dict[str, Any] = {
        "rows": rows,
        "q": q,
        "status": chosen,
        "currency": currency_of(page),
        "back": page.request.url.path
        + (f"?{page.request.url.query}" if page.request.url.query else ""),
    }
    if is_fragment(page.request, "stays"):
        return render(page, "front_desk/_stays.html", stay_statuses=STAY_STATUSES, **context)
    return show(page, "home.html", has_rooms=has_rooms, **context)


# --------------------------------------------------------------------------- a new stay


class StayForm(WebForm):
    room_id = SelectField(lazy("Room"), validate_choice=False)
    arrival = StringField(lazy("Arrival"), render_kw={"type": "date"})
    departure = StringField(lazy("Departure"), render_kw={"type": "date"})
    guest_name = StringField(
        lazy("Guest's name"),
        validators=[DataRequired(), Length(max=stays.MAX_NAME)],
        render_kw={"maxlength": stays.MAX_NAME, "autocomplete": "off"},
    )
    guest_phone = StringField(lazy("Phone"), validators=[Length(max=32)])
    guest_email = StringField(lazy("E-mail"), validators=[Length(max=254)])
    other_guests = TextAreaField(lazy("Other guests, a name a line"), render_kw={"rows": 2})
    note = StringField(lazy("Note"), validators=[Length(max=500)])
    check_in = BooleanField(lazy("Check in now"))


def _stay_form(conn: Connection, page: Page, data: Any = None) -> StayForm:
    form = StayForm(data)
    form.room_id.choices = [
        SelectChoice(
            str(r.id),
            f"{r.property_name} · {r.number}" + (f" ({r.description})" if r.description else ""),
        )
        for r in stays.list_rooms(conn, page.tenant.id)
    ]
    return form


def _stay_errors() -> dict[str, str]:
    return {
        E.ROOM_NOT_FOUND: "room_id",
        E.ROOM_OCCUPIED: "room_id",
        LoyaltyErrorCode.INVALID_PHONE: "guest_phone",
        LoyaltyErrorCode.INVALID_EMAIL: "guest_email",
    }


def _new_stay_page(page: Page, form: StayForm, status_code: int = 200) -> Response:
    return show(page, "new_stay.html", status_code=status_code, form=form)


@router.get(HOME + "/stays/new")
def stay_new(page: DeskPage, room: str = "") -> Response:
    start = today()
    with read_only(page.engine) as conn:
        form = _stay_form(conn, page)
    form.arrival.data = start.isoformat()
    form.departure.data = date.fromordinal(start.toordinal() + 1).isoformat()
    form.check_in.data = True
    if object_id(room) is not None:
        form.room_id.data = room
    return _new_stay_page(page, form)


def _other_guests(form: StayForm) -> list[str]:
    names = [" ".join(line.split()) for line in str(form.other_guests.data or "").splitlines()]
    names = [n for n in names if n]
    if len(names) > MAX_OTHER_GUESTS or any(len(n) > stays.MAX_NAME for n in names):
        form.add_error(
            "other_guests",
            _(
                "At most %(n)s more guests, a name of up to 200 characters each.",
                n=MAX_OTHER_GUESTS,
            ),
        )
    return names


@router.post(HOME + "/stays/new")
def stay_create(page: DeskPage, posted: Posted) -> Response:
    with read_only(page.engine) as conn:
        form = _stay_form(conn, page, posted)
    valid = form.validate()
    room_id = object_id(form.room_id.data)
    if room_id is None:
        form.add_error("room_id", _("Choose a room from the list."))
    arrival, departure = read_date(form, "arrival"), read_date(form, "departure")
    if arrival and departure and departure <= arrival:
        form.add_error("departure", _("The departure is after the arrival."))
    others = _other_guests(form)
    if not valid or form.has_errors or room_id is None or not arrival or not departure:
        return _new_stay_page(page, form, 422)

    def work(conn: Connection) -> stays.StayView:
        t, actor = page.tenant.id, page.actor
        main = stays.create_guest(
            conn,
            tenant_id=t,
            full_name=form.guest_name.data or "",
            phone=form.guest_phone.data or None,
            email=form.guest_email.data or None,
            actor=actor,
        )
        guests = [main.id] + [
            stays.create_guest(conn, tenant_id=t, full_name=name, actor=actor).id for name in others
        ]
        stay = stays.create_stay(
            conn,
            tenant_id=t,
            room_id=room_id,
            arrival=arrival,
            departure=departure,
            guest_ids=guests,
            note=form.note.data or "",
            check_in=bool(form.check_in.data),
            actor=actor,
        )
        message = (
            _("%(name)s is checked into room %(room)s.", name=main.full_name, room=stay.room.number)
            if stay.status == stays.CHECKED_IN
            else _(
                "Room %(room)s is booked for %(name)s.", name=main.full_name, room=stay.room.number
            )
        )
        page.flash_next(conn, "success", message)
        return stay

    stay = save(page, form, work, _stay_errors())
    if stay is None:
        return _new_stay_page(page, form, 422)
    return redirect(f"{HOME}/stays/{stay.id}", page.request)


# --------------------------------------------------------------------------- a stay


class GuestForm(WebForm):
    full_name = StringField(
        lazy("Guest's name"),
        validators=[DataRequired(), Length(max=stays.MAX_NAME)],
        render_kw={"maxlength": stays.MAX_NAME, "autocomplete": "off"},
    )
    phone = StringField(lazy("Phone"), validators=[Length(max=32)])
    email = StringField(lazy("E-mail"), validators=[Length(max=254)])


def _stay(conn: Connection, page: Page, stay_id: int) -> stays.StayView:
    try:
        return stays.get_stay(conn, page.tenant.id, stay_id)
    except NotFound:
        raise HTTPException(404) from None


def stay_page(
    page: Page, stay_id: int, *, guest_form: GuestForm | None = None, status_code: int = 200
) -> Response:
    with read_only(page.engine) as conn:
        stay = _stay(conn, page, stay_id)
        balances = stays.folio_balances(conn, [f.account_id for f in stay.folios])
    names = {g.id: g.full_name for g in stay.guests}
    return show(
        page,
        "stay.html",
        status_code=status_code,
        stay=stay,
        folios=[
            (f, names.get(f.guest_id or 0), balances.get(f.account_id, 0)) for f in stay.folios
        ],
        own_folio={f.guest_id: f for f in stay.folios if f.guest_id is not None},
        guest_form=guest_form or GuestForm(),
        currency=currency_of(page),
        back=f"{HOME}/stays/{stay.id}",
    )


@router.get(HOME + "/stays/{stay_id:int}")
def stay_view(page: DeskPage, stay_id: int) -> Response:
    return stay_page(page, stay_id)


def _done_message(stay: stays.StayView, owed_minor: int, currency: str) -> tuple[str, str]:
    room = stay.room.number
    if stay.status == stays.CHECKED_IN:
        return "success", _("Room %(room)s: the guests are checked in.", room=room)
    if stay.status == stays.CANCELLED:
        return "success", _("Room %(room)s: the booking is cancelled.", room=room)
    if owed_minor > 0:
        amount = i18n.format_money(owed_minor, currency, currency_exponent(currency))
        return "warning", _(
            "Room %(room)s is checked out; the guests still owe %(amount)s.",
            room=room,
            amount=amount,
        )
    return "success", _("Room %(room)s is checked out.", room=room)


def _stay_action(
    page: Page, stay_id: int, posted: FormData, verb: Callable[..., stays.StayView]
) -> Response:
    """Check in, check out or cancel; back to where the button was."""
    back = safe_next(str(posted.get("next") or f"{HOME}/stays/{stay_id}"))
    currency = page.tenant.currency

    def work(conn: Connection) -> None:
        stay = verb(conn, tenant_id=page.tenant.id, stay_id=stay_id, actor=page.actor)
        balance = sum(stays.folio_balances(conn, [f.account_id for f in stay.folios]).values())
        kind, text = _done_message(stay, max(0, -balance), currency)
        page.flash_next(conn, kind, text)

    try:
        run_transaction(page.engine, work)
    except KopilkaError as error:
        if isinstance(error, NotFound):
            raise HTTPException(404) from error
        flash_now(page, "error", refusal_text(error, currency))
    return redirect(back, page.request)


@router.post(HOME + "/stays/{stay_id:int}/check-in")
def stay_check_in(page: DeskPage, stay_id: int, posted: Posted) -> Response:
    return _stay_action(page, stay_id, posted, stays.check_in_stay)


@router.post(HOME + "/stays/{stay_id:int}/check-out")
def stay_check_out(page: DeskPage, stay_id: int, posted: Posted) -> Response:
    return _stay_action(page, stay_id, posted, stays.check_out_stay)


@router.post(HOME + "/stays/{stay_id:int}/cancel")
def stay_cancel(page: DeskPage, stay_id: int, posted: Posted) -> Response:
    return _stay_action(page, stay_id, posted, stays.cancel_stay)


@router.post(HOME + "/stays/{stay_id:int}/guests")
def stay_add_guest(page: DeskPage, stay_id: int, posted: Posted) -> Response:
    form = GuestForm(posted)
    if form.validate():

        def work(conn: Connection) -> stays.StayView:
            guest = stays.create_guest(
                conn,
                tenant_id=page.tenant.id,
                full_name=form.full_name.data or "",
                phone=form.phone.data or None,
                email=form.email.data or None,
                actor=page.actor,
            )
            stay = stays.add_guest(
                conn, tenant_id=page.tenant.id, stay_id=stay_id, guest_id=guest.id, actor=page.actor
            )
            page.flash_next(
                conn, "success", _("%(name)s is added to the stay.", name=guest.full_name)
            )
            return stay

        fields: dict[str, str] = {
            LoyaltyErrorCode.INVALID_PHONE: "phone",
            LoyaltyErrorCode.INVALID_EMAIL: "email",
        }
        if save(page, form, work, fields) is not None:
            return redirect(f"{HOME}/stays/{stay_id}", page.request)
    return stay_page(page, stay_id, guest_form=form, status_code=422)


@router.post(HOME + "/stays/{stay_id:int}/folios")
def stay_guest_folio(page: DeskPage, stay_id: int, posted: Posted) -> Response:
    """A guest's own folio in the stay (opened on first ask), then that folio."""
    guest_id = object_id(posted.get("guest_id"))
    if guest_id is None:
        raise HTTPException(404)

    def work(conn: Connection) -> stays.FolioRef:
        return stays.open_guest_folio(
            conn, tenant_id=page.tenant.id, stay_id=stay_id, guest_id=guest_id, actor=page.actor
        )

    try:
        folio = run_transaction(page.engine, work)
    except KopilkaError as error:
        if isinstance(error, NotFound):
            raise HTTPException(404) from error
        flash_now(page, "error", refusal_text(error, page.tenant.currency))
        return redirect(f"{HOME}/stays/{stay_id}", page.request)
    return redirect(f"{HOME}/folios/{folio.id}", page.request)
