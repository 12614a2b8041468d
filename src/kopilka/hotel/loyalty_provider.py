"""Where the points that pay a folio live (SPEC H-5): one interface, two providers.

* ``OwnLedgerProvider``: this server's own loyalty ledger (cards, wallets, lots), in the
  caller's transaction, so the points and the folio payment are written together or not
  at all;
* ``ExternalCentreProvider``: an external processing centre reached over HTTP (the seed's
  "Kontur" is one); it may be another Kopilka server, whose processing API
  (``/api/v1/processing/...``, a terminal key) it speaks. A centre that does not answer,
  or answers garbage, is ``loyalty_centre_unavailable`` (503): nothing is written on the
  folio.

Both are idempotent by the operation id the folio side gives: a redemption asked again
answers as the first time and takes nothing more. A folio payment whose own write fails
after the centre took the points gives them back (``refund`` of the whole amount, with
the operation id ``<operation>:undo``).

``provider_for(conn, tenant_id=..., actor=...)`` picks the tenant's provider: its
external centre when one is set and switched on, else its own ledger.

Both raise the same errors (``kopilka.loyalty.redemptions``): ``NotFound``
``card_not_found`` / ``redemption_not_found``; ``Refused`` ``insufficient_points``,
``card_blocked``, ``card_expired``, ``points_unit_mismatch``, ``loyalty_disabled``,
``loyalty_module_disabled``, ``refund_too_large``; ``Conflict`` ``idempotency_conflict``
/ ``redemption_refunded``; ``InvalidInput`` for malformed input. Only the external one
raises ``Unavailable`` ``loyalty_centre_unavailable`` (503, with ``reason``). Amounts are
minor units of this server's unit of that code (see ``ExternalCentreProvider``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from sqlalchemy import Connection

from kopilka.core.actor import Actor
from kopilka.core.errors import (
    Conflict,
    InvalidInput,
    KopilkaError,
    NotFound,
    Refused,
    Unavailable,
)
from kopilka.core.money import format_amount, parse_amount
from kopilka.hotel.loyalty_centre import (
    MAX_TIMEOUT_MS,
    MIN_TIMEOUT_MS,
    CentreSettings,
    LoyaltyCentreErrorCode,
    get_centre,
)
from kopilka.ledger.accounts import list_units
from kopilka.loyalty import redemptions
from kopilka.loyalty.billing import is_loyalty_enabled
from kopilka.loyalty.programs import LoyaltyErrorCode

E = LoyaltyCentreErrorCode
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PointsBalance:
    unit_code: str  # the point unit's code (the same code on both sides of a centre)
    exponent: int  # minor units per point: 0 for whole points, 2 for bonus roubles
    balance_minor: int  # spendable now (held and not yet active points excluded)


@dataclass(frozen=True, slots=True)
class CardBalances:
    number: str  # the card's number, normalised
    holder: str | None  # the holder's name, when the card has one
    status: str  # active, blocked, expired (only active cards pay)
    balances: tuple[PointsBalance, ...]

    def of(self, unit_code: str) -> PointsBalance | None:
        wanted = unit_code.upper()
        return next((b for b in self.balances if b.unit_code.upper() == wanted), None)


@dataclass(frozen=True, slots=True)
class Redemption:
    ref: str  # the provider's reference of the write-off (or of the give-back)
    unit_code: str
    amount_minor: int  # points written off (or given back), in the unit's minor units
    replayed: bool  # the same operation id was seen before: nothing more was taken


class LoyaltyProvider(Protocol):
    name: str  # "own" or "external", kept on the folio payment

    def card_balances(self, number: str) -> CardBalances:
        """The card's spendable points per unit; ``card_not_found`` (404) if unknown."""
        ...

    def redeem(
        self,
        *,
        number: str,
        unit_code: str,
        amount_minor: int,
        operation_id: str,
        description: str,
    ) -> Redemption:
        """Write ``amount_minor`` points off the card, all or nothing; refused with a
        clear code (insufficient points, card blocked...) and then nothing is taken."""
        ...

    def refund(self, *, ref: str, amount_minor: int, operation_id: str) -> Redemption:
        """Give back up to what the write-off ``ref`` took (less earlier give-backs)."""
        ...


# --------------------------------------------------------------------------- own ledger


class OwnLedgerProvider:
    """The points of this server's own cards (``kopilka.loyalty.redemptions``), written
    in the caller's transaction under the channel ``folio``. Refused, like the POS
    gateway, while the tenant's loyalty module is switched off (SPEC P-9)."""

    name: str = "own"

    def __init__(
        self,
        conn: Connection,
        *,
        tenant_id: int,
        actor: Actor,
        channel: str = redemptions.FOLIO_CHANNEL,
    ) -> None:
        self._conn = conn
        self._tenant_id = tenant_id
        self._actor = actor
        self._channel = channel

    def _require_module(self) -> None:
        if not is_loyalty_enabled(self._conn, self._tenant_id):
            raise Refused(
                LoyaltyErrorCode.LOYALTY_MODULE_DISABLED,
                "the loyalty module of this company is switched off: cards can be neither "
                "looked up nor charged until it is switched on again",
            )

    def card_balances(self, number: str) -> CardBalances:
        self._require_module()
        found = redemptions.card_balances(self._conn, self._tenant_id, number)
        return CardBalances(
            number=found.number,
            holder=found.holder,
            status=found.status,
            balances=tuple(
                PointsBalance(b.unit_code, b.exponent, b.balance_minor) for b in found.balances
            ),
        )

    def redeem(
        self,
        *,
        number: str,
        unit_code: str,
        amount_minor: int,
        operation_id: str,
        description: str,
    ) -> Redemption:
        self._require_module()
        done = redemptions.redeem(
            self._conn,
            tenant_id=self._tenant_id,
            number=number,
            unit_code=unit_code,
            amount_minor=amount_minor,
            channel=self._channel,
            operation_id=operation_id,
            description=description,
            actor=self._actor,
        )
        return Redemption(done.ref, done.unit_code, done.amount_minor, done.replayed)

    def refund(self, *, ref: str, amount_minor: int, operation_id: str) -> Redemption:
        self._require_module()
        done = redemptions.refund_redemption(
            self._conn,
            tenant_id=self._tenant_id,
            channel=self._channel,
            ref=ref,
            amount_minor=amount_minor,
            operation_id=operation_id,
            actor=self._actor,
        )
        return Redemption(done.ref, done.unit_code, done.amount_minor, done.replayed)


# --------------------------------------------------------------------------- external centre

PROCESSING_PATH = "/api/v1/processing"
log = logging.getLogger("kopilka.hotel.loyalty_centre")


class _Malformed(Exception):
    """The centre's reply is not what the processing API answers."""


@dataclass(frozen=True, slots=True)
class CentreUnit:
    unit_code: str
    exponent: int
    name: str


@dataclass(frozen=True, slots=True)
class CentreCheck:
    """What "test connection" found: the centre's point units, and a card if asked."""

    units: tuple[CentreUnit, ...]
    card: CardBalances | None


class ExternalCentreProvider:
    """A processing centre over HTTP that speaks Kopilka's processing API
    (``/api/v1/processing``, ``Authorization: Bearer <key>``), another Kopilka server
    being one.

    Amounts are decimal strings on the wire; here they are minor units of the *local*
    unit of the same code when this server has one (``exponents``: what the folio's
    payment types count in), otherwise of the centre's unit. A balance finer than the
    local unit is rounded down; an amount a unit cannot express exactly is refused before
    anything is sent.

    The operation id goes as the ``Idempotency-Key``, so asking again after a timeout is
    safe: the centre answers as the first time. A refusal of the centre comes back as
    the same error class and code this server's own ledger would raise (``NotFound``
    ``card_not_found``, ``Refused`` ``insufficient_points``, ``Conflict``...). No answer,
    a timeout, a 5xx, a refused key or a reply that is not the processing API's is
    ``Unavailable`` ``loyalty_centre_unavailable`` (503), with a detail for the front desk
    and ``reason`` (timeout, unreachable, error, rejected_key, malformed); the key is in
    no message and no log line.
    """

    name: str = "external"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout_ms: int,
        exponents: Mapping[str, int] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        assert MIN_TIMEOUT_MS <= timeout_ms <= MAX_TIMEOUT_MS
        self.base_url = base_url.rstrip("/")
        self.timeout_ms = timeout_ms
        self.where = urlsplit(self.base_url).netloc or self.base_url
        self._api_key = api_key
        self._transport = transport
        # Unit code -> the exponent amounts are counted in here; grows with the units the
        # centre names that this server does not know.
        self._exponents = {code.upper(): e for code, e in (exponents or {}).items()}
        self._unit_of_ref: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"ExternalCentreProvider({self.base_url!r}, timeout_ms={self.timeout_ms})"

    # ----------------------------------------------------------------- the interface

    def card_balances(self, number: str) -> CardBalances:
        data, _ = self._call("GET", f"/cards/{_segment(number)}")
        return self._parsed(self._card, data)

    def redeem(
        self,
        *,
        number: str,
        unit_code: str,
        amount_minor: int,
        operation_id: str,
        description: str,
    ) -> Redemption:
        _check_amount(amount_minor)
        _check_operation(operation_id)
        unit = unit_code.strip().upper()
        if unit not in self._exponents:
            held = self.card_balances(number).of(unit)
            if held is None:
                raise Refused(
                    LoyaltyErrorCode.POINTS_UNIT_MISMATCH,
                    f"card {number} keeps no {unit} at the loyalty centre",
                    unit=unit,
                )
        body = {
            "card": number,
            "unit": unit,
            "amount": format_amount(amount_minor, self._exponents[unit]),
            "description": description,
        }
        data, replayed = self._call("POST", "/redemptions", body=body, key=operation_id)
        return self._parsed(self._redemption, data, replayed)

    def refund(self, *, ref: str, amount_minor: int, operation_id: str) -> Redemption:
        _check_amount(amount_minor)
        _check_operation(operation_id)
        unit = self._unit_of_ref.get(ref)
        if unit is None:  # learn the write-off's unit, to say the amount in it
            data, _ = self._call("GET", f"/redemptions/{_segment(ref)}")
            unit = self._parsed(self._redemption, data, False).unit_code
        body = {"amount": format_amount(amount_minor, self._exponents[unit])}
        data, replayed = self._call(
            "POST", f"/redemptions/{_segment(ref)}/refunds", body=body, key=operation_id
        )
        return self._parsed(self._redemption, data, replayed)

    def check(self, number: str | None = None) -> CentreCheck:
        """Test the connection: the centre's point units (the key and its loyalty module
        are accepted), and the card's balances when a number is given."""
        data, _ = self._call("GET", "/units")
        units = self._parsed(self._units, data)
        card = self.card_balances(number) if number else None
        return CentreCheck(units, card)

    # ----------------------------------------------------------------- the wire

    def _call(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, key: str | None = None
    ) -> tuple[Any, bool]:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        seconds = self.timeout_ms / 1000  # httpx counts time in seconds
        try:
            with httpx.Client(
                base_url=self.base_url,
                timeout=httpx.Timeout(seconds),
                transport=self._transport,
                follow_redirects=False,
            ) as client:
                response = client.request(
                    method, PROCESSING_PATH + path, json=body, headers=headers
                )
        except httpx.TimeoutException as error:
            raise self._unavailable(
                "timeout",
                f"the loyalty centre ({self.where}) did not answer within {_seconds(self)}; "
                "asking again is safe: points are never taken twice",
            ) from error
        except httpx.HTTPError as error:
            raise self._unavailable(
                "unreachable",
                f"the loyalty centre ({self.where}) cannot be reached; check the connection "
                "or try again later",
                error=type(error).__name__,
            ) from error
        return self._reply(response)

    def _reply(self, response: httpx.Response) -> tuple[Any, bool]:
        status = response.status_code
        if status >= 500 or status in (401, 429) or 300 <= status < 400:
            raise self._failed(status)
        try:
            data = response.json()
        except ValueError:
            data = None
        if status in (200, 201):
            if not isinstance(data, dict):
                raise self._garbled(status)
            return data, response.headers.get("Idempotent-Replayed") == "true"
        code, detail, title = _problem(data)
        if code is None or detail is None or code == "not_found":
            raise self._garbled(status)  # not the processing API (a wrong address?)
        if status == 403:
            if code == LoyaltyErrorCode.LOYALTY_MODULE_DISABLED:
                raise Refused(code, detail)
            raise self._failed(status)
        if status == 404:
            raise NotFound(code, detail)
        if status == 409:
            raise Conflict(code, detail)
        if status == 422 and title == "Refused":
            raise Refused(code, detail)
        if status in (400, 422):
            raise InvalidInput(code, detail)
        raise self._failed(status)

    def _unavailable(self, reason: str, detail: str, **params: Any) -> Unavailable:
        log.warning(
            "loyalty centre unavailable",
            extra={"centre": self.where, "reason": reason, **params},
        )
        return Unavailable(
            E.LOYALTY_CENTRE_UNAVAILABLE, detail, centre=self.where, reason=reason, **params
        )

    def _failed(self, status: int) -> Unavailable:
        if status in (401, 403):
            return self._unavailable(
                "rejected_key",
                f"the loyalty centre ({self.where}) did not accept this server's key "
                f"(HTTP {status}); an administrator should check it in the settings",
                http_status=status,
            )
        return self._unavailable(
            "error",
            f"the loyalty centre ({self.where}) failed to answer (HTTP {status}); try again later",
            http_status=status,
        )

    def _garbled(self, status: int) -> Unavailable:
        return self._unavailable(
            "malformed",
            f"the loyalty centre ({self.where}) answered with something that is not a "
            "processing reply; an administrator should check its address in the settings",
            http_status=status,
        )

    def _parsed(self, parse: Callable[..., T], data: Any, *args: Any) -> T:
        try:
            return parse(data, *args)
        except (_Malformed, KopilkaError, KeyError, TypeError, ValueError) as error:
            raise self._garbled(200) from error

    # ----------------------------------------------------------------- replies

    def _local(self, unit: str, remote_minor: int, remote_exponent: int, *, exact: bool) -> int:
        """``remote_minor`` of the centre's unit as minor units of this side's."""
        exponent = self._exponents.setdefault(unit, remote_exponent)
        scale = int(10 ** abs(exponent - remote_exponent))
        if exponent >= remote_exponent:
            return remote_minor * scale
        value, rest = divmod(remote_minor, scale)
        if exact and rest:
            raise _Malformed(f"{unit}: an amount finer than {exponent} decimals")
        assert 0 <= value <= remote_minor
        return value

    def _card(self, data: Any) -> CardBalances:
        balances = []
        for item in _list(data, "balances"):
            unit, exponent = _unit(item)
            remote = parse_amount(_text(item, "balance"), exponent)
            if remote < 0:
                raise _Malformed("a negative balance")
            local = self._local(unit, remote, exponent, exact=False)
            balances.append(PointsBalance(unit, self._exponents[unit], local))
        holder = data.get("holder")
        if holder is not None and not isinstance(holder, str):
            raise _Malformed("holder")
        return CardBalances(_text(data, "number"), holder, _text(data, "status"), tuple(balances))

    def _redemption(self, data: Any, replayed: bool) -> Redemption:
        ref = _text(data, "ref")
        unit, exponent = _unit(data)
        remote = parse_amount(_text(data, "amount"), exponent)
        if remote <= 0:
            raise _Malformed("an amount not above zero")
        amount = self._local(unit, remote, exponent, exact=True)
        self._unit_of_ref[ref] = unit
        parent = data.get("redemption")
        if isinstance(parent, str):
            self._unit_of_ref[parent] = unit
        return Redemption(ref, unit, amount, bool(replayed))

    def _units(self, data: Any) -> tuple[CentreUnit, ...]:
        found = []
        for item in _list(data, "units"):
            unit, exponent = _unit(item)
            self._exponents.setdefault(unit, exponent)
            found.append(CentreUnit(unit, exponent, str(item.get("name") or "")))
        return tuple(found)


def _seconds(provider: ExternalCentreProvider) -> str:
    whole, rest = divmod(provider.timeout_ms, 1000)
    return f"{whole} s" if not rest else f"{provider.timeout_ms} ms"


def _segment(value: str) -> str:
    return quote(str(value).strip(), safe="")


def _check_amount(amount_minor: int) -> None:
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool) or amount_minor <= 0:
        raise InvalidInput(LoyaltyErrorCode.INVALID_AMOUNT, "the points are greater than zero")


def _check_operation(operation_id: str) -> None:
    """An operation id travels as the ``Idempotency-Key`` header: 1 to 100 printable
    ASCII characters, as the centre takes them."""
    if (
        not isinstance(operation_id, str)
        or not 1 <= len(operation_id.strip()) <= redemptions.MAX_OPERATION_ID
        or not all(32 <= ord(ch) <= 126 for ch in operation_id)
    ):
        raise InvalidInput(
            LoyaltyErrorCode.INVALID_REDEMPTION,
            f"an operation id is 1 to {redemptions.MAX_OPERATION_ID} printable ASCII characters",
        )


def _problem(data: Any) -> tuple[str | None, str | None, str | None]:
    if not isinstance(data, dict):
        return None, None, None
    code, detail, title = data.get("code"), data.get("detail"), data.get("title")
    if not isinstance(code, str) or not 1 <= len(code) <= 100:
        return None, None, None
    return (
        code,
        detail[:500] if isinstance(detail, str) else None,
        title if isinstance(title, str) else None,
    )


def _text(data: Any, name: str) -> str:
    value = data[name] if isinstance(data, dict) else None
    if not isinstance(value, str) or not 1 <= len(value) <= 200:
        raise _Malformed(name)
    return value


def _list(data: Any, name: str) -> list[Any]:
    value = data[name] if isinstance(data, dict) else None
    if not isinstance(value, list) or len(value) > 100:
        raise _Malformed(name)
    return value


def _unit(data: Any) -> tuple[str, int]:
    unit = _text(data, "unit").upper()
    exponent = data.get("exponent")
    if not isinstance(exponent, int) or isinstance(exponent, bool) or not 0 <= exponent <= 18:
        raise _Malformed("exponent")
    return unit, exponent


# --------------------------------------------------------------------------- choosing


def external_provider(
    conn: Connection, centre: CentreSettings, *, transport: httpx.BaseTransport | None = None
) -> ExternalCentreProvider:
    """The provider for ``centre``, counting amounts in the tenant's own units."""
    exponents = {unit.code: unit.exponent for unit in list_units(conn, centre.tenant_id)}
    return ExternalCentreProvider(
        base_url=centre.base_url,
        api_key=centre.api_key,
        timeout_ms=centre.timeout_ms,
        exponents=exponents,
        transport=transport,
    )


def provider_for(conn: Connection, *, tenant_id: int, actor: Actor) -> LoyaltyProvider:
    """The tenant's provider: its external centre when one is set and switched on
    (``kopilka.hotel.loyalty_centre``), else its own ledger in ``conn``'s transaction."""
    centre = get_centre(conn, tenant_id)
    if centre is not None and centre.enabled:
        return external_provider(conn, centre)
    return OwnLedgerProvider(conn, tenant_id=tenant_id, actor=actor)
