"""ATOL Online, API v5 (fiscal data format 1.2): the cloud fiscal service as an adapter.

The service's published protocol ("API сервиса АТОЛ Онлайн", version v5), as used here:

* ``POST {base}/possystem/v5/getToken`` with ``{"login", "pass"}`` answers ``{"token",
  "error": null, "timestamp"}``. A token lives 24 hours and goes in the ``Token`` header
  of every other request. Tokens are kept per process (per address, login and password)
  and renewed after 23 hours, or at once, and only once per request, when the service
  says the token is missing or expired.
* ``POST {base}/possystem/v5/{group_code}/sell`` (or ``sell_refund``) with
  ``{"external_id", "timestamp": "dd.mm.yyyy HH:MM:SS", "receipt": {"client", "company",
  "items", "payments", "total"}}`` queues the receipt: ``{"uuid", "status": "wait",
  "error": null}``.
* ``GET {base}/possystem/v5/{group_code}/report/{uuid}`` tells how far it got: ``wait``,
  ``done`` with ``payload`` (the fiscal data: ``fn_number``, ``fiscal_document_number``,
  ``fiscal_document_attribute``, ``receipt_datetime``, ``total``, ...) or ``fail`` with
  ``error``.

Errors come as ``{"error": {"error_id", "code", "text", "type"}}`` with an HTTP status.
The codes this adapter acts on (the rest are refusals, kept with the service's text):

====  ==================================  ===========================================
code  ATOL's name (HTTP status)           what Kopilka does
====  ==================================  ===========================================
10    MissingToken (401)                  a new token, the request once more
11    ExpiredToken (401)                  a new token, the request once more
12    WrongLoginOrPassword (401)          refused: check the register's login
14    UserBlocked (403)                   refused
20    GroupCodeAndTokenDontMatch (401)    refused: check the group code
32    IncomingValidationException (400)   refused: a bad INN, e-mail, sum, ... The
                                          fields are named in the text
33    IncomingExternalIdAlreadyExists     accepted: the service has this receipt
      (400, with the first one's uuid)    already (a repeat after a lost answer)
34    StateCheckNotFound (200)            still waiting
50    ErrorServerConfiguration (500)      transient, sent again later
====  ==================================  ===========================================

Any HTTP 5xx, 408 or 429, a refused or dropped connection and a timeout are transient:
nothing is known to have been registered, and the same ``external_id`` is sent again. A
receipt the service refused, or reported as ``fail`` (for example ``timeout`` 1, not
fiscalised in time), is registered under its ``external_id`` as it is: asking again with
that id would only be answered with the same result, so a retry uses a new one
(``kopilka.fiscal.receipts.retry_receipt``).

Amounts are integers of minor units inside Kopilka and decimal numbers of roubles in
ATOL's JSON (``1050`` is ``10.50``): converted with ``Decimal`` exactly and written into
the JSON text digit by digit, never through a float. Quantities are thousandths
(``quantity_milli``: ``1500`` is ``1.500``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx

from kopilka.core.errors import InvalidInput
from kopilka.fiscal.adapters import (
    ReceiptToSend,
    ReportResult,
    ReportStatus,
    SubmitResult,
    clean_email,
)
from kopilka.fiscal.error_codes import FiscalErrorCode as E
from kopilka.payments.types import PaymentKind

log = logging.getLogger(__name__)

API_PATH = "/possystem/v5"
DEFAULT_BASE_URL = "https://online.atol.ru"
TIMESTAMP_FORMAT = "%d.%m.%Y %H:%M:%S"
# ATOL reads the document's time as Moscow time.
ATOL_ZONE = ZoneInfo("Europe/Moscow")
EXPONENT = 2  # roubles and kopecks
QUANTITY_EXPONENT = 3  # quantities have at most 3 decimals
TOKEN_LIFETIME_SECONDS = 24 * 3600
# Renewed an hour before the service would stop taking it.
TOKEN_RENEW_AFTER_SECONDS = TOKEN_LIFETIME_SECONDS - 3600
DEFAULT_TIMEOUT_MS = 15_000
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 100, 60_000
MEASURE_PIECES = 0  # "шт." or "ед.": a night, a service, a thing

# Taxation systems of fiscal data format 1.2 (tag 1055).
SNO_VALUES = ("osn", "usn_income", "usn_income_outcome", "esn", "patent")
# VAT rates (tag 1199) as ATOL names them; 5/105 and 7/107 since 2025, 22/122 since 2026.
VAT_TYPES = (
    "none",
    "vat0",
    "vat5",
    "vat7",
    "vat10",
    "vat20",
    "vat22",
    "vat105",
    "vat107",
    "vat110",
    "vat120",
    "vat122",
)
# The way of settlement (tag 1214); a folio's payment settles in full.
PAYMENT_METHODS = (
    "full_prepayment",
    "prepayment",
    "advance",
    "full_payment",
    "partial_payment",
    "credit",
    "credit_payment",
)
DEFAULT_PAYMENT_METHOD = "full_payment"
# What is paid for (tag 1212): API v4's names, which Kopilka's payloads use, and the
# numbers API v5 sends.
PAYMENT_OBJECTS = {
    "commodity": 1,
    "excise": 2,
    "job": 3,
    "service": 4,
    "gambling_bet": 5,
    "gambling_prize": 6,
    "lottery": 7,
    "lottery_prize": 8,
    "intellectual_activity": 9,
    "payment": 10,  # an advance, a prepayment
    "agent_commission": 11,
    "award": 12,  # a fee, a fine, a bonus
    "another": 13,
    "property_right": 14,
    "non-operating_gain": 15,
    "insurance_premium": 16,
    "sales_tax": 17,
    "resort_fee": 18,
    "deposit": 19,  # a pledge
}
# How a payment of each kind of the payment types directory is told to the fiscal drive
# (``payments[].type``): 0 cash, 1 cashless, 2 prepayment (an advance or earlier payment
# set off), 3 postpayment (credit), 4 another form (a counter-provision, "встречное
# предоставление"): what bonus points are for the tax service.
PAYMENT_TYPES = {
    PaymentKind.CASH: 0,
    PaymentKind.CARD: 1,
    PaymentKind.BANK_TRANSFER: 1,
    PaymentKind.DEPOSIT: 2,
    PaymentKind.GIFT_CERTIFICATE: 2,
    PaymentKind.ROOM_CHARGE: 3,
    PaymentKind.POINTS: 4,
    PaymentKind.OTHER: 4,
}

# ATOL's error codes (see the module's docstring).
MISSING_TOKEN, EXPIRED_TOKEN = 10, 11
EXTERNAL_ID_EXISTS = 33
STATE_NOT_FOUND = 34
TRANSIENT_HTTP = frozenset({408, 425, 429})

_GROUP_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_UUID = re.compile(r"^[A-Za-z0-9\-]{1,64}$")


# --------------------------------------------------------------------------- amounts


def to_atol_amount(amount_minor: int, exponent: int = EXPONENT) -> Decimal:
    """``1050`` -> ``Decimal("10.50")``: minor units as the decimal ATOL writes, exactly."""
    assert isinstance(amount_minor, int) and not isinstance(amount_minor, bool)
    assert 0 <= exponent <= 6
    value = Decimal(amount_minor).scaleb(-exponent)
    assert value.as_tuple().exponent == -exponent or amount_minor == 0
    return value


def from_atol_amount(value: Decimal | int, exponent: int = EXPONENT) -> int:
    """``Decimal("10.50")`` -> ``1050`` (a whole number comes from JSON as an ``int``); a
    value with more decimals than ``exponent`` is not an amount of this unit
    (``ValueError``): nothing is rounded."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{value!r} is not a finite decimal")
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {exponent} decimals")
    return int(scaled)


def dumps_exact(value: Any) -> str:
    """JSON text in which every ``Decimal`` is written with its own digits (``10.50``);
    Python's ``json`` would need a float for a number, and a float is not exact."""
    if isinstance(value, Decimal):
        assert value.is_finite()
        return format(value, "f")
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        pairs = (
            f"{json.dumps(str(k), ensure_ascii=False)}:{dumps_exact(v)}" for k, v in value.items()
        )
        return "{" + ",".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps_exact(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON")


def loads_exact(text: str | bytes) -> Any:
    """JSON with its fractional numbers as ``Decimal`` (never float)."""
    return json.loads(text, parse_float=Decimal)


def plain_json(value: Any) -> Any:
    """A parsed answer made fit for a JSON column: decimals become decimal strings."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_json(item) for item in value]
    return value


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class AtolSettings:
    base_url: str  # https://online.atol.ru (https://testonline.atol.ru to try)
    login: str
    password: str = field(repr=False)
    group_code: str
    inn: str  # the seller's INN, 10 or 12 digits
    payment_address: str  # tag 1009: the shop's site or the premises' address
    sno: str  # the taxation system, one of SNO_VALUES
    company_email: str  # the seller's e-mail printed on the receipt
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    def stored(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SETTING_FIELDS}

    @property
    def api_url(self) -> str:
        return self.base_url + API_PATH


SETTING_FIELDS = (
    "base_url",
    "login",
    "password",
    "group_code",
    "inn",
    "payment_address",
    "sno",
    "company_email",
    "timeout_ms",
)
SECRET_FIELDS = frozenset({"password"})


def _bad(field_name: str, detail: str) -> InvalidInput:
    return InvalidInput(E.INVALID_REGISTER_SETTING, detail, field=field_name)


def _text(value: object, field_name: str, max_length: int) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(text) <= max_length or any(ord(ch) < 32 for ch in text):
        raise _bad(field_name, f"{field_name} is 1 to {max_length} characters")
    return text


def clean_base_url(value: object) -> str:
    """The service's address without a trailing slash or ``/possystem/v5`` (people paste
    the full address of the API from ATOL's letter)."""
    text = value.strip().rstrip("/") if isinstance(value, str) else ""
    if text.lower().endswith(API_PATH):
        text = text[: -len(API_PATH)].rstrip("/")
    parts = urlsplit(text) if len(text) <= 300 else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or " " in text
    ):
        raise _bad(
            "base_url",
            f"base_url is the service's http(s) address such as {DEFAULT_BASE_URL}, not {value!r}",
        )
    return text


def inn_is_valid(inn: str) -> bool:
    """10 digits (an organisation) or 12 (an entrepreneur) with their check digits."""
    if not inn.isascii() or not inn.isdigit() or len(inn) not in (10, 12):
        return False
    digits = [int(ch) for ch in inn]

    def check(weights: tuple[int, ...]) -> int:
        return sum(w * d for w, d in zip(weights, digits, strict=False)) % 11 % 10

    if len(digits) == 10:
        return check((2, 4, 10, 3, 5, 9, 4, 6, 8)) == digits[9]
    return (
        check((7, 2, 4, 10, 3, 5, 9, 4, 6, 8)) == digits[10]
        and check((3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)) == digits[11]
    )


def _inn(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not inn_is_valid(text):
        raise _bad(
            "inn",
            f"inn is the seller's INN: 10 or 12 digits with valid check digits, not {value!r}",
        )
    return text


def _timeout(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad("timeout_ms", "timeout_ms is a whole number of milliseconds")
    if not MIN_TIMEOUT_MS <= value <= MAX_TIMEOUT_MS:
        raise _bad("timeout_ms", f"timeout_ms is {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS}")
    return value


def parse_settings(
    raw: Mapping[str, Any], previous: Mapping[str, Any] | None = None
) -> AtolSettings:
    """Checked settings; a field missing from ``raw`` (or an empty password) keeps its
    ``previous`` value. Every refusal is ``invalid_register_setting`` naming the field."""
    if not isinstance(raw, Mapping):
        raise _bad("settings", "settings are an object")
    unknown = sorted(str(key) for key in raw if key not in SETTING_FIELDS)
    if unknown:
        raise _bad(unknown[0], f"{unknown[0]} is not a setting of an ATOL Online register")
    merged: dict[str, Any] = dict(previous or {})
    for key, value in raw.items():
        if key in SECRET_FIELDS and (value is None or value == "") and merged.get(key):
            continue  # write-only: an empty password keeps the one there is
        merged[key] = value
    merged.setdefault("base_url", DEFAULT_BASE_URL)
    merged.setdefault("timeout_ms", DEFAULT_TIMEOUT_MS)
    for name in SETTING_FIELDS:
        if merged.get(name) in (None, ""):
            raise _bad(name, f"{name} is required")
    group_code = str(merged["group_code"]).strip()
    if not _GROUP_CODE.match(group_code):
        raise _bad(
            "group_code",
            "group_code is the group of registers ATOL gave, 1 to 100 letters, digits, "
            f"'_', '-' or '.', not {merged['group_code']!r}",
        )
    sno = str(merged["sno"]).strip()
    if sno not in SNO_VALUES:
        raise _bad("sno", f"sno is one of {', '.join(SNO_VALUES)}, not {merged['sno']!r}")
    password = merged["password"]
    if not isinstance(password, str) or not 1 <= len(password) <= 200:
        raise _bad("password", "password is 1 to 200 characters")
    try:
        company_email = clean_email(merged["company_email"], field="company_email")
    except InvalidInput as error:
        raise _bad("company_email", error.detail) from error
    settings = AtolSettings(
        base_url=clean_base_url(merged["base_url"]),
        login=_text(merged["login"], "login", 100),
        password=password,
        group_code=group_code,
        inn=_inn(merged["inn"]),
        payment_address=_text(merged["payment_address"], "payment_address", 256),
        sno=sno,
        company_email=company_email,
        timeout_ms=_timeout(merged["timeout_ms"]),
    )
    assert inn_is_valid(settings.inn) and settings.sno in SNO_VALUES
    return settings


def public_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that may be shown, and whether a password is set (never the password)."""
    shown = {key: value for key, value in settings.items() if key not in SECRET_FIELDS}
    shown["password_set"] = bool(settings.get("password"))
    return shown


# --------------------------------------------------------------------------- the receipt


def check_payload(payload: Mapping[str, Any]) -> None:
    """ATOL Online speaks roubles: a receipt's amounts have exponent 2. (Its names of
    payment objects, VAT rates and ways of settlement are checked for every receipt by
    ``kopilka.fiscal.receipts``.)"""
    if payload.get("exponent") != EXPONENT:
        raise InvalidInput(
            E.INVALID_RECEIPT,
            f"ATOL Online receipts are in roubles and kopecks: exponent {EXPONENT}, "
            f"not {payload.get('exponent')!r}",
        )


def atol_payments(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The payments by ATOL's type, in the order their types first appear; payments of
    one type (a card and a bank transfer are both cashless) are added together."""
    exponent = int(payload["exponent"])
    by_type: dict[int, int] = {}
    for payment in payload["payments"]:
        kind = PaymentKind(payment["kind"])
        by_type[PAYMENT_TYPES[kind]] = by_type.get(PAYMENT_TYPES[kind], 0) + payment["amount_minor"]
    return [{"type": t, "sum": to_atol_amount(s, exponent)} for t, s in by_type.items()]


def receipt_body(receipt: ReceiptToSend, settings: AtolSettings) -> dict[str, Any]:
    """The body of ``sell`` / ``sell_refund`` for this receipt (amounts as ``Decimal``)."""
    payload = receipt.payload
    exponent = int(payload["exponent"])
    client: dict[str, Any] = {}
    if receipt.email:
        client["email"] = receipt.email
    if receipt.phone:
        client["phone"] = receipt.phone
    assert client, "a receipt goes to an e-mail or a phone"
    items = [
        {
            "name": item["name"],
            "price": to_atol_amount(item["price_minor"], exponent),
            "quantity": to_atol_amount(item["quantity_milli"], QUANTITY_EXPONENT),
            "measure": MEASURE_PIECES,
            "sum": to_atol_amount(item["amount_minor"], exponent),
            "payment_method": item.get("payment_method") or DEFAULT_PAYMENT_METHOD,
            "payment_object": PAYMENT_OBJECTS[item["payment_object"]],
            "vat": {"type": item["vat"]},
        }
        for item in payload["items"]
    ]
    total = to_atol_amount(payload["total_minor"], exponent)
    payments = atol_payments(payload)
    assert sum((p["sum"] for p in payments), Decimal(0)) == total
    return {
        "external_id": receipt.external_id,
        "timestamp": receipt.moment.astimezone(ATOL_ZONE).strftime(TIMESTAMP_FORMAT),
        "receipt": {
            "client": client,
            "company": {
                "email": settings.company_email,
                "sno": settings.sno,
                "inn": settings.inn,
                "payment_address": settings.payment_address,
            },
            "items": items,
            "payments": payments,
            "total": total,
        },
    }


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
    obtained_at: float  # time.monotonic()


_tokens: dict[tuple[str, str, str], _Token] = {}
_tokens_lock = threading.Lock()


def forget_tokens() -> None:
    """Drop every kept token (tests; a changed password drops its own by itself)."""
    with _tokens_lock:
        _tokens.clear()


class _Refused(Exception):
    """The service said no; asking again would be answered the same."""


class _Transient(Exception):
    """The question did not get through; asking again may succeed."""


@dataclass(frozen=True, slots=True)
class _AtolError:
    http_status: int
    code: int | None
    text: str
    type: str

    def describe(self) -> str:
        code = "" if self.code is None else f" {self.code}"
        kind = f" ({self.type})" if self.type else ""
        return f"ATOL{code}{kind}, HTTP {self.http_status}: {self.text}"


def _json_of(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = loads_exact(response.content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _error_of(response: httpx.Response, data: dict[str, Any] | None) -> _AtolError | None:
    error = None if data is None else data.get("error")
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    return _AtolError(
        http_status=response.status_code,
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        text=str(error.get("text") or "").strip()[:1000] or "no text",
        type=str(error.get("type") or ""),
    )


def _no_json(response: httpx.Response) -> str:
    return f"ATOL answered HTTP {response.status_code} without a JSON body"


class AtolOnlineV5:
    """One register of ATOL Online (see the module's docstring)."""

    def __init__(self, settings: AtolSettings) -> None:
        self.settings = settings
        digest = hashlib.sha256(settings.password.encode()).hexdigest()
        self._token_key = (settings.base_url, settings.login, digest)

    def __repr__(self) -> str:
        return f"AtolOnlineV5({self.settings.base_url!r}, group {self.settings.group_code!r})"

    # ----------------------------------------------------------------------- the two calls

    def submit(self, receipt: ReceiptToSend) -> SubmitResult:
        assert receipt.operation in ("sell", "sell_refund")
        body = receipt_body(receipt, self.settings)
        path = f"/{self.settings.group_code}/{receipt.operation}"
        try:
            with self._client() as client:
                response = self._authorised(client, "POST", path, body)
        except _Refused as refusal:
            return SubmitResult.refused(str(refusal))
        except (_Transient, httpx.HTTPError) as failure:
            return SubmitResult.transient(_failure_text(failure))
        result = self._submitted(response)
        log.info(
            "atol receipt sent",
            extra={"external_id": receipt.external_id, "outcome": result.outcome.value},
        )
        return result

    def report(self, uuid: str) -> ReportResult:
        if not _UUID.match(uuid):
            return ReportResult(ReportStatus.FAILED, error=f"{uuid!r} is not an ATOL uuid")
        path = f"/{self.settings.group_code}/report/{uuid}"
        try:
            with self._client() as client:
                response = self._authorised(client, "GET", path, None)
        except (_Refused, _Transient, httpx.HTTPError) as failure:
            # Asked about a receipt the service has: never given up on for a glitch (or a
            # changed password); the receipt waits and is asked about again.
            return ReportResult(ReportStatus.TRANSIENT, error=_failure_text(failure))
        return self._reported(response)

    # ----------------------------------------------------------------------- answers

    def _submitted(self, response: httpx.Response) -> SubmitResult:
        status = response.status_code
        if status >= 500 or status in TRANSIENT_HTTP:
            data = _json_of(response)
            error = _error_of(response, data)
            return SubmitResult.transient(error.describe() if error else _no_json(response))
        data = _json_of(response)
        if data is None:
            if status == 200:
                return SubmitResult.transient(_no_json(response))
            return SubmitResult.refused(_no_json(response) + "; check the register's address")
        error = _error_of(response, data)
        uuid = data.get("uuid")
        uuid = uuid if isinstance(uuid, str) and _UUID.match(uuid) else None
        if error is None and status == 200:
            if uuid is None:
                return SubmitResult.transient("ATOL accepted the receipt but gave no uuid")
            if data.get("status") == "fail":
                return SubmitResult.refused("ATOL refused the receipt without saying why")
            if data.get("status") == "done" and isinstance(data.get("payload"), dict):
                return SubmitResult.accepted(uuid, "done", plain_json(data["payload"]))
            return SubmitResult.accepted(uuid, "wait")
        if error is not None and error.code == EXTERNAL_ID_EXISTS and uuid is not None:
            # The service has this external_id already: the first sending got through and
            # its answer was lost. The same receipt, not a second one.
            return SubmitResult.accepted(uuid, "wait")
        if error is None:
            return SubmitResult.refused(f"ATOL answered HTTP {status} without an error")
        return SubmitResult.refused(error.describe())

    def _reported(self, response: httpx.Response) -> ReportResult:
        data = _json_of(response)
        error = _error_of(response, data)
        if data is None:
            return ReportResult(ReportStatus.TRANSIENT, error=_no_json(response))
        state = data.get("status")
        if response.status_code >= 500 or response.status_code in TRANSIENT_HTTP:
            text = error.describe() if error else f"ATOL answered HTTP {response.status_code}"
            return ReportResult(ReportStatus.TRANSIENT, error=text)
        if state == "done" and isinstance(data.get("payload"), dict):
            return ReportResult(ReportStatus.DONE, fiscal=plain_json(data["payload"]))
        if state == "fail":
            text = error.describe() if error else "ATOL reports the receipt failed"
            return ReportResult(ReportStatus.FAILED, error=text)
        if state == "wait" or (error is not None and error.code == STATE_NOT_FOUND):
            return ReportResult(ReportStatus.WAIT)
        text = error.describe() if error else f"ATOL answered status {state!r}"
        return ReportResult(ReportStatus.TRANSIENT, error=text)

    # ----------------------------------------------------------------------- HTTP

    def _client(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self.settings.timeout_ms / 1000),
            headers={"Content-Type": "application/json; charset=utf-8"},
            follow_redirects=False,
        )

    def _authorised(
        self, client: httpx.Client, method: str, path: str, body: dict[str, Any] | None
    ) -> httpx.Response:
        """The request with a token; once more with a new one if the service says the
        token is missing or expired. Any other 401 is a refusal."""
        content = None if body is None else dumps_exact(body).encode()
        url = self.settings.api_url + path
        token = self._token(client, renew=False)
        response = client.request(method, url, content=content, headers={"Token": token})
        error = _error_of(response, _json_of(response)) if response.status_code == 401 else None
        if error is not None and error.code in (MISSING_TOKEN, EXPIRED_TOKEN):
            self._drop_token(token)
            token = self._token(client, renew=True)
            response = client.request(method, url, content=content, headers={"Token": token})
        if response.status_code == 401:
            error = _error_of(response, _json_of(response))
            raise _Refused(error.describe() if error else "ATOL refused the token (HTTP 401)")
        return response

    def _token(self, client: httpx.Client, *, renew: bool) -> str:
        with _tokens_lock:
            kept = _tokens.get(self._token_key)
        now = time.monotonic()
        if kept is not None and not renew and now - kept.obtained_at < TOKEN_RENEW_AFTER_SECONDS:
            return kept.value
        body = {"login": self.settings.login, "pass": self.settings.password}
        response = client.post(
            self.settings.api_url + "/getToken", content=dumps_exact(body).encode()
        )
        data = _json_of(response)
        error = _error_of(response, data)
        if response.status_code >= 500 or response.status_code in TRANSIENT_HTTP:
            raise _Transient(
                error.describe() if error else f"getToken: HTTP {response.status_code}"
            )
        token = None if data is None else data.get("token")
        if response.status_code == 200 and error is None and isinstance(token, str) and token:
            with _tokens_lock:
                _tokens[self._token_key] = _Token(token, now)
            return token
        if error is not None:
            raise _Refused("getToken: " + error.describe())
        raise _Transient(f"getToken: HTTP {response.status_code} without a token")

    def _drop_token(self, token: str) -> None:
        with _tokens_lock:
            kept = _tokens.get(self._token_key)
            if kept is not None and kept.value == token:
                del _tokens[self._token_key]


def _failure_text(failure: Exception) -> str:
    if isinstance(failure, httpx.TimeoutException):
        return f"ATOL did not answer in time ({type(failure).__name__})"
    if isinstance(failure, httpx.HTTPError):
        return f"ATOL could not be reached: {type(failure).__name__}: {failure}"[:1000]
    return str(failure)[:1000]
