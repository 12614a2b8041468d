"""A stand-in for ATOL Online API v5 on 127.0.0.1, for tests (this package's and others').

It answers as the service's published protocol says (``kopilka.fiscal.atol`` has the
summary): ``getToken`` (wrong credentials: 401, code 12), tokens required in the
``Token`` header and expiring (401, codes 10 and 11), ``sell`` / ``sell_refund`` queue a
receipt and answer ``wait`` with a uuid, the same ``external_id`` again is 400 code 33
with the first receipt's uuid, a bad receipt is 400 code 32 (``fail``, the bad fields
named) and is not registered, ``report`` answers ``wait`` the first ``wait_polls`` times
and then ``done`` with fiscal data. Switches make it misbehave: ``fail(mode, times)``
answers 500, drops the connection or answers too late; ``fail_reports`` makes the
documents it registers from then on end in ``fail`` (type ``timeout``).

Usage::

    from tests.fiscal.atol_server import atol_stand_in

    with atol_stand_in() as atol:          # started on a free port, stopped after
        settings = atol.register_settings()  # a register's settings pointing at it
        ...
        assert atol.documents_by_external_id()["kopilka-1-hotel_payment-7"].status == "done"

or the ``atol`` fixture of ``tests/fiscal/conftest.py``.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOGIN = "kopilka-test"
PASSWORD = "s3cret-Pass"
GROUP_CODE = "kopilka-test_1"
INN = "5544332219"  # ATOL's test INN (valid check digit)
PAYMENT_ADDRESS = "https://hotel.example.ru"
COMPANY_EMAIL = "hotel@example.ru"

SNO = {"osn", "usn_income", "usn_income_outcome", "esn", "patent"}
VAT = {
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
}
METHODS = {
    "full_prepayment",
    "prepayment",
    "advance",
    "full_payment",
    "partial_payment",
    "credit",
    "credit_payment",
}
MAX_SUM = Decimal("42949672.95")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_PHONE = re.compile(r"^\+\d{1,19}$")
_STAMP = re.compile(r"^\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d$")


def _stamp() -> str:
    return datetime.now().strftime("%d.%m.%Y %H:%M:%S")


def inn_ok(inn: object) -> bool:
    if not isinstance(inn, str) or not inn.isdigit() or len(inn) not in (10, 12):
        return False
    d = [int(c) for c in inn]

    def check(weights: tuple[int, ...]) -> int:
        return sum(w * x for w, x in zip(weights, d, strict=False)) % 11 % 10

    if len(d) == 10:
        return check((2, 4, 10, 3, 5, 9, 4, 6, 8)) == d[9]
    return (
        check((7, 2, 4, 10, 3, 5, 9, 4, 6, 8)) == d[10]
        and check((3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)) == d[11]
    )


def _dumps(value: Any) -> bytes:
    """JSON with decimals written as numbers (as the service writes them)."""
    text = json.dumps(value, ensure_ascii=False, default=lambda d: f"\x00{d}\x00")
    return re.sub(r'"\\u0000([-0-9.]+)\\u0000"', r"\1", text).encode()


def _error(code: int, text: str, kind: str = "system") -> dict[str, Any]:
    return {"error_id": str(uuid.uuid4()), "code": code, "text": text, "type": kind}


@dataclass
class Document:
    """A receipt the stand-in registered."""

    uuid: str
    external_id: str
    operation: str
    body: dict[str, Any]
    fails: bool  # its report ends in fail (type timeout)
    number: int
    polls: int = 0
    status: str = "wait"  # wait, then done or fail once a report said so

    @property
    def total(self) -> Decimal:
        return Decimal(self.body["receipt"]["total"])


@dataclass
class Seen:
    method: str
    path: str
    token: str | None
    body: Any


@dataclass
class AtolStandIn:
    login: str = LOGIN
    password: str = PASSWORD
    group_code: str = GROUP_CODE
    wait_polls: int = 1  # report answers wait this many times, then done (or fail)
    token_ttl_seconds: float = 24 * 3600
    wait_as_not_found: bool = False  # "wait" answered as error 34 (StateCheckNotFound)
    fail_reports: bool = False  # documents registered from now on end in fail
    slow_seconds: float = 1.0
    documents: dict[str, Document] = field(default_factory=dict)  # by uuid
    requests: list[Seen] = field(default_factory=list)
    token_calls: int = 0
    _tokens: dict[str, float] = field(default_factory=dict)  # token -> expires (monotonic)
    _mode: str = "normal"
    _mode_left: int | None = None
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # ----------------------------------------------------------------------- handle

    @property
    def base_url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def register_settings(self, **overrides: Any) -> dict[str, Any]:
        """A register's settings that point at this stand-in (short timeout)."""
        settings = {
            "base_url": self.base_url,
            "login": self.login,
            "password": self.password,
            "group_code": self.group_code,
            "inn": INN,
            "payment_address": PAYMENT_ADDRESS,
            "sno": "usn_income",
            "company_email": COMPANY_EMAIL,
            "timeout_ms": 2000,
        }
        settings.update(overrides)
        return settings

    def fail(self, mode: str, times: int | None = None) -> None:
        """From now on answer ``500`` (code 50), ``drop`` the connection unanswered, or
        answer too ``slow`` (after ``slow_seconds``): ``times`` requests, or until
        ``fail("normal")``."""
        assert mode in ("normal", "500", "drop", "slow")
        with self._lock:
            self._mode, self._mode_left = mode, times

    def expire_tokens(self) -> None:
        """Every token given so far is expired (the service answers code 11)."""
        with self._lock:
            self._tokens = {token: 0.0 for token in self._tokens}

    def documents_by_external_id(self) -> dict[str, Document]:
        with self._lock:
            return {d.external_id: d for d in self.documents.values()}

    def paths(self) -> list[str]:
        with self._lock:
            return [f"{s.method} {s.path}" for s in self.requests]

    # ----------------------------------------------------------------------- life

    def start(self) -> AtolStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in._handle(self, "GET")

            def do_POST(self) -> None:
                stand_in._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ----------------------------------------------------------------------- requests

    def _take_mode(self) -> str:
        with self._lock:
            mode = self._mode
            if self._mode_left is not None:
                self._mode_left -= 1
                if self._mode_left <= 0:
                    self._mode, self._mode_left = "normal", None
            return mode

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw, parse_float=Decimal) if raw else None
        except ValueError:
            body = ValueError
        path = handler.path.split("?")[0]
        with self._lock:
            self.requests.append(Seen(method, path, handler.headers.get("Token"), body))
        mode = self._take_mode()
        if mode == "drop":
            handler.close_connection = True
            return  # nothing written: the client sees the connection closed
        if mode == "slow":
            time.sleep(self.slow_seconds)
        reply: dict[str, Any]
        if mode == "500":
            status, reply = (
                500,
                {"error": _error(50, "Ошибка сервера. Обратитесь к Администратору.")},
            )
        else:
            status, reply = self._answer(handler, method, path, body)
        reply.setdefault("timestamp", _stamp())
        data = _dumps(reply)
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting (the "slow" mode)

    def _answer(
        self, handler: BaseHTTPRequestHandler, method: str, path: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        prefix = "/possystem/v5/"
        if not path.startswith(prefix):
            return 404, {"error": _error(40, "Некорректный запрос.")}
        rest = path[len(prefix) :]
        if rest == "getToken" and method == "POST":
            return self._get_token(body)
        parts = rest.split("/")
        token_problem = self._check_token(handler.headers.get("Token"))
        if token_problem is not None:
            return token_problem
        group = parts[0]
        if group != self.group_code:
            return 401, {
                "error": _error(20, "Код группы, указанный в запросе, не соответствует токену.")
            }
        if len(parts) == 3 and parts[1] == "report" and method == "GET":
            return self._report(parts[2])
        if len(parts) == 2 and method == "POST":
            if "application/json" not in (handler.headers.get("Content-Type") or ""):
                ctype = handler.headers.get("Content-Type")
                return 415, {"error": _error(41, f"Некорректный Content-Type: {ctype}.")}
            return self._register(parts[1], body)
        return 400, {"error": _error(40, "Некорректный запрос.")}

    def _get_token(self, body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.token_calls += 1
        if not isinstance(body, dict) or not body.get("login") or not body.get("pass"):
            return 400, {
                "error": _error(13, "Ошибка валидации входящего запроса. Ошибочные поля: login."),
                "token": None,
            }
        if body["login"] != self.login or body["pass"] != self.password:
            return 401, {"error": _error(12, "Неверный логин или пароль"), "token": None}
        token = uuid.uuid4().hex
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl_seconds
        return 200, {"error": None, "token": token}

    def _check_token(self, token: str | None) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            expires = None if token is None else self._tokens.get(token)
        if expires is None:
            return 401, {"error": _error(10, "Не распознан токен запроса")}
        if expires <= time.monotonic():
            return 401, {"error": _error(11, "Переданный токен не активен")}
        return None

    def _register(self, operation: str, body: Any) -> tuple[int, dict[str, Any]]:
        if operation not in ("sell", "sell_refund"):
            return 400, {"error": _error(31, f'Операция "{operation}" не поддерживается.')}
        if body is ValueError or not isinstance(body, dict):
            return 400, {"error": _error(40, "Некорректный запрос.")}
        external_id = body.get("external_id")
        with self._lock:
            for document in self.documents.values():
                if document.external_id == external_id:
                    text = (
                        f"В системе существует чек с external_id : {external_id} "
                        f"и group_code: {self.group_code}"
                    )
                    return 400, {"uuid": document.uuid, "status": "wait", "error": _error(33, text)}
        bad = receipt_problems(body)
        if bad:
            text = "Ошибка валидации входного чека. Ошибочные поля : " + ", ".join(bad)
            return 400, {"uuid": None, "status": "fail", "error": _error(32, text)}
        with self._lock:
            document = Document(
                uuid=str(uuid.uuid4()),
                external_id=str(external_id),
                operation=operation,
                body=body,
                fails=self.fail_reports,
                number=next(self._numbers),
            )
            self.documents[document.uuid] = document
        return 200, {"uuid": document.uuid, "status": "wait", "error": None}

    def _report(self, doc_uuid: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            document = self.documents.get(doc_uuid)
            if document is not None:
                document.polls += 1
                polls = document.polls
        if document is None:
            text = f'Передан некорректный UUID : "{doc_uuid}". Необходимо повторить запрос.'
            return 400, {"uuid": doc_uuid, "status": "fail", "error": _error(30, text)}
        reply: dict[str, Any] = {
            "uuid": document.uuid,
            "group_code": self.group_code,
            "daemon_code": "stand-in-1",
            "device_code": "KKT000001",
            "external_id": document.external_id,
            "callback_url": "",
            "payload": None,
        }
        if polls <= self.wait_polls:
            if self.wait_as_not_found:
                text = "Состояние чека не найдено. Попробуйте позднее."
                return 200, {**reply, "status": "wait", "error": _error(34, text)}
            return 200, {**reply, "status": "wait", "error": None}
        document.status = "fail" if document.fails else "done"
        if document.fails:
            text = "Превышено время ожидания чека в очереди."
            return 200, {**reply, "status": "fail", "error": _error(1, text, "timeout")}
        reply["payload"] = {
            "total": document.total,
            "fns_site": "www.nalog.gov.ru",
            "fn_number": "9999078902004236",
            "shift_number": 23,
            "receipt_datetime": _stamp(),
            "fiscal_receipt_number": document.number,
            "fiscal_document_number": 100 + document.number,
            "ecr_registration_number": "0000111118041361",
            "fiscal_document_attribute": 3449555941 + document.number,
            "ofd_inn": "7704211201",
            "ofd_receipt_url": f"https://ofd.example/receipt/{document.uuid}",
        }
        return 200, {**reply, "status": "done", "error": None}


def _decimal(value: Any, places: int) -> Decimal | None:
    """A JSON number with at most ``places`` decimals (a string or a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    number = Decimal(value)
    if number != number.quantize(Decimal(1).scaleb(-places)):
        return None
    return number


def receipt_problems(body: dict[str, Any]) -> list[str]:
    """The fields the service would name in error 32 (IncomingValidationException)."""
    bad: list[str] = []
    external_id = body.get("external_id")
    if not isinstance(external_id, str) or not 1 <= len(external_id) <= 128:
        bad.append("external_id")
    if not isinstance(body.get("timestamp"), str) or not _STAMP.match(body["timestamp"]):
        bad.append("timestamp")
    receipt = body.get("receipt")
    if not isinstance(receipt, dict):
        return [*bad, "receipt"]
    client: dict[str, Any] = receipt["client"] if isinstance(receipt.get("client"), dict) else {}
    email, phone = client.get("email"), client.get("phone")
    if email is None and phone is None:
        bad.append("receipt.client")
    if email is not None and (not isinstance(email, str) or not _EMAIL.match(email)):
        bad.append("receipt.client.email")
    if phone is not None and (not isinstance(phone, str) or not _PHONE.match(phone)):
        bad.append("receipt.client.phone")
    company: dict[str, Any] = receipt["company"] if isinstance(receipt.get("company"), dict) else {}
    if not inn_ok(company.get("inn")):
        bad.append("receipt.company.inn")
    if not isinstance(company.get("email"), str) or not _EMAIL.match(company["email"]):
        bad.append("receipt.company.email")
    if company.get("sno") not in SNO:
        bad.append("receipt.company.sno")
    address = company.get("payment_address")
    if not isinstance(address, str) or not 1 <= len(address) <= 256:
        bad.append("receipt.company.payment_address")
    items = receipt.get("items")
    items_total = Decimal(0)
    if not isinstance(items, list) or not 1 <= len(items) <= 100:
        bad.append("receipt.items")
        items = []
    for index, item in enumerate(items):
        where = f"receipt.items[{index}]"
        if not isinstance(item, dict):
            bad.append(where)
            continue
        name = item.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            bad.append(f"{where}.name")
        price, quantity, amount = (
            _decimal(item.get("price"), 2),
            _decimal(item.get("quantity"), 3),
            _decimal(item.get("sum"), 2),
        )
        if price is None or not 0 <= price <= MAX_SUM:
            bad.append(f"{where}.price")
        if quantity is None or not 0 < quantity <= Decimal("99999.999"):
            bad.append(f"{where}.quantity")
        if amount is None or not 0 <= amount <= MAX_SUM:
            bad.append(f"{where}.sum")
        elif price is not None and quantity is not None:
            if abs(price * quantity - amount) > Decimal("0.01"):
                bad.append(f"{where}.sum")
            items_total += amount
        if isinstance(item.get("measure"), bool) or not isinstance(item.get("measure"), int):
            bad.append(f"{where}.measure")
        if item.get("payment_method") not in METHODS:
            bad.append(f"{where}.payment_method")
        payment_object = item.get("payment_object")
        if (
            isinstance(payment_object, bool)
            or not isinstance(payment_object, int)
            or not 1 <= payment_object <= 33
        ):
            bad.append(f"{where}.payment_object")
        vat = item.get("vat")
        if not isinstance(vat, dict) or vat.get("type") not in VAT:
            bad.append(f"{where}.vat.type")
    payments = receipt.get("payments")
    payments_total = Decimal(0)
    if not isinstance(payments, list) or not 1 <= len(payments) <= 10:
        bad.append("receipt.payments")
        payments = []
    for index, payment in enumerate(payments):
        where = f"receipt.payments[{index}]"
        kind = payment.get("type") if isinstance(payment, dict) else None
        paid = _decimal(payment.get("sum"), 2) if isinstance(payment, dict) else None
        if isinstance(kind, bool) or not isinstance(kind, int) or not 0 <= kind <= 9:
            bad.append(f"{where}.type")
        if paid is None or not 0 < paid <= MAX_SUM:
            bad.append(f"{where}.sum")
        else:
            payments_total += paid
    total = _decimal(receipt.get("total"), 2)
    if total is None or total != items_total or total != payments_total:
        bad.append("receipt.total")
    return bad


@contextmanager
def atol_stand_in(**options: Any) -> Iterator[AtolStandIn]:
    """An ``AtolStandIn`` started on a free port of 127.0.0.1, stopped afterwards; the
    tokens Kopilka keeps are forgotten first, so each test starts with none."""
    from kopilka.fiscal.atol import forget_tokens

    forget_tokens()
    stand_in = AtolStandIn(**options).start()
    try:
        yield stand_in
    finally:
        stand_in.close()
