"""The external loyalty centre is another Kopilka server (SPEC H-5, seed 000's "Kontur").

A second Kopilka runs in a process of its own on loopback with its own SQLite database
(``centre.py``); the hotel's ``ExternalCentreProvider`` asks it for a card's balances,
writes points off, asks again after a timeout, gives points back, and meets its
refusals as the same errors its own ledger raises. A centre that does not answer, or
answers what no processing centre would (a stand-in on loopback: 500, garbage, a wrong
shape, a web page, slowness, a refused key), is ``loyalty_centre_unavailable`` (503),
and the key is never in what is said or logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.errors import (
    Conflict,
    InvalidInput,
    KopilkaError,
    NotFound,
    Refused,
    Unavailable,
)
from kopilka.hotel import loyalty_centre as lc
from kopilka.hotel.loyalty_provider import (
    CardBalances,
    ExternalCentreProvider,
    OwnLedgerProvider,
    PointsBalance,
    provider_for,
)
from kopilka.loyalty.schema import loyalty_redemptions
from tests.web.conftest import text_of

from .centre import Centre, free_port, running_centre
from .conftest import Hotel


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Centre]:
    with running_centre(tmp_path_factory.mktemp("centre")) as running:
        yield running


def provider(centre: Centre, **fields: Any) -> ExternalCentreProvider:
    settings: dict[str, Any] = {
        "base_url": centre.url,
        "api_key": centre.key,
        "timeout_ms": 10_000,
        "exponents": {"BONUS": 2, "MILES": 0},
        **fields,
    }
    return ExternalCentreProvider(**settings)


def op() -> str:
    return f"folio-payment:{uuid.uuid4().hex[:12]}"


def test_a_hotel_pays_with_the_centres_points_and_gives_some_back(centre: Centre) -> None:
    card = centre.card(5000_00, holder_name="Анна Кузнецова")
    kontur = provider(centre)

    assert kontur.card_balances(card.number) == CardBalances(
        card.number, "Анна Кузнецова", "active", (PointsBalance("BONUS", 2, 5000_00),)
    )
    operation = op()
    paid = kontur.redeem(
        number=card.number,
        unit_code="BONUS",
        amount_minor=3000_00,
        operation_id=operation,
        description="hotel folio 7",
    )
    assert (paid.unit_code, paid.amount_minor, paid.replayed) == ("BONUS", 3000_00, False)
    # Asked again (say, after a timeout): the first answer, nothing more taken.
    again = kontur.redeem(
        number=card.number,
        unit_code="BONUS",
        amount_minor=3000_00,
        operation_id=operation,
        description="hotel folio 7",
    )
    assert (again.ref, again.replayed) == (paid.ref, True)
    assert kontur.card_balances(card.number).of("BONUS") == PointsBalance("BONUS", 2, 2000_00)

    # A new provider (another request) gives back part of it, once.
    back = provider(centre).refund(ref=paid.ref, amount_minor=1000_00, operation_id="undo-1")
    assert (back.unit_code, back.amount_minor, back.replayed) == ("BONUS", 1000_00, False)
    assert back.ref != paid.ref
    assert kontur.refund(ref=paid.ref, amount_minor=1000_00, operation_id="undo-1").replayed
    with pytest.raises(Conflict) as given_back:
        kontur.redeem(
            number=card.number,
            unit_code="BONUS",
            amount_minor=3000_00,
            operation_id=operation,
            description="hotel folio 7",
        )
    assert given_back.value.code == "redemption_refunded"
    assert kontur.card_balances(card.number).of("BONUS") == PointsBalance("BONUS", 2, 3000_00)

    # At the centre: one write-off and one refund, by the hotel's terminal.
    with read_only(centre.engine) as conn:
        found = conn.execute(
            select(loyalty_redemptions.c.kind, loyalty_redemptions.c.channel)
            .where(loyalty_redemptions.c.card_id == card.id)
            .order_by(loyalty_redemptions.c.id)
        ).all()
    channel = f"terminal:{centre.terminal_id}"
    assert [tuple(row) for row in found] == [("redeem", channel), ("refund", channel)]
    centre.assert_clean()


def test_the_centres_refusals_are_the_same_errors_as_the_own_ledgers(centre: Centre) -> None:
    card = centre.card(100_00)
    kontur = provider(centre)

    def redeem(amount_minor: int, number: str = card.number, operation_id: str = "") -> Any:
        return kontur.redeem(
            number=number,
            unit_code="BONUS",
            amount_minor=amount_minor,
            operation_id=operation_id or op(),
            description="hotel folio 8",
        )

    cases: list[tuple[Callable[[], object], type[KopilkaError], str]] = [
        (lambda: redeem(100_01), Refused, "insufficient_points"),
        (lambda: redeem(1, number="99999999"), NotFound, "card_not_found"),
        (lambda: kontur.card_balances("99999999"), NotFound, "card_not_found"),
        (lambda: kontur.card_balances("ABCD"), InvalidInput, "invalid_card_number"),
        (lambda: kontur.refund(ref="999999", amount_minor=1, operation_id=op()), NotFound, ""),
    ]
    for call, error, code in cases:
        with pytest.raises(error) as refused:
            call()
        assert refused.value.code == (code or "redemption_not_found"), refused.value
        assert refused.value.detail

    paid = redeem(60_00, operation_id="pay-once")
    with pytest.raises(Conflict) as conflict:
        redeem(50_00, operation_id="pay-once")
    assert conflict.value.code == "idempotency_conflict"
    with pytest.raises(Refused) as too_much:
        kontur.refund(ref=paid.ref, amount_minor=60_01, operation_id=op())
    assert too_much.value.code == "refund_too_large"

    centre.block(card)
    with pytest.raises(Refused) as blocked:
        redeem(1_00)
    assert blocked.value.code == "card_blocked"
    assert kontur.card_balances(card.number).status == "blocked"

    centre.loyalty(False)
    try:
        with pytest.raises(Refused) as switched_off:
            kontur.card_balances(card.number)
        assert switched_off.value.code == "loyalty_module_disabled"
    finally:
        centre.loyalty(True)
    centre.assert_clean()


def test_another_tenants_key_at_the_centre_sees_nothing(centre: Centre) -> None:
    card = centre.card(100_00)
    paid = provider(centre).redeem(
        number=card.number,
        unit_code="BONUS",
        amount_minor=10_00,
        operation_id=op(),
        description="",
    )
    elsewhere = provider(centre, api_key=centre.other_key)
    with pytest.raises(NotFound):
        elsewhere.card_balances(card.number)
    with pytest.raises(NotFound):
        elsewhere.refund(ref=paid.ref, amount_minor=10_00, operation_id=op())


def test_amounts_are_counted_in_the_hotels_own_units(centre: Centre) -> None:
    """The hotel keeps MILES with 2 decimals, the centre whole ones; BONUS the other
    way round. Amounts cross as decimal strings, exactly, or not at all."""
    miles = centre.card(150, unit="MILES")
    bonus = centre.card(5000_75)
    hotel_side = provider(centre, exponents={"MILES": 2, "BONUS": 0})

    assert hotel_side.card_balances(miles.number).of("MILES") == PointsBalance("MILES", 2, 150_00)
    # 5000.75 at the centre: 5000 whole points here (rounded down, never up).
    assert hotel_side.card_balances(bonus.number).of("BONUS") == PointsBalance("BONUS", 0, 5000)
    paid = hotel_side.redeem(
        number=miles.number,
        unit_code="MILES",
        amount_minor=50_00,
        operation_id=op(),
        description="",
    )
    assert paid.amount_minor == 50_00
    with pytest.raises(InvalidInput) as too_fine:
        hotel_side.redeem(
            number=miles.number,
            unit_code="MILES",
            amount_minor=50_50,
            operation_id=op(),
            description="",
        )
    assert too_fine.value.code == "amount_too_precise"
    # A unit the hotel does not keep: counted as the centre counts it.
    stranger = provider(centre, exponents={})
    assert stranger.card_balances(miles.number).of("MILES") == PointsBalance("MILES", 0, 100)
    fresh = provider(centre, exponents={})
    taken = fresh.redeem(
        number=miles.number, unit_code="MILES", amount_minor=10, operation_id=op(), description=""
    )
    assert taken.amount_minor == 10
    with pytest.raises(Refused) as no_such:
        provider(centre, exponents={}).redeem(
            number=miles.number,
            unit_code="BONUS",
            amount_minor=1,
            operation_id=op(),
            description="",
        )
    assert no_such.value.code == "points_unit_mismatch"
    assert provider(centre, exponents={}).card_balances(miles.number).of("MILES") == (
        PointsBalance("MILES", 0, 90)
    )


def test_a_centre_that_stops_answering_is_unavailable_and_asking_again_is_safe(
    centre: Centre,
) -> None:
    card = centre.card(1000_00)
    impatient = provider(centre, timeout_ms=300)
    operation = op()
    with centre.paused(), pytest.raises(Unavailable) as timed_out:
        impatient.redeem(
            number=card.number,
            unit_code="BONUS",
            amount_minor=400_00,
            operation_id=operation,
            description="hotel folio 9",
        )
    error = timed_out.value
    assert (error.code, error.status, error.params["reason"]) == (
        "loyalty_centre_unavailable",
        503,
        "timeout",
    )
    assert "0.3 s" not in error.detail and "300 ms" in error.detail
    # The centre took the request from its queue once it woke; the same operation again
    # answers with that one write-off, never a second.
    again = provider(centre).redeem(
        number=card.number,
        unit_code="BONUS",
        amount_minor=400_00,
        operation_id=operation,
        description="hotel folio 9",
    )
    assert again.amount_minor == 400_00
    for _ in range(50):
        if provider(centre).card_balances(card.number).balances[0].balance_minor == 600_00:
            break
        time.sleep(0.1)
    assert provider(centre).card_balances(card.number).balances[0].balance_minor == 600_00


def test_nothing_listening_is_unavailable(centre: Centre, caplog: pytest.LogCaptureFixture) -> None:
    gone = ExternalCentreProvider(
        base_url=f"http://127.0.0.1:{free_port()}", api_key=centre.key, timeout_ms=2000
    )
    with (
        caplog.at_level(logging.WARNING, logger="kopilka.hotel.loyalty_centre"),
        pytest.raises(Unavailable) as unreachable,
    ):
        gone.card_balances("7700000000001")
    error = unreachable.value
    assert (error.code, error.params["reason"]) == ("loyalty_centre_unavailable", "unreachable")
    assert "cannot be reached" in error.detail
    said = " ".join([str(error), repr(error), repr(gone), caplog.text, json.dumps(error.params)])
    assert centre.key not in said and centre.key[10:] not in said


# --------------------------------------------------------------------------- stand-ins

# (status, content type, body, seconds to wait first) by the first part of the path.
BEHAVIOURS: dict[str, tuple[int, str, bytes, float]] = {
    "error": (500, "application/problem+json", b'{"code": "internal_error"}', 0),
    "busy": (503, "application/problem+json", b'{"code": "service_unavailable"}', 0),
    "garbage": (200, "application/json", b"<<not json>>", 0),
    "shape": (200, "application/json", b'{"number": 7, "balances": "lots"}', 0),
    "page": (404, "text/html", b"<html><body>Not here</body></html>", 0),
    "route": (404, "application/problem+json", b'{"code": "not_found", "detail": "no"}', 0),
    "slow": (200, "application/json", b"{}", 2.0),
    "key": (401, "application/problem+json", b'{"code": "not_authenticated"}', 0),
    "moved": (302, "text/plain", b"", 0),
}


class _StandIn(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self) -> None:
        status, content_type, body, delay = BEHAVIOURS[self.path.split("/")[1]]
        time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 302:
            self.send_header("Location", "https://elsewhere.example/")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the slow answer meets a client that has gone: expected


@pytest.fixture(scope="module")
def stand_in() -> Iterator[str]:
    server = _Quiet(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("error", "error"),
        ("busy", "error"),
        ("garbage", "malformed"),
        ("shape", "malformed"),
        ("page", "malformed"),
        ("route", "malformed"),
        ("slow", "timeout"),
        ("key", "rejected_key"),
        ("moved", "error"),
    ],
)
def test_a_centre_answering_what_no_centre_would_is_unavailable(
    stand_in: str, behaviour: str, reason: str
) -> None:
    key = "kpt_0123456789ab_secret-part-of-the-key"
    broken = ExternalCentreProvider(base_url=f"{stand_in}/{behaviour}", api_key=key, timeout_ms=300)
    calls: list[Callable[[], object]] = [
        lambda: broken.card_balances("7700000000001"),
        lambda: broken.redeem(
            number="7700000000001",
            unit_code="BONUS",
            amount_minor=1,
            operation_id=op(),
            description="",
        ),
    ]
    for call in calls:
        with pytest.raises(Unavailable) as unavailable:
            call()
        error = unavailable.value
        assert (error.code, error.status, error.params["reason"]) == (
            "loyalty_centre_unavailable",
            503,
            reason,
        )
        assert "secret" not in error.detail and key not in str(error.params)


# --------------------------------------------------------------------------- the choice


def test_the_tenants_setting_picks_the_provider(
    centre: Centre, hotel: Hotel, engine: Engine
) -> None:
    actor = Actor.cli("tests")

    def chosen() -> Any:
        with engine.begin() as conn:
            return provider_for(conn, tenant_id=hotel.t, actor=actor)

    assert isinstance(chosen(), OwnLedgerProvider)
    hotel.tx(
        lambda c: lc.set_centre(
            c, tenant_id=hotel.t, base_url=centre.url + "/", api_key=centre.key, actor=actor
        )
    )
    external = chosen()
    assert isinstance(external, ExternalCentreProvider) and external.name == "external"
    card = centre.card(700_00)
    # The hotel's own BONUS has 2 decimals, as the centre's.
    assert external.card_balances(card.number).of("BONUS") == PointsBalance("BONUS", 2, 700_00)
    checked = external.check(card.number)
    assert {u.unit_code: u.exponent for u in checked.units} == {"BONUS": 2, "MILES": 0}
    assert checked.card is not None and checked.card.number == card.number

    hotel.tx(
        lambda c: lc.set_centre(
            c, tenant_id=hotel.t, base_url=centre.url, api_key=None, enabled=False, actor=actor
        )
    )
    assert isinstance(chosen(), OwnLedgerProvider)
    hotel.tx(lambda c: lc.clear_centre(c, tenant_id=hotel.t, actor=actor))
    assert isinstance(chosen(), OwnLedgerProvider)


def test_the_log_of_the_centre_shows_no_error(centre: Centre) -> None:
    text = Path(centre.log).read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]


def test_test_connection_on_screen_asks_the_centre(centre: Centre, desk: Any) -> None:
    card = centre.card(1234_50, holder_name="Анна Кузнецова")
    owner = desk.sign_in("owner")
    form = {"mode": "external", "base_url": centre.url, "timeout_ms": "5000", "enabled": "y"}
    assert (
        owner.post("/settings/loyalty-centre", {**form, "api_key": centre.key}).status_code == 303
    )

    found = owner.post("/settings/loyalty-centre/check", {"card": card.number})
    text = text_of(found.text)
    assert "Центр отвечает. Его баллы: BONUS (бонусы), MILES (мили)" in text
    assert f"Карта {card.number}, Анна Кузнецова: 1 234,50 BONUS (Активна)" in text
    unknown = owner.post("/settings/loyalty-centre/check", {"card": "99999999"})
    assert "Центр отвечает, но карты с номером 99999999 в нём нет." in text_of(unknown.text)

    wrong_key = {**form, "api_key": "kpt_000000000000_not-a-key-of-the-centre"}
    assert owner.post("/settings/loyalty-centre", wrong_key).status_code == 303
    refused = owner.post("/settings/loyalty-centre/check", {"card": ""})
    assert "Центр не принял ключ: введите ключ, который он выдал." in text_of(refused.text)


def test_what_cannot_be_sent_is_refused_before_anything_is_sent(centre: Centre) -> None:
    card = centre.card(100_00)
    kontur = provider(centre)
    for operation_id, amount in (("оплата-1", 1_00), ("", 1_00), ("x" * 101, 1_00), (op(), 0)):
        with pytest.raises(InvalidInput):
            kontur.redeem(
                number=card.number,
                unit_code="BONUS",
                amount_minor=amount,
                operation_id=operation_id,
                description="",
            )
    assert kontur.card_balances(card.number).balances[0].balance_minor == 100_00
