"""Subscriber accounts and promised payments over HTTP (SPEC S-1 … S-7, seed 003).

Who may call what (``kopilka.tenancy.roles``):

* owners and administrators: tariffs, promised payment services and the operator's
  options (``settings.subscribers``); a subscriber's credit terms (``subscribers.manage``):
  registration, threshold, tariff, switching off and on, promised payments with the
  tariff's rules set aside;
* the desk (``subscribers``: owners, administrators, cashiers, front desk): finds and
  reads subscribers, edits their contacts and cabinet password, activates them by hand,
  takes their top-ups and promised payments;
* terminals: the network reports a subscriber's session (``POST /sessions``, which
  activates a new subscriber, S-6), a payment kiosk or bank gateway posts top-ups.

Amounts are decimal strings in the tenant's currency; a threshold is zero or below
(``"-300.00"``: the service stops below minus 300); a commission is per cent with at most
two decimals (``"2.5"``). Top-ups and promised payments take an ``Idempotency-Key``,
which is the domain's operation id: the same key and body again answers as the first
time (``Idempotent-Replayed: true``), the same key with another body is 409
``subscriber_operation_conflict``. Each request is one transaction: a refusal leaves
nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine

from kopilka.api.deps import (
    MAX_ID,
    EngineDep,
    IdempotencyKey,
    PageDep,
    Principal,
    encode_cursor,
    require_roles,
)
from kopilka.api.problems import ApiErrorCode, problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.routes.transfers import REPLAYED_HEADER
from kopilka.core.db import read_only
from kopilka.core.errors import CommonErrorCode, Forbidden, InvalidInput
from kopilka.core.money import format_amount, parse_amount
from kopilka.ledger.posting import run_transaction
from kopilka.payments.types import format_percent
from kopilka.subscribers import billing, promised, registry, tariffs
from kopilka.subscribers.common import calendar_of
from kopilka.subscribers.error_codes import SubscriberErrorCode as E
from kopilka.tenancy.roles import PERMISSIONS

router = APIRouter(prefix=f"{API_PREFIX}/subscribers", tags=["subscribers"])
DeskPrincipal = Annotated[Principal, Depends(require_roles(*sorted(PERMISSIONS["subscribers"])))]
# A subscriber's credit terms: registration, threshold, tariff, off and on, rules aside.
ManagerPrincipal = Annotated[
    Principal, Depends(require_roles(*sorted(PERMISSIONS["subscribers.manage"])))
]
# Tariffs, promised payment services, the operator's options.
SettingsPrincipal = Annotated[
    Principal, Depends(require_roles(*sorted(PERMISSIONS["settings.subscribers"])))
]
# The network's side (its RADIUS/NAS integration, a payment kiosk, a bank gateway) is a
# terminal with its key; the desk may do the same by hand.
NetworkPrincipal = Annotated[
    Principal, Depends(require_roles(*sorted(PERMISSIONS["subscribers"]), "terminal"))
]
ObjectId = Annotated[int, Path(ge=1, le=MAX_ID)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Amount = Annotated[str, Field(min_length=1, max_length=40, examples=["600.00"])]
Percent = Annotated[
    str,
    Field(
        min_length=1,
        max_length=12,
        description="per cent of the amount, 0 to 100, at most 2 decimals",
        examples=["1", "2.5"],
    ),
]
AccountNo = Annotated[
    str, Field(min_length=1, max_length=64, description="the contract number", examples=["A-1001"])
]
Status = Literal["new", "active", "blocked", "disabled"]
# A page of history is read from its start (the lines come from four tables, newest
# first), so how deep a cursor may reach is bounded.
MAX_HISTORY_DEPTH = 10_000
T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _write(engine: Engine, work: Callable[[Connection], T]) -> T:
    return run_transaction(engine, work)


def _replied(response: Response, replayed: bool) -> None:
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
        response.status_code = status.HTTP_200_OK


def _currency(conn: Connection, tenant_id: int) -> tuple[str, int]:
    cal = calendar_of(conn, tenant_id)
    return cal.currency, cal.exponent


def _money(conn: Connection, tenant_id: int, text: str, *, positive: bool = False) -> int:
    currency, exponent = _currency(conn, tenant_id)
    return parse_amount(text, exponent, unit_code=currency, positive=positive)


def _limit_of_threshold(conn: Connection, tenant_id: int, text: str) -> int:
    """A threshold (``"-300.00"``, zero or below) as the account's credit limit (30000)."""
    threshold = _money(conn, tenant_id, text)
    if threshold > 0:
        raise InvalidInput(
            E.INVALID_SUBSCRIBER_INPUT,
            f"the threshold is zero or below (the balance below which service stops), not {text!r}",
            field="threshold",
        )
    return -threshold


# --------------------------------------------------------------------------- shapes


class TariffIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    price: Amount = Field(description="per period (a day, a month) or once")
    charge_method: Literal["daily", "monthly", "one_time"]
    grace_days: int = Field(default=0, description="new subscribers get n days to pay (S-6)")
    pp_requires_topup: bool = Field(
        default=False, description="S-4 (a): a top-up since the previous promised payment"
    )
    pp_once_a_month: bool = Field(
        default=False, description="S-4 (b): one promised payment per calendar month"
    )
    pp_payment_within_days: int | None = Field(
        default=None, description="S-4 (c): a payment within the last n days"
    )
    pp_charge_within_days: int | None = Field(
        default=None, description="S-4 (d): a non-zero charge within the last n days"
    )
    pp_max_per_month: int | None = Field(
        default=None, description="S-4 (e): at most N promised payments per calendar month"
    )
    is_active: bool = True


class TariffOut(Strict):
    id: int
    name: str
    price: str
    currency: str
    charge_method: Literal["daily", "monthly", "one_time"]
    grace_days: int
    pp_requires_topup: bool
    pp_once_a_month: bool
    pp_payment_within_days: int | None
    pp_charge_within_days: int | None
    pp_max_per_month: int | None
    is_active: bool


class TariffList(Strict):
    items: list[TariffOut]


class ServiceIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    amount: Amount = Field(description='how much the threshold goes down; "0": what is needed')
    days: int = Field(description="switch off after n days")
    connection_price: Amount = Field(default="0", description="charged when taken")
    commission_percent: Percent = Field(
        default="0", description="of a fixed amount, charged after the end"
    )
    charge_method: Literal["daily", "monthly"] = Field(
        description="daily: the commission for each day used; monthly: once"
    )
    self_service: bool = Field(default=False, description="may be ordered in the cabinet")
    on_first_session: bool = Field(
        default=False, description="given when the subscriber is activated (S-6)"
    )
    tariff_ids: list[Id] = Field(
        default_factory=list, max_length=1000, description="only these tariffs; none: every one"
    )
    is_active: bool = True


class ServiceOut(Strict):
    id: int
    name: str
    amount: str
    is_auto: bool = Field(description="the amount is what is needed, worked out when taken")
    days: int
    connection_price: str
    commission_percent: str
    currency: str
    charge_method: Literal["daily", "monthly"]
    self_service: bool
    on_first_session: bool
    tariff_ids: list[int]
    is_active: bool


class ServiceList(Strict):
    items: list[ServiceOut]


class SettingsIn(Strict):
    pp_only_when_blocked: bool = Field(
        description="a promised payment only while the subscriber is blocked for debt (S-5)"
    )


class SettingsOut(Strict):
    pp_only_when_blocked: bool


class TariffRef(Strict):
    id: int
    name: str


class PromisedOut(Strict):
    id: int
    subscriber_id: int
    service_id: int | None = Field(description="none: the tariff's grace for new subscribers")
    service_name: str | None
    source: Literal["staff", "cabinet", "first_session", "grace"]
    amount: str = Field(description="by how much the threshold went down")
    is_auto: bool
    days: int
    connection_price: str
    commission_percent: str
    charge_method: str
    currency: str
    taken_at: datetime
    ends_at: datetime
    status: Literal["active", "ended", "repaid"]
    ended_at: datetime | None
    commission: str | None = Field(description="charged when it ended; none while active")


class PromisedList(Strict):
    items: list[PromisedOut]
    next_cursor: str | None


class SubscriberOut(Strict):
    id: int
    account_no: str
    full_name: str
    phone: str | None
    email: str | None
    status: Status
    tariff: TariffRef
    currency: str
    balance: str
    threshold: str = Field(description="now, promised payments included: service stops below")
    base_threshold: str = Field(description="as the staff set it")
    available: str = Field(description="what may still be charged before the threshold")
    activated_at: datetime | None
    next_charge_on: date | None = Field(description="the first day not yet charged for")
    has_password: bool
    created_at: datetime


class SubscriberDetailOut(SubscriberOut):
    promised_payment: PromisedOut | None = Field(description="the active one, if any")


class SubscriberList(Strict):
    items: list[SubscriberOut]
    next_cursor: str | None


class SubscriberIn(Strict):
    account_no: AccountNo
    full_name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=254)
    tariff_id: Id
    threshold: Amount = Field(default="0", description='zero or below, e.g. "-300.00"')
    password: str | None = Field(default=None, max_length=200, description="for the cabinet")


class ContactsPatch(Strict):
    """Only the fields sent change; ``phone`` and ``email`` null clears them."""

    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=254)


class ThresholdIn(Strict):
    threshold: Amount = Field(description='zero or below, e.g. "-300.00"')


class TariffChangeIn(Strict):
    tariff_id: Id


class PasswordIn(Strict):
    password: str = Field(min_length=1, max_length=200)


class HistoryLineOut(Strict):
    at: datetime
    kind: Literal[
        "top_up",
        "tariff",
        "connection",
        "commission",
        "promised_taken",
        "promised_ended",
        "status",
    ]
    description: str
    amount: str | None = Field(description="money in (above zero) or out (below); else none")
    currency: str
    details: dict[str, Any]


class HistoryList(Strict):
    items: list[HistoryLineOut]
    next_cursor: str | None


class RefusalOut(Strict):
    code: str
    detail: str


class OfferOut(Strict):
    service_id: int
    service_name: str
    allowed: bool
    refusal: RefusalOut | None = Field(description="why it cannot be taken now")
    amount: str = Field(description="by how much the threshold would go down")
    is_auto: bool
    days: int
    connection_price: str
    commission_per_day: str | None = Field(description="daily charge method")
    commission_once: str | None = Field(description="monthly charge method")
    commission_max: str = Field(description="the most the commission can come to")
    currency: str
    ends_at: datetime


class OfferList(Strict):
    items: list[OfferOut]


class TakeIn(Strict):
    service_id: Id
    ignore_rules: bool = Field(
        default=False, description="set the tariff's S-4 rules aside (owners, administrators)"
    )


class TopUpIn(Strict):
    amount: Amount
    method: str = Field(default="", max_length=32, examples=["cash", "card", "kiosk"])


class GatewayTopUpIn(TopUpIn):
    account_no: AccountNo


class TopUpOut(Strict):
    id: int
    subscriber_id: int
    operation_id: str
    amount: str
    currency: str
    method: str
    paid_at: datetime
    transfer_id: int


class SessionIn(Strict):
    account_no: AccountNo


class SessionOut(Strict):
    subscriber_id: int
    account_no: str
    status: Status
    activated: bool = Field(description="this session activated the subscriber")
    activated_at: datetime | None


# --------------------------------------------------------------------------- conversion


def tariff_out(t: tariffs.TariffView, currency: str, exponent: int) -> TariffOut:
    return TariffOut(
        id=t.id,
        name=t.name,
        price=format_amount(t.price_minor, exponent),
        currency=currency,
        charge_method=t.charge_method,  # type: ignore[arg-type]
        grace_days=t.grace_days,
        pp_requires_topup=t.pp_requires_topup,
        pp_once_a_month=t.pp_once_a_month,
        pp_payment_within_days=t.pp_payment_within_days,
        pp_charge_within_days=t.pp_charge_within_days,
        pp_max_per_month=t.pp_max_per_month,
        is_active=t.is_active,
    )


def service_out(s: tariffs.ServiceView, currency: str, exponent: int) -> ServiceOut:
    return ServiceOut(
        id=s.id,
        name=s.name,
        amount=format_amount(s.amount_minor, exponent),
        is_auto=s.is_auto,
        days=s.days,
        connection_price=format_amount(s.connection_price_minor, exponent),
        commission_percent=format_percent(s.commission_bp),
        currency=currency,
        charge_method=s.charge_method,  # type: ignore[arg-type]
        self_service=s.self_service,
        on_first_session=s.on_first_session,
        tariff_ids=list(s.tariff_ids),
        is_active=s.is_active,
    )


def promised_out(p: promised.PromisedView, currency: str, exponent: int) -> PromisedOut:
    return PromisedOut(
        id=p.id,
        subscriber_id=p.subscriber_id,
        service_id=p.service_id,
        service_name=p.service_name,
        source=p.source,  # type: ignore[arg-type]
        amount=format_amount(p.amount_minor, exponent),
        is_auto=p.is_auto,
        days=p.days,
        connection_price=format_amount(p.connection_price_minor, exponent),
        commission_percent=format_percent(p.commission_bp),
        charge_method=p.charge_method,
        currency=currency,
        taken_at=p.taken_at,
        ends_at=p.ends_at,
        status=p.status,  # type: ignore[arg-type]
        ended_at=p.ended_at,
        commission=None
        if p.commission_minor is None
        else format_amount(p.commission_minor, exponent),
    )


def _subscriber_fields(s: registry.SubscriberView, currency: str, exponent: int) -> dict[str, Any]:
    return {
        "id": s.id,
        "account_no": s.account_no,
        "full_name": s.full_name,
        "phone": s.phone,
        "email": s.email,
        "status": s.status,
        "tariff": TariffRef(id=s.tariff_id, name=s.tariff_name),
        "currency": currency,
        "balance": format_amount(s.balance_minor, exponent),
        "threshold": format_amount(s.threshold_minor, exponent),
        "base_threshold": format_amount(s.base_threshold_minor, exponent),
        "available": format_amount(s.available_minor, exponent),
        "activated_at": s.activated_at,
        "next_charge_on": s.next_charge_on,
        "has_password": s.has_password,
        "created_at": s.created_at,
    }


def subscriber_detail(conn: Connection, tenant_id: int, subscriber_id: int) -> SubscriberDetailOut:
    """The subscriber as stored now, with the promised payment in force."""
    found = registry.get_subscriber(conn, tenant_id, subscriber_id)
    currency, exponent = _currency(conn, tenant_id)
    active = next(
        (p for p in promised.list_promised(conn, tenant_id, found.id) if p.status == "active"),
        None,
    )
    return SubscriberDetailOut(
        **_subscriber_fields(found, currency, exponent),
        promised_payment=None if active is None else promised_out(active, currency, exponent),
    )


def topup_out(t: billing.TopUpView, currency: str, exponent: int) -> TopUpOut:
    return TopUpOut(
        id=t.id,
        subscriber_id=t.subscriber_id,
        operation_id=t.operation_id,
        amount=format_amount(t.amount_minor, exponent),
        currency=currency,
        method=t.method,
        paid_at=t.paid_at,
        transfer_id=t.transfer_id,
    )


def _details_out(details: dict[str, Any], exponent: int) -> dict[str, Any]:
    """A history line's details with amounts in minor units as decimal strings
    (``amount_minor`` 60000 -> ``amount`` "600.00")."""
    out: dict[str, Any] = {}
    for name, value in details.items():
        if name.endswith("_minor"):
            out[name.removesuffix("_minor")] = (
                None if value is None else format_amount(int(value), exponent)
            )
        else:
            out[name] = value
    return out


def _tariff_in(conn: Connection, tenant_id: int, body: TariffIn) -> tariffs.TariffIn:
    return tariffs.TariffIn(
        name=body.name,
        price_minor=_money(conn, tenant_id, body.price),
        charge_method=body.charge_method,
        grace_days=body.grace_days,
        pp_requires_topup=body.pp_requires_topup,
        pp_once_a_month=body.pp_once_a_month,
        pp_payment_within_days=body.pp_payment_within_days,
        pp_charge_within_days=body.pp_charge_within_days,
        pp_max_per_month=body.pp_max_per_month,
        is_active=body.is_active,
    )


def _service_in(conn: Connection, tenant_id: int, body: ServiceIn) -> tariffs.ServiceIn:
    return tariffs.ServiceIn(
        name=body.name,
        amount_minor=_money(conn, tenant_id, body.amount),
        days=body.days,
        charge_method=body.charge_method,
        connection_price_minor=_money(conn, tenant_id, body.connection_price),
        commission_bp=tariffs.commission_bp_of(body.commission_percent),
        self_service=body.self_service,
        on_first_session=body.on_first_session,
        is_active=body.is_active,
        tariff_ids=tuple(body.tariff_ids),
    )


# --------------------------------------------------------------------------- tariffs


@router.get("/tariffs", responses=problem_responses(401, 403, 503))
def tariffs_list(principal: DeskPrincipal, engine: EngineDep) -> TariffList:
    """The tenant's tariffs by name, switched off ones too."""
    with read_only(engine) as conn:
        currency, exponent = _currency(conn, principal.tenant_id)
        found = tariffs.list_tariffs(conn, principal.tenant_id)
    return TariffList(items=[tariff_out(t, currency, exponent) for t in found])


@router.post(
    "/tariffs",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422, 503),
)
def tariff_create(body: TariffIn, principal: SettingsPrincipal, engine: EngineDep) -> TariffOut:
    """A tariff: its price, how it is charged, the grace for new subscribers and the
    promised payment rules of S-4."""
    t = principal.tenant_id

    def work(conn: Connection) -> TariffOut:
        made = tariffs.create_tariff(
            conn, tenant_id=t, data=_tariff_in(conn, t, body), actor=principal.actor
        )
        return tariff_out(made, *_currency(conn, t))

    return _write(engine, work)


@router.get("/tariffs/{tariff_id}", responses=problem_responses(401, 403, 404, 422, 503))
def tariff_get(tariff_id: ObjectId, principal: DeskPrincipal, engine: EngineDep) -> TariffOut:
    with read_only(engine) as conn:
        found = tariffs.get_tariff(conn, principal.tenant_id, tariff_id)
        return tariff_out(found, *_currency(conn, principal.tenant_id))


@router.put("/tariffs/{tariff_id}", responses=problem_responses(401, 403, 404, 409, 422, 503))
def tariff_update(
    tariff_id: ObjectId, body: TariffIn, principal: SettingsPrincipal, engine: EngineDep
) -> TariffOut:
    """Replace the tariff's settings; a new price applies from each subscriber's next
    period."""
    t = principal.tenant_id

    def work(conn: Connection) -> TariffOut:
        changed = tariffs.update_tariff(
            conn,
            tenant_id=t,
            tariff_id=tariff_id,
            data=_tariff_in(conn, t, body),
            actor=principal.actor,
        )
        return tariff_out(changed, *_currency(conn, t))

    return _write(engine, work)


# --------------------------------------------------------------------------- services


@router.get("/promised-payment-services", responses=problem_responses(401, 403, 503))
def services_list(principal: DeskPrincipal, engine: EngineDep) -> ServiceList:
    """The promised payment services by name, switched off ones too."""
    with read_only(engine) as conn:
        currency, exponent = _currency(conn, principal.tenant_id)
        found = tariffs.list_services(conn, principal.tenant_id)
    return ServiceList(items=[service_out(s, currency, exponent) for s in found])


@router.post(
    "/promised-payment-services",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def service_create(body: ServiceIn, principal: SettingsPrincipal, engine: EngineDep) -> ServiceOut:
    """A promised payment service (S-3): e.g. 600.00 for 5 days costing 200.00."""
    t = principal.tenant_id

    def work(conn: Connection) -> ServiceOut:
        made = tariffs.create_service(
            conn, tenant_id=t, data=_service_in(conn, t, body), actor=principal.actor
        )
        return service_out(made, *_currency(conn, t))

    return _write(engine, work)


@router.get(
    "/promised-payment-services/{service_id}", responses=problem_responses(401, 403, 404, 422, 503)
)
def service_get(service_id: ObjectId, principal: DeskPrincipal, engine: EngineDep) -> ServiceOut:
    with read_only(engine) as conn:
        found = tariffs.get_service(conn, principal.tenant_id, service_id)
        return service_out(found, *_currency(conn, principal.tenant_id))


@router.put(
    "/promised-payment-services/{service_id}",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def service_update(
    service_id: ObjectId, body: ServiceIn, principal: SettingsPrincipal, engine: EngineDep
) -> ServiceOut:
    """Replace the service's settings; promised payments taken keep their terms."""
    t = principal.tenant_id

    def work(conn: Connection) -> ServiceOut:
        changed = tariffs.update_service(
            conn,
            tenant_id=t,
            service_id=service_id,
            data=_service_in(conn, t, body),
            actor=principal.actor,
        )
        return service_out(changed, *_currency(conn, t))

    return _write(engine, work)


# --------------------------------------------------------------------------- settings


@router.get("/settings", responses=problem_responses(401, 403, 503))
def settings_get(principal: SettingsPrincipal, engine: EngineDep) -> SettingsOut:
    with read_only(engine) as conn:
        found = tariffs.get_settings(conn, principal.tenant_id)
    return SettingsOut(pp_only_when_blocked=found.pp_only_when_blocked)


@router.put("/settings", responses=problem_responses(401, 403, 422, 503))
def settings_put(body: SettingsIn, principal: SettingsPrincipal, engine: EngineDep) -> SettingsOut:
    """The operator's options (S-5)."""
    done = _write(
        engine,
        lambda conn: tariffs.update_settings(
            conn,
            tenant_id=principal.tenant_id,
            pp_only_when_blocked=body.pp_only_when_blocked,
            actor=principal.actor,
        ),
    )
    return SettingsOut(pp_only_when_blocked=done.pp_only_when_blocked)


# --------------------------------------------------------------------------- the network


@router.post("/sessions", responses=problem_responses(401, 403, 404, 422, 503))
def session(body: SessionIn, principal: NetworkPrincipal, engine: EngineDep) -> SessionOut:
    """The network reports a subscriber's session (a RADIUS sign-in, traffic): the first
    one activates a new subscriber (S-6: charging starts, a grace or a promised payment
    "after the first session" is given). Any later one changes nothing."""
    t = principal.tenant_id

    def work(conn: Connection) -> SessionOut:
        found = registry.find_by_account_no(conn, t, body.account_no)
        # Locked before its status is read: of two first sessions at once, one activates.
        was = registry.lock_subscriber(conn, t, found.id).status
        billing.activate(
            conn, tenant_id=t, subscriber_id=found.id, actor=principal.actor, by_session=True
        )
        now = registry.get_subscriber(conn, t, found.id)
        return SessionOut(
            subscriber_id=now.id,
            account_no=now.account_no,
            status=now.status,  # type: ignore[arg-type]
            activated=was == registry.NEW and now.status != registry.NEW,
            activated_at=now.activated_at,
        )

    return _write(engine, work)


def _top_up(
    engine: Engine,
    principal: Principal,
    key: str,
    body: TopUpIn,
    response: Response,
    subscriber_of: Callable[[Connection], int],
) -> TopUpOut:
    t = principal.tenant_id

    def work(conn: Connection) -> tuple[TopUpOut, bool]:
        done = billing.top_up(
            conn,
            tenant_id=t,
            subscriber_id=subscriber_of(conn),
            amount_minor=_money(conn, t, body.amount, positive=True),
            operation_id=key,
            actor=principal.actor,
            method=body.method,
        )
        return topup_out(done, *_currency(conn, t)), done.replayed

    out, replayed = _write(engine, work)
    _replied(response, replayed)
    return out


@router.post(
    "/top-ups",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def top_up_by_account(
    body: GatewayTopUpIn,
    principal: NetworkPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> TopUpOut:
    """Money paid in through a payment channel that knows the contract number (a kiosk,
    a bank): as ``POST /subscribers/{id}/top-ups``."""
    return _top_up(
        engine,
        principal,
        key,
        body,
        response,
        lambda conn: registry.find_by_account_no(conn, principal.tenant_id, body.account_no).id,
    )


# --------------------------------------------------------------------------- subscribers


@router.get("", responses=problem_responses(401, 403, 422, 503))
def subscribers_list(
    principal: DeskPrincipal,
    engine: EngineDep,
    page: PageDep,
    search: Annotated[
        str | None,
        Query(max_length=200, description="the account number, a part of the name or phone"),
    ] = None,
    status_: Annotated[Status | None, Query(alias="status")] = None,
) -> SubscriberList:
    """Subscribers in the order they were registered, by pages."""
    with read_only(engine) as conn:
        currency, exponent = _currency(conn, principal.tenant_id)
        found = registry.list_subscribers(
            conn,
            principal.tenant_id,
            search=search,
            status=status_,
            after_id=page.after_id,
            limit=page.limit + 1,
        )
    more = len(found) > page.limit
    found = found[: page.limit]
    return SubscriberList(
        items=[SubscriberOut(**_subscriber_fields(s, currency, exponent)) for s in found],
        next_cursor=encode_cursor(found[-1].id) if more and found else None,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def subscriber_create(
    body: SubscriberIn, principal: ManagerPrincipal, engine: EngineDep
) -> SubscriberDetailOut:
    """A new subscriber, status ``new``: charging starts at its first session or when
    activated by hand."""
    t = principal.tenant_id

    def work(conn: Connection) -> SubscriberDetailOut:
        made = registry.create_subscriber(
            conn,
            tenant_id=t,
            data=registry.SubscriberIn(
                account_no=body.account_no,
                full_name=body.full_name,
                tariff_id=body.tariff_id,
                phone=body.phone,
                email=body.email,
                base_limit_minor=_limit_of_threshold(conn, t, body.threshold),
                password=body.password,
            ),
            actor=principal.actor,
        )
        return subscriber_detail(conn, t, made.id)

    return _write(engine, work)


@router.get("/{subscriber_id}", responses=problem_responses(401, 403, 404, 422, 503))
def subscriber_get(
    subscriber_id: ObjectId, principal: DeskPrincipal, engine: EngineDep
) -> SubscriberDetailOut:
    """Balance, threshold (now and as set), what is available, status, the promised
    payment in force."""
    with read_only(engine) as conn:
        return subscriber_detail(conn, principal.tenant_id, subscriber_id)


def _change(
    engine: Engine, principal: Principal, subscriber_id: int, work: Callable[[Connection], Any]
) -> SubscriberDetailOut:
    """Run one change of a subscriber and answer with the subscriber after it."""

    def run(conn: Connection) -> SubscriberDetailOut:
        work(conn)
        return subscriber_detail(conn, principal.tenant_id, subscriber_id)

    return _write(engine, run)


@router.patch("/{subscriber_id}", responses=problem_responses(401, 403, 404, 422, 503))
def subscriber_patch(
    subscriber_id: ObjectId, body: ContactsPatch, principal: DeskPrincipal, engine: EngineDep
) -> SubscriberDetailOut:
    """Change the name, phone or e-mail (only the fields sent)."""
    t = principal.tenant_id
    sent = body.model_fields_set
    if "full_name" in sent and body.full_name is None:
        raise InvalidInput(
            E.INVALID_SUBSCRIBER_INPUT, "a name cannot be removed", field="full_name"
        )

    def work(conn: Connection) -> None:
        was = registry.get_subscriber(conn, t, subscriber_id)
        registry.update_contacts(
            conn,
            tenant_id=t,
            subscriber_id=subscriber_id,
            full_name=body.full_name if body.full_name is not None else was.full_name,
            phone=body.phone if "phone" in sent else was.phone,
            email=body.email if "email" in sent else was.email,
            actor=principal.actor,
        )

    return _change(engine, principal, subscriber_id, work)


@router.put("/{subscriber_id}/threshold", responses=problem_responses(401, 403, 404, 422, 503))
def subscriber_threshold(
    subscriber_id: ObjectId, body: ThresholdIn, principal: ManagerPrincipal, engine: EngineDep
) -> SubscriberDetailOut:
    """The disconnection threshold as the staff set it (zero or below): a subscriber now
    below it is blocked, one blocked whose period due it now allows comes back."""
    t = principal.tenant_id
    return _change(
        engine,
        principal,
        subscriber_id,
        lambda conn: billing.set_threshold(
            conn,
            tenant_id=t,
            subscriber_id=subscriber_id,
            base_limit_minor=_limit_of_threshold(conn, t, body.threshold),
            actor=principal.actor,
        ),
    )


@router.put("/{subscriber_id}/tariff", responses=problem_responses(401, 403, 404, 422, 503))
def subscriber_tariff(
    subscriber_id: ObjectId, body: TariffChangeIn, principal: ManagerPrincipal, engine: EngineDep
) -> SubscriberDetailOut:
    """Another tariff, charged from the subscriber's next period."""
    return _change(
        engine,
        principal,
        subscriber_id,
        lambda conn: billing.change_tariff(
            conn,
            tenant_id=principal.tenant_id,
            subscriber_id=subscriber_id,
            tariff_id=body.tariff_id,
            actor=principal.actor,
        ),
    )


@router.post("/{subscriber_id}/password", responses=problem_responses(401, 403, 404, 422, 503))
def subscriber_password(
    subscriber_id: ObjectId, body: PasswordIn, principal: DeskPrincipal, engine: EngineDep
) -> SubscriberDetailOut:
    """Set the self-service cabinet's password (8 to 200 characters)."""
    return _change(
        engine,
        principal,
        subscriber_id,
        lambda conn: registry.set_password(
            conn,
            tenant_id=principal.tenant_id,
            subscriber_id=subscriber_id,
            password=body.password,
            actor=principal.actor,
        ),
    )


@router.post("/{subscriber_id}/activate", responses=problem_responses(401, 403, 404, 422, 503))
def subscriber_activate(
    subscriber_id: ObjectId, principal: DeskPrincipal, engine: EngineDep
) -> SubscriberDetailOut:
    """Activate a new subscriber by hand (S-6): the first period is charged at once.
    422 ``subscriber_state`` when it was activated already."""
    return _change(
        engine,
        principal,
        subscriber_id,
        lambda conn: billing.activate(
            conn,
            tenant_id=principal.tenant_id,
            subscriber_id=subscriber_id,
            actor=principal.actor,
        ),
    )


@router.post("/{subscriber_id}/disable", responses=problem_responses(401, 403, 404, 422, 503))
def subscriber_disable(
    subscriber_id: ObjectId, principal: ManagerPrincipal, engine: EngineDep
) -> SubscriberDetailOut:
    """Switch the subscriber off: nothing is charged, promised payments end."""
    return _change(
        engine,
        principal,
        subscriber_id,
        lambda conn: billing.disable(
            conn,
            tenant_id=principal.tenant_id,
            subscriber_id=subscriber_id,
            actor=principal.actor,
        ),
    )


@router.post("/{subscriber_id}/enable", responses=problem_responses(401, 403, 404, 422, 503))
def subscriber_enable(
    subscriber_id: ObjectId, principal: ManagerPrincipal, engine: EngineDep
) -> SubscriberDetailOut:
    """Switch a disabled subscriber back on (new, active, or blocked when the balance
    does not allow the period due). 422 ``subscriber_state`` when not disabled."""
    return _change(
        engine,
        principal,
        subscriber_id,
        lambda conn: billing.enable(
            conn,
            tenant_id=principal.tenant_id,
            subscriber_id=subscriber_id,
            actor=principal.actor,
        ),
    )


@router.get("/{subscriber_id}/history", responses=problem_responses(401, 403, 404, 422, 503))
def subscriber_history(
    subscriber_id: ObjectId, principal: DeskPrincipal, engine: EngineDep, page: PageDep
) -> HistoryList:
    """Top-ups, charges, promised payments taken and ended, changes of status; newest
    first. New lines arriving between pages may make a page repeat a line."""
    t = principal.tenant_id
    start = page.after_id or 0
    if start > MAX_HISTORY_DEPTH:
        raise InvalidInput(
            ApiErrorCode.INVALID_CURSOR,
            f"history pages reach back {MAX_HISTORY_DEPTH} lines at most",
        )
    with read_only(engine) as conn:
        registry.get_subscriber(conn, t, subscriber_id)  # 404 for another tenant's
        currency, exponent = _currency(conn, t)
        lines = registry.history(conn, t, subscriber_id, limit=start + page.limit + 1)
    shown = lines[start : start + page.limit]
    more = len(lines) > start + page.limit
    return HistoryList(
        items=[
            HistoryLineOut(
                at=x.at,
                kind=x.kind,  # type: ignore[arg-type]
                description=x.description,
                amount=None if x.amount_minor is None else format_amount(x.amount_minor, exponent),
                currency=currency,
                details=_details_out(x.details, exponent),
            )
            for x in shown
        ],
        next_cursor=encode_cursor(start + len(shown)) if more else None,
    )


@router.get(
    "/{subscriber_id}/promised-payments", responses=problem_responses(401, 403, 404, 422, 503)
)
def promised_list(
    subscriber_id: ObjectId, principal: DeskPrincipal, engine: EngineDep, page: PageDep
) -> PromisedList:
    """The subscriber's promised payments, newest first, with how each ended and its
    commission."""
    t = principal.tenant_id
    with read_only(engine) as conn:
        registry.get_subscriber(conn, t, subscriber_id)
        currency, exponent = _currency(conn, t)
        found = promised.list_promised(conn, t, subscriber_id)
    if page.after_id is not None:
        ids = [p.id for p in found]
        found = found[ids.index(page.after_id) + 1 :] if page.after_id in ids else []
    more = len(found) > page.limit
    found = found[: page.limit]
    return PromisedList(
        items=[promised_out(p, currency, exponent) for p in found],
        next_cursor=encode_cursor(found[-1].id) if more and found else None,
    )


@router.get(
    "/{subscriber_id}/promised-payments/offers",
    responses=problem_responses(401, 403, 404, 422, 503),
)
def promised_offers(
    subscriber_id: ObjectId, principal: DeskPrincipal, engine: EngineDep
) -> OfferList:
    """Each promised payment service switched on: what taking it now would do (the
    amount, the connection price, the commission, the end), or why it is refused."""
    t = principal.tenant_id
    with read_only(engine) as conn:
        registry.get_subscriber(conn, t, subscriber_id)
        currency, exponent = _currency(conn, t)
        offers = [
            promised.offer(
                conn, tenant_id=t, subscriber_id=subscriber_id, service_id=s.id, source="staff"
            )
            for s in tariffs.list_services(conn, t)
            if s.is_active
        ]

    def fmt(value: int | None) -> str | None:
        return None if value is None else format_amount(value, exponent)

    return OfferList(
        items=[
            OfferOut(
                service_id=o.service.id,
                service_name=o.service.name,
                allowed=o.refusal is None,
                refusal=None
                if o.refusal is None
                else RefusalOut(code=o.refusal.code, detail=o.refusal.detail),
                amount=format_amount(o.amount_minor, exponent),
                is_auto=o.service.is_auto,
                days=o.service.days,
                connection_price=format_amount(o.connection_price_minor, exponent),
                commission_per_day=fmt(o.commission_per_day_minor),
                commission_once=fmt(o.commission_once_minor),
                commission_max=format_amount(o.commission_max_minor, exponent),
                currency=currency,
                ends_at=o.ends_at,
            )
            for o in offers
        ]
    )


@router.post(
    "/{subscriber_id}/promised-payments",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def promised_take(
    subscriber_id: ObjectId,
    body: TakeIn,
    principal: DeskPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> PromisedOut:
    """Take a promised payment for the subscriber (S-2): the threshold goes down by its
    amount for its days, its connection price is charged, a subscriber blocked for debt
    comes back. Refused with the rule that says no (``pp_…`` codes)."""
    t = principal.tenant_id
    if body.ignore_rules and principal.role not in PERMISSIONS["subscribers.manage"]:
        raise Forbidden(
            CommonErrorCode.FORBIDDEN,
            f"the role {principal.role!r} may not set the promised payment rules aside",
            role=principal.role,
        )

    def work(conn: Connection) -> tuple[PromisedOut, bool]:
        taken = promised.take(
            conn,
            tenant_id=t,
            subscriber_id=subscriber_id,
            service_id=body.service_id,
            operation_id=key,
            actor=principal.actor,
            source="staff",
            ignore_rules=body.ignore_rules,
        )
        return promised_out(taken, *_currency(conn, t)), taken.replayed

    out, replayed = _write(engine, work)
    _replied(response, replayed)
    return out


@router.post(
    "/{subscriber_id}/top-ups",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def top_up(
    subscriber_id: ObjectId,
    body: TopUpIn,
    principal: NetworkPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> TopUpOut:
    """Money paid in (cash at the desk, a kiosk, a bank): it repays the promised payment
    in force once the balance is back within the staff's threshold, and brings a
    subscriber blocked for debt back."""
    return _top_up(engine, principal, key, body, response, lambda conn: subscriber_id)
