"""A guest's folio at the front desk (SPEC H-1, H-2, H-4, H-6, P-7; seeds 000, 001).

The folio's balance (what the guest owes, or their credit), its invoices with their
status and payer (each opens to its lines: for a restaurant order, its check, closing
time and terminal, seed 001's "Посмотреть детали услуги"), its payments and refunds
with their receipts (and Retry for a receipt not registered yet); and the actions:

* **Charge**: accommodation or a service, a description and lines;
* **Take payment**: a payment type (switched on; not a room charge, not points), an
  amount (what the chosen invoice, or the folio, owes), the invoice or the folio, the
  payer, and "Print a receipt" with the cash register and where its copy goes;
* **Refund** a payment: at most what it can still give back, a direction, a payment
  type, a reason, a refund receipt;
* **Pay with points** (seed 000's six steps, only while the guest owes): the card's
  number, "Ask" (htmx) shows per points type the card's balance and what may be spent,
  then the type, the points, Save;
* **Void** an unpaid charge made at the desk (a restaurant order is cancelled at its
  terminal).

Every money form carries an operation id made when it was shown (a hidden field): the
domain's operation id, so a form sent twice pays, refunds or charges once. A receipt is
asked for in the payment's own transaction and sent to the register after the commit,
as the API does; whatever the register says, the payment stands.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import SimpleNamespace
from typing import Any

from babel.numbers import format_decimal
from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.exceptions import HTTPException
from wtforms import (
    BooleanField,
    FieldList,
    FormField,
    HiddenField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import DataRequired, Length

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.core.money import MAX_ABS_MINOR, parse_amount
from kopilka.fiscal import receipts as fiscal
from kopilka.fiscal.error_codes import FiscalErrorCode as F
from kopilka.fiscal.registers import CashRegister, list_registers
from kopilka.hotel import folios, points
from kopilka.hotel import receipts as hotel_receipts
from kopilka.hotel.error_codes import HotelErrorCode as E
from kopilka.hotel.schema import REFUND_DIRECTIONS
from kopilka.ledger.accounts import UnitView, get_unit
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.programs import LoyaltyErrorCode as L
from kopilka.payments.types import PaymentKind, PaymentType, get_payment_type, list_payment_types
from kopilka.tenancy.actions import list_terminals
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, render
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.front_desk import (
    HOME,
    DeskPage,
    Posted,
    flash_now,
    is_fragment,
    not_found,
    object_id,
    read_money,
    refusal_text,
    refuse,
    save,
    show,
    typed,
)
from kopilka.web.templating import money

router = APIRouter(include_in_schema=False)

FOLIO = HOME + "/folios/{folio_id:int}"
# Kinds the desk's payment and refund forms never offer (they pay otherwise).
NOT_FOR_DESK = (PaymentKind.ROOM_CHARGE, PaymentKind.POINTS)

INVOICE_KINDS = {
    "accommodation": lazy("Accommodation"),
    "service": lazy("A service"),
    "pos_order": lazy("Restaurant order"),
}
INVOICE_STATUSES = {
    folios.UNPAID: lazy("Unpaid"),
    folios.PARTLY_PAID: lazy("Partly paid"),
    folios.PAID: lazy("Paid"),
    folios.VOID: lazy("Void"),
}
DIRECTIONS = {
    "cash": lazy("In cash"),
    "card": lazy("To the bank card"),
    "deposit": lazy("To the deposit"),
    "bank_transfer": lazy("By bank transfer"),
}
RECEIPT_STATUSES = {
    fiscal.PENDING: lazy("Waiting to be sent"),
    fiscal.WAIT: lazy("Being registered"),
    fiscal.DONE: lazy("Registered"),
    fiscal.FAILED: lazy("Failed"),
}
# The refund's direction a payment kind suggests.
_DIRECTION_OF = {
    PaymentKind.CASH.value: "cash",
    PaymentKind.CARD.value: "card",
    PaymentKind.BANK_TRANSFER.value: "bank_transfer",
    PaymentKind.DEPOSIT.value: "deposit",
}
assert set(DIRECTIONS) == set(REFUND_DIRECTIONS)

# Which field each refusal belongs to, per form (others go on top of the form).
_RECEIPT_FIELDS: dict[str, str] = {
    F.CASH_REGISTER_NOT_FOUND: "register_id",
    F.CASH_REGISTER_DISABLED: "register_id",
    F.RECEIPT_CONTACT_REQUIRED: "receipt_email",
    F.INVALID_CONTACT: "receipt_email",
}
PAY_FIELDS: dict[str, str] = {
    E.OVERPAYMENT: "amount",
    E.INVALID_HOTEL_INPUT: "certificate",
    L.CERTIFICATE_NOT_FOUND: "certificate",
    L.INVALID_CERTIFICATE_NUMBER: "certificate",
    L.CERTIFICATE_NOT_SOLD: "certificate",
    L.CERTIFICATE_BLOCKED: "certificate",
    L.CERTIFICATE_EXPIRED: "certificate",
    L.INSUFFICIENT_CERTIFICATE_BALANCE: "certificate",
    E.PAYMENT_TYPE_NOT_USABLE: "payment_type_id",
    E.INVOICE_VOID: "invoice_id",
    E.INVOICE_NOT_FOUND: "invoice_id",
    **_RECEIPT_FIELDS,
}
REFUND_FIELDS: dict[str, str] = {
    E.REFUND_TOO_LARGE: "amount",
    E.PAYMENT_TYPE_NOT_USABLE: "payment_type_id",
    E.INVALID_DIRECTION: "direction",
    **_RECEIPT_FIELDS,
}
POINTS_FIELDS: dict[str, str] = {
    E.POINTS_ABOVE_CAP: "points",
    E.PAYMENT_TYPE_NOT_USABLE: "payment_type_id",
    L.INSUFFICIENT_POINTS: "points",
}
CHARGE_FIELDS: dict[str, str] = {E.GUEST_NOT_FOUND: "payer_guest_id"}


@dataclass(slots=True)
class ReceiptAsk:
    """What ``kopilka.hotel.receipts`` needs to ask for a receipt."""

    register_id: int
    email: str | None
    phone: str | None


# --------------------------------------------------------------------------- forms


class ReceiptFields(WebForm):
    print_receipt = BooleanField(lazy("Print a receipt"))
    register_id = SelectField(lazy("Cash register"), validate_choice=False)
    receipt_email = StringField(lazy("E-mail for the receipt"), validators=[Length(max=254)])
    receipt_phone = StringField(lazy("Phone for the receipt"), validators=[Length(max=32)])


class PayForm(ReceiptFields):
    payment_type_id = SelectField(lazy("Payment type"), validate_choice=False)
    amount = StringField(lazy("Amount"), validators=[DataRequired()])
    invoice_id = SelectField(lazy("Invoice"), validate_choice=False, default="")
    payer = StringField(lazy("Payer"), validators=[Length(max=200)])
    certificate = StringField(lazy("Gift certificate number"), validators=[Length(max=64)])
    operation_id = HiddenField()


class RefundForm(ReceiptFields):
    payment_id = HiddenField()
    amount = StringField(lazy("Amount"), validators=[DataRequired()])
    direction = SelectField(
        lazy("Where the money goes"),
        choices=[SelectChoice(k, v) for k, v in DIRECTIONS.items()],
        validate_choice=False,
    )
    payment_type_id = SelectField(lazy("Payment type"), validate_choice=False)
    reason = StringField(lazy("Reason"), validators=[Length(max=500)])
    operation_id = HiddenField()


class LineForm(WebForm):
    name = StringField(lazy("Name"), validators=[Length(max=200)])
    quantity = StringField(lazy("Quantity"), default="1")
    price = StringField(lazy("Price"))
    amount = StringField(lazy("Sum"))


class ChargeForm(WebForm):
    kind = SelectField(
        lazy("Kind"),
        choices=[
            SelectChoice("accommodation", INVOICE_KINDS["accommodation"]),
            SelectChoice("service", INVOICE_KINDS["service"]),
        ],
        validate_choice=False,
    )
    description = StringField(
        lazy("Description"),
        validators=[DataRequired(), Length(max=200)],
        render_kw={"maxlength": 200},
    )
    payer_guest_id = SelectField(lazy("Payer"), validate_choice=False)
    lines = FieldList(FormField(LineForm), min_entries=3, max_entries=folios.MAX_LINES)
    operation_id = HiddenField()


class PointsForm(WebForm):
    card = HiddenField()
    payment_type_id = SelectField(lazy("Points"), validate_choice=False)
    points = StringField(lazy("Pay with points"), validators=[DataRequired()])
    operation_id = HiddenField()


# --------------------------------------------------------------------------- the screen


@dataclass
class Screen:
    """What the folio page shows, read in one go."""

    folio: folios.FolioView
    receipts: dict[tuple[str, int], fiscal.ReceiptView]
    types: list[PaymentType]
    registers: list[CashRegister]
    terminals: dict[int, str]
    units: dict[str, UnitView]

    @property
    def desk_types(self) -> list[PaymentType]:
        """The types that take a payment or a refund at the desk."""
        return [t for t in self.types if t.enabled and t.kind not in NOT_FOR_DESK]

    @property
    def open_invoices(self) -> list[folios.InvoiceView]:
        return [i for i in self.folio.invoices if i.owed_minor > 0]

    @property
    def currency(self) -> SimpleNamespace:
        f = self.folio
        return SimpleNamespace(code=f.currency, exponent=f.exponent, kind="currency", name="")

    def payment(self, payment_id: int | None) -> folios.PaymentView | None:
        return next((p for p in self.folio.payments if p.id == payment_id), None)

    def receipt_ids(self) -> set[int]:
        return {r.id for r in self.receipts.values()}


@dataclass
class Forms:
    """The forms of the page as they are to be shown (with what was typed, and errors)."""

    charge: ChargeForm | None = None
    pay: PayForm | None = None
    refund: RefundForm | None = None
    points: PointsForm | None = None
    card: str = ""
    opened: str = ""  # the panel shown open: charge, pay, refund, points


def _load(conn: Connection, page: Page, folio_id: int) -> Screen:
    t = page.tenant.id
    try:
        folio = folios.get_folio(conn, t, folio_id)
    except NotFound:
        raise HTTPException(404) from None
    codes = {p.points_unit for p in folio.payments if p.points_unit}
    return Screen(
        folio=folio,
        receipts=hotel_receipts.receipts_of(conn, t, folio),
        types=list_payment_types(conn, t),
        registers=list_registers(conn, t, enabled_only=True),
        terminals={x.id: x.name for x in list_terminals(conn, t)},
        units={code: get_unit(conn, t, code) for code in sorted(codes)},
    )


def screen_of(page: Page, folio_id: int) -> Screen:
    with read_only(page.engine) as conn:
        return _load(conn, page, folio_id)


def _fresh_id() -> str:
    return uuid.uuid4().hex


def _operation(form: WebForm) -> str:
    """The domain's operation id of a form: the id it was shown with."""
    shown = str(form.operation_id.data or "").strip()
    return f"desk:{shown if _well_formed(shown) else _fresh_id()}"


def _well_formed(shown_id: str) -> bool:
    """An id this screen could have made (a uuid's hex), not anything a post carries."""
    return 8 <= len(shown_id) <= 64 and shown_id.isascii() and shown_id.isalnum()


def _receipt_choices(form: ReceiptFields, screen: Screen) -> None:
    form.register_id.choices = [SelectChoice(str(r.id), r.name) for r in screen.registers]


def _prefill_receipt(form: ReceiptFields, screen: Screen) -> None:
    guest = screen.folio.guest
    form.receipt_email.data = (guest.email if guest else None) or ""
    form.receipt_phone.data = (guest.phone if guest else None) or ""
    if screen.registers:
        form.register_id.data = str(screen.registers[0].id)


def _invoice_label(screen: Screen, invoice: folios.InvoiceView) -> str:
    return _(
        "No. %(number)s · %(description)s · owes %(amount)s",
        number=invoice.id,
        description=invoice.description,
        amount=i18n.format_money(invoice.owed_minor, screen.folio.currency, screen.folio.exponent),
    )


def pay_form(screen: Screen, data: Any = None, *, invoice_id: int | None = None) -> PayForm:
    form = PayForm(data, prefix="pay")
    form.payment_type_id.choices = [SelectChoice(str(t.id), t.name) for t in screen.desk_types]
    form.invoice_id.choices = [
        SelectChoice("", _("The folio: its oldest invoices first")),
        *(SelectChoice(str(i.id), _invoice_label(screen, i)) for i in screen.open_invoices),
    ]
    _receipt_choices(form, screen)
    again = _htmx(f"{HOME}/folios/{screen.folio.id}/pay-form", "#pay-form")
    form.invoice_id.render_kw = again
    form.print_receipt.render_kw = again
    if data is None:
        form.operation_id.data = _fresh_id()
        _prefill_receipt(form, screen)
        _prefill_for_invoice(form, screen, invoice_id)
    return form


def _htmx(url: str, target: str) -> dict[str, str]:
    """A field that asks for its form again as it changes (htmx), what was typed kept."""
    return {"hx-post": url, "hx-trigger": "change", "hx-target": target, "hx-swap": "outerHTML"}


def _prefill_for_invoice(form: PayForm, screen: Screen, invoice_id: int | None) -> None:
    """The amount (and payer) of the chosen invoice, or of the folio when none is."""
    f = screen.folio
    invoice = next((i for i in screen.open_invoices if i.id == invoice_id), None)
    owed = invoice.owed_minor if invoice is not None else f.owed_minor
    form.invoice_id.data = str(invoice.id) if invoice is not None else ""
    form.amount.data = typed(owed, f.exponent) if owed > 0 else ""
    payer = invoice.payer if invoice is not None and invoice.payer else f.guest
    form.payer.data = payer.full_name if payer else ""


def refund_form(screen: Screen, payment: folios.PaymentView, data: Any = None) -> RefundForm:
    form = RefundForm(data, prefix="refund")
    if payment.payment_kind == PaymentKind.POINTS.value:
        own = [t for t in screen.types if t.id == payment.payment_type_id]
        form.payment_type_id.choices = [SelectChoice(str(t.id), t.name) for t in own]
    else:
        form.payment_type_id.choices = [SelectChoice(str(t.id), t.name) for t in screen.desk_types]
    _receipt_choices(form, screen)
    form.print_receipt.render_kw = _htmx(
        f"{HOME}/folios/{screen.folio.id}/refund-form", "#refund-form"
    )
    if data is None:
        form.payment_id.data = str(payment.id)
        form.operation_id.data = _fresh_id()
        form.amount.data = typed(payment.refundable_minor, screen.folio.exponent)
        form.direction.data = _DIRECTION_OF.get(payment.payment_kind, "cash")
        usable = {c.value for c in form.payment_type_id.choices}
        if str(payment.payment_type_id) in usable:
            form.payment_type_id.data = str(payment.payment_type_id)
        _prefill_receipt(form, screen)
    return form


def charge_form(screen: Screen, data: Any = None) -> ChargeForm:
    form = ChargeForm(data, prefix="charge")
    stay = screen.folio.stay
    form.payer_guest_id.choices = [SelectChoice(str(g.id), g.full_name) for g in stay.guests]
    if data is None:
        form.operation_id.data = _fresh_id()
        guest = screen.folio.guest
        form.payer_guest_id.data = str(guest.id) if guest else ""
    return form


def points_form(card: str, data: Any = None) -> PointsForm:
    form = PointsForm(data, prefix="points")
    if data is None:
        form.card.data = card
        form.operation_id.data = _fresh_id()
    return form


def quantity_text(milli: int) -> str:
    """1500 -> ``1,5`` (ru) / ``1.5`` (en); 2000 -> ``2``."""
    value = (Decimal(milli) / 1000).normalize()
    return str(format_decimal(value, format="#,##0.###", locale=i18n.current_locale()))


def _ask_points(
    page: Page, conn: Connection, folio_id: int, card: str
) -> tuple[points.Offers | None, str | None]:
    """Seed 000's "Запросить": the card's balances and what may be spent, or why not."""
    try:
        provider = points.tenant_provider(conn, page.tenant.id, page.actor)
        offers = points.points_offers(
            conn, tenant_id=page.tenant.id, folio_id=folio_id, card_number=card, provider=provider
        )
    except KopilkaError as error:
        if not_found(error):
            raise HTTPException(404) from error
        return None, refusal_text(error, page.tenant.currency)
    return offers, None


def _offers_context(
    page: Page, screen: Screen, card: str, form: PointsForm | None
) -> dict[str, Any]:
    offers: points.Offers | None = None
    error: str | None = None
    if card:
        with read_only(page.engine) as conn:
            offers, error = _ask_points(page, conn, screen.folio.id, card)
    form = form or points_form(card)
    choices = [
        SelectChoice(str(o.payment_type.id), o.payment_type.name)
        for o in (offers.offers if offers else ())
    ]
    form.payment_type_id.choices = choices
    if form.payment_type_id.data in (None, "") and choices:
        best = max(offers.offers if offers else (), key=lambda o: o.cap_minor)
        form.payment_type_id.data = str(best.payment_type.id)
    if error is None and offers is None and form.has_errors:
        error = " ".join([*form.form_errors, *(e for f in form for e in f.errors)])
    return {"offers": offers, "ask_error": error, "points_form": form, "card": card}


def folio_page(
    page: Page,
    screen: Screen,
    forms: Forms | None = None,
    *,
    status_code: int = 200,
    invoice_id: int | None = None,
    refund_id: int | None = None,
) -> Response:
    forms = forms or Forms()
    refund_payment = screen.payment(refund_id)
    if forms.refund is None and refund_payment is not None and refund_payment.refundable_minor:
        forms.refund = refund_form(screen, refund_payment)
        forms.opened = forms.opened or "refund"
    if forms.refund is not None and refund_payment is None:
        refund_payment = screen.payment(object_id(forms.refund.payment_id.data))
    if invoice_id is not None and forms.pay is None:
        forms.opened = forms.opened or "pay"
    return show(
        page,
        "folio.html",
        status_code=status_code,
        **_folio_context(page, screen, forms, invoice_id, refund_payment),
    )


def _folio_context(
    page: Page,
    screen: Screen,
    forms: Forms,
    invoice_id: int | None,
    refund_payment: folios.PaymentView | None,
) -> dict[str, Any]:
    f = screen.folio
    shows_points = f.owed_minor > 0 or forms.points is not None or bool(forms.card)
    context: dict[str, Any] = {
        "screen": screen,
        "folio": f,
        "currency": screen.currency,
        "kinds": INVOICE_KINDS,
        "invoice_statuses": INVOICE_STATUSES,
        "directions": DIRECTIONS,
        "receipt_statuses": RECEIPT_STATUSES,
        "qty": quantity_text,
        "charge": forms.charge or charge_form(screen),
        "pay": forms.pay or pay_form(screen, invoice_id=invoice_id),
        "refund": forms.refund,
        "refund_payment": refund_payment,
        "opened": forms.opened,
        "shows_points": shows_points,
        "charge_open": f.stay.is_open or forms.charge is not None,
    }
    if shows_points:
        context.update(_offers_context(page, screen, forms.card, forms.points))
    return context


def _back(folio_id: int) -> str:
    return f"{HOME}/folios/{folio_id}"


# --------------------------------------------------------------------------- reading


@router.get(FOLIO)
def folio_view(
    page: DeskPage, folio_id: int, invoice: str = "", refund: str = "", card: str = ""
) -> Response:
    screen = screen_of(page, folio_id)
    forms = Forms(card=card.strip()[:64], opened="points" if card.strip() else "")
    return folio_page(
        page, screen, forms, invoice_id=object_id(invoice), refund_id=object_id(refund)
    )


@router.get(FOLIO + "/points")
def folio_points_ask(page: DeskPage, folio_id: int, card: str = "") -> Response:
    """Ask the card's balances (htmx swaps the offers in; without scripts, the page)."""
    screen = screen_of(page, folio_id)
    card = card.strip()[:64]
    if is_fragment(page.request, "points-offers"):
        context = _offers_context(page, screen, card, None)
        return render(
            page,
            "front_desk/_points_offers.html",
            folio=screen.folio,
            screen=screen,
            currency=screen.currency,
            **context,
        )
    return folio_page(page, screen, Forms(card=card, opened="points"))


@router.post(FOLIO + "/pay-form")
def folio_pay_form(page: DeskPage, folio_id: int, posted: Posted) -> Response:
    """The payment form again as its invoice or its receipt box changes (htmx)."""
    screen = screen_of(page, folio_id)
    form = pay_form(screen, posted)
    if page.request.headers.get("HX-Trigger-Name") == "pay-invoice_id":
        _prefill_for_invoice(form, screen, object_id(form.invoice_id.data))
    return render(page, "front_desk/_pay_form.html", folio=screen.folio, screen=screen, pay=form)


@router.post(FOLIO + "/refund-form")
def folio_refund_form(page: DeskPage, folio_id: int, posted: Posted) -> Response:
    """The refund form again as its receipt box changes (htmx)."""
    screen = screen_of(page, folio_id)
    payment = screen.payment(object_id(posted.get("refund-payment_id")))
    if payment is None:
        raise HTTPException(404)
    return render(
        page,
        "front_desk/_refund_form.html",
        folio=screen.folio,
        screen=screen,
        refund=refund_form(screen, payment, posted),
        refund_payment=payment,
        directions=DIRECTIONS,
        currency=screen.currency,
    )


# --------------------------------------------------------------------------- charges


def _decimal(text: str) -> Decimal | None:
    cleaned = text.replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _quantity(sub: LineForm) -> int | None:
    value = _decimal(str(sub.quantity.data or "1"))
    milli = None if value is None else value * 1000
    if milli is None or milli != milli.to_integral_value() or not 0 < milli <= 10**9:
        sub.add_error("quantity", _("A quantity above zero with at most 3 decimals."))
        return None
    return int(milli)


def _sum(sub: LineForm, name: str, exponent: int) -> int | None:
    text = str(getattr(sub, name).data or "").strip()
    cleaned = text.replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        value = parse_amount(cleaned, exponent)
    except KopilkaError:
        value = -1
    if not 0 <= value <= MAX_ABS_MINOR:
        sub.add_error(name, _("Enter an amount of zero or more."))
        return None
    return value


def _line(sub: LineForm, exponent: int) -> folios.LineIn | bool | None:
    """A line as typed; ``False`` when it is left empty, ``None`` when it is wrong."""
    name = " ".join(str(sub.name.data or "").split())
    price_text = str(sub.price.data or "").strip()
    amount_text = str(sub.amount.data or "").strip()
    if not name and not price_text and not amount_text:
        return False
    quantity = _quantity(sub)
    price = _sum(sub, "price", exponent) if price_text else None
    amount = _sum(sub, "amount", exponent) if amount_text else None
    if not name:
        sub.add_error("name", _("Name what is charged."))
    if not price_text and not amount_text:
        sub.add_error("price", _("Enter a price or a sum."))
    if not name or quantity is None or (price_text and price is None):
        return None
    if (amount_text and amount is None) or (price is None and amount is None):
        return None
    if amount is None:
        assert price is not None
        amount = (price * quantity + 500) // 1000  # half a kopeck up, as tills do
    return folios.LineIn(name, amount, quantity, price)


def _read_lines(form: ChargeForm, exponent: int) -> list[folios.LineIn] | None:
    lines: list[folios.LineIn] = []
    wrong = False
    for entry in form.lines.entries:
        line = _line(entry.form, exponent)
        if line is None:
            wrong = True
        elif line is not False:
            assert isinstance(line, folios.LineIn)
            lines.append(line)
    if not lines and not wrong:
        form.lines.entries[0].form.add_error("name", _("Enter at least one line."))
        return None
    return None if wrong else lines


@router.post(FOLIO + "/charges")
def folio_charge(page: DeskPage, folio_id: int, posted: Posted) -> Response:
    screen = screen_of(page, folio_id)
    form = charge_form(screen, posted)
    if posted.get("charge-add_line"):
        form.lines.append_entry()
        return folio_page(page, screen, Forms(charge=form, opened="charge"))
    valid = form.validate()
    lines = _read_lines(form, screen.folio.exponent)
    payer = object_id(form.payer_guest_id.data)
    if valid and lines is not None and not form.has_errors:

        def work(conn: Connection) -> folios.InvoiceView:
            invoice = folios.charge(
                conn,
                tenant_id=page.tenant.id,
                folio_id=folio_id,
                kind=str(form.kind.data or ""),
                description=str(form.description.data or ""),
                lines=lines,
                operation_id=_operation(form),
                actor=page.actor,
                payer_guest_id=payer,
            )
            message = (
                _("This charge was made already: the form was sent twice.")
                if invoice.replayed
                else _("Invoice No. %(number)s is charged.", number=invoice.id)
            )
            page.flash_next(conn, "info" if invoice.replayed else "success", message)
            return invoice

        if save(page, form, work, CHARGE_FIELDS) is not None:
            return redirect(_back(folio_id), page.request)
    return folio_page(page, screen, Forms(charge=form, opened="charge"), status_code=422)


@router.post(FOLIO + "/invoices/{invoice_id:int}/void")
def folio_void(page: DeskPage, folio_id: int, invoice_id: int) -> Response:
    screen = screen_of(page, folio_id)
    if not any(i.id == invoice_id for i in screen.folio.invoices):
        raise HTTPException(404)

    def work(conn: Connection) -> None:
        folios.void_invoice(conn, tenant_id=page.tenant.id, invoice_id=invoice_id, actor=page.actor)
        page.flash_next(conn, "success", _("Invoice No. %(number)s is void.", number=invoice_id))

    try:
        run_transaction(page.engine, work)
    except KopilkaError as error:
        flash_now(page, "error", refusal_text(error, page.tenant.currency))
    return redirect(_back(folio_id), page.request)


# --------------------------------------------------------------------------- payments


def _receipt_ask(form: ReceiptFields) -> tuple[bool, ReceiptAsk | None]:
    """The receipt asked for by the form (``None``: no receipt); ``False`` if wrong."""
    if not form.print_receipt.data:
        return True, None
    register_id = object_id(form.register_id.data)
    if register_id is None:
        form.add_error("register_id", _("Choose a cash register from the list."))
        return False, None
    email = str(form.receipt_email.data or "").strip() or None
    phone = str(form.receipt_phone.data or "").strip() or None
    return True, ReceiptAsk(register_id, email, phone)


def _flash_receipt(page: Page, receipt: fiscal.ReceiptView | None) -> None:
    if receipt is None:
        return
    if receipt.status == fiscal.FAILED:
        flash_now(
            page,
            "warning",
            _(
                "The register refused the receipt: %(error)s. The payment stands; "
                "retry the receipt from the folio.",
                error=receipt.last_error or "",
            ),
        )
    elif receipt.status == fiscal.DONE:
        flash_now(page, "success", _("The receipt is registered."))
    elif receipt.status == fiscal.WAIT:
        flash_now(page, "info", _("The register has the receipt and is registering it."))
    else:
        flash_now(
            page,
            "warning",
            _("The register did not answer; the receipt will be sent again by itself."),
        )


def _chosen_id(form: WebForm, name: str, *, optional: bool = False) -> tuple[bool, int | None]:
    value = str(getattr(form, name).data or "").strip()
    if optional and not value:
        return True, None
    found = object_id(value)
    if found is None:
        form.add_error(name, _("Choose from the list."))
        return False, None
    return True, found


@router.post(FOLIO + "/payments")
def folio_pay(page: DeskPage, folio_id: int, posted: Posted) -> Response:
    screen = screen_of(page, folio_id)
    form = pay_form(screen, posted)
    valid = form.validate()
    exponent = screen.folio.exponent
    amount = read_money(form, "amount", exponent) if form.amount.data else None
    ok_type, type_id = _chosen_id(form, "payment_type_id")
    ok_invoice, invoice_id = _chosen_id(form, "invoice_id", optional=True)
    ok_receipt, ask = _receipt_ask(form)
    ready = valid and ok_type and ok_invoice and ok_receipt and amount is not None
    if ready and not form.has_errors:
        assert type_id is not None and amount is not None
        t = page.tenant.id

        def work(conn: Connection) -> tuple[folios.PaymentView, Any]:
            payment = folios.pay(
                conn,
                tenant_id=t,
                folio_id=folio_id,
                payment_type_id=type_id,
                amount_minor=amount,
                operation_id=_operation(form),
                actor=page.actor,
                invoice_id=invoice_id,
                payer=str(form.payer.data or ""),
                certificate=str(form.certificate.data or "").strip() or None,
            )
            receipt = hotel_receipts.for_payment(conn, t, payment, ask, page.actor)
            _flash_paid(page, conn, payment.replayed, payment.amount_minor, screen)
            return payment, receipt

        done = save(page, form, work, PAY_FIELDS)
        if done is not None:
            payment, receipt = done
            if not payment.replayed and receipt is not None:
                _flash_receipt(page, hotel_receipts.send_now(page.engine, t, receipt))
            return redirect(_back(folio_id), page.request)
    return folio_page(page, screen, Forms(pay=form, opened="pay"), status_code=422)


def _flash_paid(
    page: Page, conn: Connection, replayed: bool, amount_minor: int, screen: Screen
) -> None:
    if replayed:
        page.flash_next(conn, "info", _("This payment was taken already: the form was sent twice."))
        return
    amount = i18n.format_money(amount_minor, screen.folio.currency, screen.folio.exponent)
    page.flash_next(conn, "success", _("A payment of %(amount)s is taken.", amount=amount))


@router.post(FOLIO + "/refunds")
def folio_refund(page: DeskPage, folio_id: int, posted: Posted) -> Response:
    screen = screen_of(page, folio_id)
    payment = screen.payment(object_id(posted.get("refund-payment_id")))
    if payment is None:
        raise HTTPException(404)
    form = refund_form(screen, payment, posted)
    valid = form.validate()
    exponent = screen.folio.exponent
    amount = read_money(form, "amount", exponent) if form.amount.data else None
    ok_type, type_id = _chosen_id(form, "payment_type_id")
    ok_receipt, ask = _receipt_ask(form)
    if valid and ok_type and ok_receipt and amount is not None and not form.has_errors:
        assert type_id is not None
        t = page.tenant.id

        def work(conn: Connection) -> tuple[folios.RefundView, Any]:
            give_back = None
            if payment.provider_ref is not None:
                provider = points.tenant_provider(conn, t, page.actor)
                give_back = points.points_back(provider, payment.provider_ref, t)
            done = folios.refund(
                conn,
                tenant_id=t,
                folio_id=folio_id,
                payment_id=payment.id,
                amount_minor=amount,
                payment_type_id=type_id,
                direction=str(form.direction.data or ""),
                operation_id=_operation(form),
                actor=page.actor,
                reason=str(form.reason.data or ""),
                points_back=give_back,
            )
            receipt = hotel_receipts.for_refund(conn, t, done, ask, page.actor)
            if done.replayed:
                message = _("This refund was made already: the form was sent twice.")
            else:
                message = _(
                    "A refund of %(amount)s is made.",
                    amount=i18n.format_money(done.amount_minor, screen.folio.currency, exponent),
                )
            page.flash_next(conn, "info" if done.replayed else "success", message)
            return done, receipt

        made = save(page, form, work, REFUND_FIELDS)
        if made is not None:
            done, receipt = made
            if not done.replayed and receipt is not None:
                _flash_receipt(page, hotel_receipts.send_now(page.engine, t, receipt))
            return redirect(_back(folio_id), page.request)
    forms = Forms(refund=form, opened="refund")
    return folio_page(page, screen, forms, status_code=422, refund_id=payment.id)


# --------------------------------------------------------------------------- points


@router.post(FOLIO + "/points")
def folio_pay_with_points(page: DeskPage, folio_id: int, posted: Posted) -> Response:
    """Seed 000's steps 5 and 6: the points written off, their worth paid on the folio."""
    screen = screen_of(page, folio_id)
    form = points_form("", posted)
    card = " ".join(str(form.card.data or "").split())[:64]
    valid = form.validate()
    ok_type, type_id = _chosen_id(form, "payment_type_id")
    points_minor: int | None = None
    unit: UnitView | None = None
    if ok_type and type_id is not None and form.points.data:
        with read_only(page.engine) as conn:
            try:
                payment_type = get_payment_type(conn, page.tenant.id, type_id)
            except NotFound:
                payment_type = None
        if payment_type is None or payment_type.unit is None:
            form.add_error("payment_type_id", refusal_text(_not_points(), page.tenant.currency))
        else:
            unit = payment_type.unit
            points_minor = read_money(form, "points", unit.exponent)
    if not card:
        form.add_error("", _("Enter the card's number and ask for its balances."))
    if valid and points_minor is not None and card and not form.has_errors:
        assert type_id is not None
        t = page.tenant.id
        operation = _operation(form)

        def work(conn: Connection) -> folios.PaymentView:
            provider = points.tenant_provider(conn, t, page.actor)
            payment = points.pay_with_points(
                conn,
                tenant_id=t,
                folio_id=folio_id,
                payment_type_id=type_id,
                card_number=card,
                points_minor=points_minor,
                operation_id=operation,
                provider=provider,
                actor=page.actor,
            )
            _flash_paid(page, conn, payment.replayed, payment.amount_minor, screen)
            return payment

        try:
            points.with_points_undo(page.engine, t, page.actor, operation, work)
        except KopilkaError as error:
            if not_found(error):
                raise HTTPException(404) from error
            if error.code == E.POINTS_ABOVE_CAP and unit is not None:
                form.add_error("points", _cap_text(error, unit))
            else:
                refuse(form, error, POINTS_FIELDS, page.tenant.currency)
        else:
            return redirect(_back(folio_id), page.request)
    screen = screen_of(page, folio_id)
    forms = Forms(points=form, card=card, opened="points")
    return folio_page(page, screen, forms, status_code=422)


def _cap_text(error: KopilkaError, unit: UnitView) -> str:
    """Seed 000: "more than may be spent", with the cap in the unit's own words."""
    try:
        cap = parse_amount(str(error.params.get("cap", "")), unit.exponent)
    except KopilkaError:
        return refusal_text(error, "")
    return _("At most %(points)s may be spent on this folio now.", points=money(cap, unit))


def _not_points() -> KopilkaError:
    return KopilkaError(E.PAYMENT_TYPE_NOT_USABLE, "not a points payment type")


# --------------------------------------------------------------------------- receipts


@router.post(FOLIO + "/receipts/{receipt_id:int}/retry")
def folio_receipt_retry(page: DeskPage, folio_id: int, receipt_id: int) -> Response:
    """Retry a receipt of this folio's payments or refunds (H-6): sent at once."""
    screen = screen_of(page, folio_id)
    if receipt_id not in screen.receipt_ids():
        raise HTTPException(404)
    try:
        after = fiscal.retry_and_send(page.engine, page.tenant.id, receipt_id, page.actor)
    except KopilkaError as error:
        flash_now(page, "error", refusal_text(error, page.tenant.currency))
    else:
        _flash_receipt(page, after)
    return redirect(_back(folio_id), page.request)
