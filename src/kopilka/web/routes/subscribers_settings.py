"""The Settings tab "Subscribers" (SPEC S-1, S-3 … S-6; seed 003): owners and
administrators set up the tariffs, the promised payment services and the operator's
option.

* A **tariff**: its price and charge method, "new subscribers get n days to pay (on
  activation)", and on its options tab the five promised payment rules of S-4 in the
  seed's words (with none set, the next promised payment comes a month after the last).
* A **promised payment service** (seed 003 "Услуги/Бонусы → Обещанный платеж"): the
  amount (0: calculated automatically), "switch off after n days", the connection price,
  the commission in %, the charge method (daily or monthly), "may be ordered in the
  cabinet", "activated after the first session", and the tariffs it is for.
* The operator's "promised payment only while blocked for debt" (S-5).

Every write is one transaction through ``kopilka.subscribers.tariffs``; a refusal lands
next to its field in the user's language, what was typed kept, and writes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.exceptions import HTTPException
from wtforms import BooleanField, SelectChoice, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length

from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput, KopilkaError
from kopilka.core.money import currency_exponent
from kopilka.subscribers import tariffs as st
from kopilka.subscribers.common import DAILY, MONTHLY
from kopilka.subscribers.error_codes import SubscriberErrorCode as E
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, render, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.front_desk import Posted, currency_of, object_id, typed
from kopilka.web.routes.settings import TABS
from kopilka.web.routes.subscribers import (
    METHOD_NAMES,
    commission_message,
    read_amount,
    read_count,
    save,
)

router = APIRouter(include_in_schema=False)

SettingsPage = Annotated[Page, Depends(require("settings.subscribers"))]
HOME = "/settings/subscribers"
TAB = "subscribers"

_TARIFF_METHODS = [SelectChoice(k, v) for k, v in METHOD_NAMES.items()]
_SERVICE_METHODS = [SelectChoice(k, METHOD_NAMES[k]) for k in st.SERVICE_METHODS]


class TariffForm(WebForm):
    name = StringField(
        lazy("Name"),
        validators=[DataRequired(), Length(max=st.MAX_NAME)],
        render_kw={"maxlength": st.MAX_NAME},
    )
    price = StringField(
        lazy("Price"), validators=[DataRequired()], render_kw={"inputmode": "decimal"}
    )
    charge_method = SelectField(
        lazy("Charge method"), choices=_TARIFF_METHODS, default=MONTHLY, validate_choice=False
    )
    grace_days = StringField(
        lazy("New subscribers get n days to pay (on activation)"),
        default="0",
        render_kw={"inputmode": "numeric"},
    )
    pp_requires_topup = BooleanField(lazy("A top-up since the previous promised payment"))
    pp_once_a_month = BooleanField(lazy("Allow a promised payment only once in the current month"))
    pp_payment_within_days = StringField(
        lazy("The last real payment no older than n days"), render_kw={"inputmode": "numeric"}
    )
    pp_charge_within_days = StringField(
        lazy("The last non-zero charge no older than n days"), render_kw={"inputmode": "numeric"}
    )
    pp_max_per_month = StringField(
        lazy("Maximum number of promised payments a month"), render_kw={"inputmode": "numeric"}
    )
    is_active = BooleanField(lazy("Switched on: may be used"), default=True)


class ServiceForm(WebForm):
    name = StringField(
        lazy("Name"),
        validators=[DataRequired(), Length(max=st.MAX_NAME)],
        render_kw={"maxlength": st.MAX_NAME},
    )
    amount = StringField(
        lazy("Promised payment amount"), default="0", render_kw={"inputmode": "decimal"}
    )
    days = StringField(
        lazy("Switch off after n days"),
        validators=[DataRequired()],
        render_kw={"inputmode": "numeric"},
    )
    connection_price = StringField(
        lazy("Connection price of the service"), default="0", render_kw={"inputmode": "decimal"}
    )
    commission = StringField(
        lazy("Promised payment commission, %"), default="0", render_kw={"inputmode": "decimal"}
    )
    charge_method = SelectField(
        lazy("Charge method"), choices=_SERVICE_METHODS, default=DAILY, validate_choice=False
    )
    self_service = BooleanField(lazy("May be ordered in the self-service cabinet"))
    on_first_session = BooleanField(lazy("Activated after the first session"))
    tariff_ids = SelectMultipleField(lazy("Only for the tariffs"), validate_choice=False)
    is_active = BooleanField(lazy("Switched on: may be taken"), default=True)


class OperatorForm(WebForm):
    pp_only_when_blocked = BooleanField(
        lazy("A promised payment is available only while the subscriber is blocked for debt")
    )


TARIFF_FIELDS: dict[str, str] = {
    E.TARIFF_EXISTS: "name",
    "name": "name",
    "price": "price",
    "charge_method": "charge_method",
    "grace_days": "grace_days",
    "pp_payment_within_days": "pp_payment_within_days",
    "pp_charge_within_days": "pp_charge_within_days",
    "pp_max_per_month": "pp_max_per_month",
}
SERVICE_FIELDS: dict[str, str] = {
    E.SERVICE_EXISTS: "name",
    E.INVALID_COMMISSION: "commission",
    E.TARIFF_NOT_FOUND: "tariff_ids",
    "name": "name",
    "amount": "amount",
    "days": "days",
    "connection_price": "connection_price",
    "charge_method": "charge_method",
}


# --------------------------------------------------------------------------- the tab


def _show(page: Page, template: str, *, status_code: int = 200, **context: Any) -> Response:
    tabs = [(key, label, href) for key, permission, href, label in TABS if page.can(permission)]
    return render(
        page,
        f"subscribers/{template}",
        status_code=status_code,
        active_section="settings",
        tabs=tabs,
        tab=TAB,
        currency=currency_of(page),
        method_names=METHOD_NAMES,
        percent=lambda bp: i18n.format_number(bp, 2) + "\u00a0%",
        **context,
    )


def _home(page: Page, operator: OperatorForm | None = None, status_code: int = 200) -> Response:
    with read_only(page.engine) as conn:
        tariff_list = st.list_tariffs(conn, page.tenant.id)
        services = st.list_services(conn, page.tenant.id)
        settings = st.get_settings(conn, page.tenant.id)
    form = operator or OperatorForm(pp_only_when_blocked=settings.pp_only_when_blocked)
    return _show(
        page,
        "settings.html",
        status_code=status_code,
        tariffs=tariff_list,
        tariff_names={t.id: t.name for t in tariff_list},
        services=services,
        operator=form,
    )


@router.get(HOME)
def subscribers_settings(page: SettingsPage) -> Response:
    return _home(page)


@router.post(HOME + "/operator")
def operator_save(page: SettingsPage, posted: Posted) -> Response:
    form = OperatorForm(posted)

    def work(conn: Connection) -> st.Settings:
        done = st.update_settings(
            conn,
            tenant_id=page.tenant.id,
            pp_only_when_blocked=bool(form.pp_only_when_blocked.data),
            actor=page.actor,
        )
        page.flash_next(conn, "success", _("The operator's options are saved."))
        return done

    if save(page, form, work, {}) is not None:
        return redirect(HOME, page.request)
    return _home(page, form, 422)


# --------------------------------------------------------------------------- tariffs


def _tariff_data(form: TariffForm, exponent: int) -> st.TariffIn | None:
    """The tariff as typed, or ``None`` with the errors by their fields."""
    valid = form.validate()
    price = read_amount(form, "price", exponent)
    method = str(form.charge_method.data or "")
    if method not in st.TARIFF_METHODS:
        form.add_error("charge_method", _("Choose a charge method from the list."))
    ok_grace, grace = read_count(form, "grace_days", 0, st.MAX_DAYS)
    ok_pay, pay_days = read_count(
        form, "pp_payment_within_days", 1, st.MAX_RULE_DAYS, optional=True
    )
    ok_charge, charge_days = read_count(
        form, "pp_charge_within_days", 1, st.MAX_RULE_DAYS, optional=True
    )
    ok_max, per_month = read_count(form, "pp_max_per_month", 0, st.MAX_PER_MONTH, optional=True)
    if not (valid and ok_grace and ok_pay and ok_charge and ok_max) or form.has_errors:
        return None
    assert price is not None and grace is not None
    return st.TariffIn(
        name=str(form.name.data or ""),
        price_minor=price,
        charge_method=method,
        grace_days=grace,
        pp_requires_topup=bool(form.pp_requires_topup.data),
        pp_once_a_month=bool(form.pp_once_a_month.data),
        pp_payment_within_days=pay_days,
        pp_charge_within_days=charge_days,
        pp_max_per_month=per_month,
        is_active=bool(form.is_active.data),
    )


def _tariff_page(
    page: Page, form: TariffForm, target: st.TariffView | None = None, status_code: int = 200
) -> Response:
    return _show(page, "tariff.html", status_code=status_code, form=form, target=target)


def _tariff(page: Page, tariff_id: int) -> st.TariffView:
    with read_only(page.engine) as conn:
        try:
            return st.get_tariff(conn, page.tenant.id, tariff_id)
        except KopilkaError as error:
            raise HTTPException(404) from error


@router.get(HOME + "/tariffs/new")
def tariff_new(page: SettingsPage) -> Response:
    return _tariff_page(page, TariffForm())


@router.post(HOME + "/tariffs/new")
def tariff_create(page: SettingsPage, posted: Posted) -> Response:
    form = TariffForm(posted)
    data = _tariff_data(form, currency_exponent(page.tenant.currency))
    if data is not None:

        def work(conn: Connection) -> st.TariffView:
            made = st.create_tariff(conn, tenant_id=page.tenant.id, data=data, actor=page.actor)
            page.flash_next(conn, "success", _("Tariff “%(name)s” is added.", name=made.name))
            return made

        if save(page, form, work, TARIFF_FIELDS) is not None:
            return redirect(HOME, page.request)
    return _tariff_page(page, form, status_code=422)


@router.get(HOME + "/tariffs/{tariff_id:int}")
def tariff_edit(page: SettingsPage, tariff_id: int) -> Response:
    target = _tariff(page, tariff_id)
    exponent = currency_exponent(page.tenant.currency)

    def days(value: int | None) -> str:
        return "" if value is None else str(value)

    form = TariffForm(
        name=target.name,
        price=typed(target.price_minor, exponent),
        charge_method=target.charge_method,
        grace_days=str(target.grace_days),
        pp_requires_topup=target.pp_requires_topup,
        pp_once_a_month=target.pp_once_a_month,
        pp_payment_within_days=days(target.pp_payment_within_days),
        pp_charge_within_days=days(target.pp_charge_within_days),
        pp_max_per_month=days(target.pp_max_per_month),
        is_active=target.is_active,
    )
    return _tariff_page(page, form, target)


@router.post(HOME + "/tariffs/{tariff_id:int}")
def tariff_update(page: SettingsPage, tariff_id: int, posted: Posted) -> Response:
    target = _tariff(page, tariff_id)
    form = TariffForm(posted)
    data = _tariff_data(form, currency_exponent(page.tenant.currency))
    if data is not None:

        def work(conn: Connection) -> st.TariffView:
            done = st.update_tariff(
                conn, tenant_id=page.tenant.id, tariff_id=tariff_id, data=data, actor=page.actor
            )
            page.flash_next(conn, "success", _("Tariff “%(name)s” is saved.", name=done.name))
            return done

        if save(page, form, work, TARIFF_FIELDS) is not None:
            return redirect(HOME, page.request)
    return _tariff_page(page, form, target, 422)


# --------------------------------------------------------------------------- services


def _service_form(page: Page, data: Any = None, **values: Any) -> ServiceForm:
    with read_only(page.engine) as conn:
        found = st.list_tariffs(conn, page.tenant.id)
    form = ServiceForm(data, **values)
    form.tariff_ids.choices = [SelectChoice(str(t.id), t.name) for t in found]
    return form


def _commission(form: ServiceForm) -> int | None:
    """The commission typed as ``1`` or ``2,5`` (``%`` allowed) in hundredths of a %."""
    text = str(form.commission.data or "").strip().rstrip("%").strip()
    text = text.replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        return st.commission_bp_of(text or "0")
    except InvalidInput:
        form.add_error("commission", commission_message())
        return None


def _tariff_ids(form: ServiceForm) -> tuple[int, ...] | None:
    chosen = [object_id(value) for value in form.tariff_ids.data or []]
    if any(x is None for x in chosen):
        form.add_error("tariff_ids", _("Choose a tariff from the list."))
        return None
    return tuple(sorted({x for x in chosen if x is not None}))


def _service_data(form: ServiceForm, exponent: int) -> st.ServiceIn | None:
    """The service as typed, or ``None`` with the errors by their fields."""
    valid = form.validate()
    amount = read_amount(form, "amount", exponent)
    connection = read_amount(form, "connection_price", exponent)
    ok_days, days = read_count(form, "days", 1, st.MAX_DAYS) if form.days.data else (False, None)
    commission = _commission(form)
    method = str(form.charge_method.data or "")
    if method not in st.SERVICE_METHODS:
        form.add_error("charge_method", _("Choose a charge method from the list."))
    chosen = _tariff_ids(form)
    if not (valid and ok_days) or form.has_errors:
        return None
    assert amount is not None and connection is not None and days is not None
    assert commission is not None and chosen is not None
    return st.ServiceIn(
        name=str(form.name.data or ""),
        amount_minor=amount,
        days=days,
        charge_method=method,
        connection_price_minor=connection,
        commission_bp=commission,
        self_service=bool(form.self_service.data),
        on_first_session=bool(form.on_first_session.data),
        is_active=bool(form.is_active.data),
        tariff_ids=chosen,
    )


def _service_page(
    page: Page, form: ServiceForm, target: st.ServiceView | None = None, status_code: int = 200
) -> Response:
    return _show(page, "service.html", status_code=status_code, form=form, target=target)


def _service(page: Page, service_id: int) -> st.ServiceView:
    with read_only(page.engine) as conn:
        try:
            return st.get_service(conn, page.tenant.id, service_id)
        except KopilkaError as error:
            raise HTTPException(404) from error


@router.get(HOME + "/services/new")
def service_new(page: SettingsPage) -> Response:
    return _service_page(page, _service_form(page))


@router.post(HOME + "/services/new")
def service_create(page: SettingsPage, posted: Posted) -> Response:
    form = _service_form(page, posted)
    data = _service_data(form, currency_exponent(page.tenant.currency))
    if data is not None:

        def work(conn: Connection) -> st.ServiceView:
            made = st.create_service(conn, tenant_id=page.tenant.id, data=data, actor=page.actor)
            page.flash_next(
                conn, "success", _("Promised payment service “%(name)s” is added.", name=made.name)
            )
            return made

        if save(page, form, work, SERVICE_FIELDS) is not None:
            return redirect(HOME, page.request)
    return _service_page(page, form, status_code=422)


@router.get(HOME + "/services/{service_id:int}")
def service_edit(page: SettingsPage, service_id: int) -> Response:
    target = _service(page, service_id)
    exponent = currency_exponent(page.tenant.currency)
    form = _service_form(
        page,
        name=target.name,
        amount=typed(target.amount_minor, exponent) if target.amount_minor else "0",
        days=str(target.days),
        connection_price=typed(target.connection_price_minor, exponent)
        if target.connection_price_minor
        else "0",
        commission=typed(target.commission_bp, 2) if target.commission_bp else "0",
        charge_method=target.charge_method,
        self_service=target.self_service,
        on_first_session=target.on_first_session,
        tariff_ids=[str(x) for x in target.tariff_ids],
        is_active=target.is_active,
    )
    return _service_page(page, form, target)


@router.post(HOME + "/services/{service_id:int}")
def service_update(page: SettingsPage, service_id: int, posted: Posted) -> Response:
    target = _service(page, service_id)
    form = _service_form(page, posted)
    data = _service_data(form, currency_exponent(page.tenant.currency))
    if data is not None:

        def work(conn: Connection) -> st.ServiceView:
            done = st.update_service(
                conn, tenant_id=page.tenant.id, service_id=service_id, data=data, actor=page.actor
            )
            page.flash_next(
                conn, "success", _("Promised payment service “%(name)s” is saved.", name=done.name)
            )
            return done

        if save(page, form, work, SERVICE_FIELDS) is not None:
            return redirect(HOME, page.request)
    return _service_page(page, form, target, 422)
