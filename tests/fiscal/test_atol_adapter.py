"""The ATOL Online v5 adapter against the stand-in: tokens, sell, refund, report, the
duplicate external_id, refusals with ATOL's codes, and transient failures."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kopilka.fiscal.adapters import ReceiptToSend, ReportStatus, SubmitOutcome
from kopilka.fiscal.atol import AtolOnlineV5, AtolSettings, parse_settings
from tests.fiscal.atol_server import AtolStandIn
from tests.fiscal.conftest import payload

MOMENT = datetime(2026, 3, 1, 9, 30, 5, tzinfo=UTC)  # 12:30:05 in Moscow


def adapter(atol: AtolStandIn, **overrides: Any) -> AtolOnlineV5:
    return AtolOnlineV5(parse_settings(atol.register_settings(**overrides)))


def receipt(
    external_id: str = "kopilka-1-hotel_payment-1", operation: str = "sell", **fields: Any
) -> ReceiptToSend:
    values: dict[str, Any] = {
        "operation": operation,
        "external_id": external_id,
        "payload": payload(),
        "email": "guest@example.ru",
        "phone": None,
        "moment": MOMENT,
    }
    values.update(fields)
    return ReceiptToSend(**values)


def test_a_sale_is_queued_reported_waiting_then_done_with_fiscal_data(atol: AtolStandIn) -> None:
    register = adapter(atol)
    sent = register.submit(receipt())
    assert sent.outcome == SubmitOutcome.ACCEPTED and sent.status == "wait"
    assert sent.uuid is not None
    assert atol.paths() == [
        "POST /possystem/v5/getToken",
        f"POST /possystem/v5/{atol.group_code}/sell",
    ]
    first = register.report(sent.uuid)
    assert first.status == ReportStatus.WAIT and first.fiscal is None
    done = register.report(sent.uuid)
    assert done.status == ReportStatus.DONE and done.fiscal is not None
    assert done.fiscal["total"] == "3500.00"  # kept as a decimal string, never a float
    for key in ("fn_number", "fiscal_document_number", "fiscal_document_attribute"):
        assert done.fiscal[key]
    assert atol.token_calls == 1  # one token for all three requests


def test_the_request_body_speaks_atol_v5_with_exact_decimals(atol: AtolStandIn) -> None:
    body = payload(
        ("Проживание", 350_000, 2000),
        ("Минибар: вода", 15_050, 3000),
        payments=(("card", 500_000), ("points", 45_150), ("bank_transfer", 200_000)),
        payment_object="service",
        vat="vat20",
    )
    sent = adapter(atol).submit(receipt(payload=body, phone="+79123456789"))
    assert sent.outcome == SubmitOutcome.ACCEPTED
    seen = atol.requests[-1]
    assert seen.token and seen.path.endswith("/sell")
    assert seen.body["external_id"] == "kopilka-1-hotel_payment-1"
    assert seen.body["timestamp"] == "01.03.2026 12:30:05"
    sent_receipt = seen.body["receipt"]
    assert sent_receipt["client"] == {"email": "guest@example.ru", "phone": "+79123456789"}
    assert sent_receipt["company"] == {
        "email": "hotel@example.ru",
        "sno": "usn_income",
        "inn": "5544332219",
        "payment_address": "https://hotel.example.ru",
    }
    first, second = sent_receipt["items"]
    assert (first["price"], first["quantity"], first["sum"]) == (
        Decimal("3500.00"),
        Decimal("2.000"),
        Decimal("7000.00"),
    )
    assert (second["price"], second["quantity"], second["sum"]) == (
        Decimal("150.50"),
        Decimal("3.000"),
        Decimal("451.50"),
    )
    assert first["payment_method"] == "full_payment" and first["payment_object"] == 4
    assert first["measure"] == 0 and first["vat"] == {"type": "vat20"}
    # Card and bank transfer are both cashless (1); points are "another form" (4).
    assert sent_receipt["payments"] == [
        {"type": 1, "sum": Decimal("7000.00")},
        {"type": 4, "sum": Decimal("451.50")},
    ]
    assert sent_receipt["total"] == Decimal("7451.50")


def test_a_refund_goes_to_sell_refund(atol: AtolStandIn) -> None:
    sent = adapter(atol).submit(receipt("kopilka-1-hotel_refund-1", "sell_refund"))
    assert sent.outcome == SubmitOutcome.ACCEPTED
    assert atol.paths()[-1] == f"POST /possystem/v5/{atol.group_code}/sell_refund"
    assert atol.documents_by_external_id()["kopilka-1-hotel_refund-1"].operation == "sell_refund"


def test_the_same_external_id_again_is_the_same_receipt(atol: AtolStandIn) -> None:
    register = adapter(atol)
    first = register.submit(receipt())
    again = register.submit(receipt())
    assert again.outcome == SubmitOutcome.ACCEPTED and again.uuid == first.uuid
    assert len(atol.documents) == 1  # printed once


def test_an_expired_token_is_renewed_once_and_the_request_repeated(atol: AtolStandIn) -> None:
    register = adapter(atol)
    register.submit(receipt("kopilka-1-hotel_payment-1"))
    atol.expire_tokens()
    sent = register.submit(receipt("kopilka-1-hotel_payment-2"))
    assert sent.outcome == SubmitOutcome.ACCEPTED
    assert atol.token_calls == 2
    assert atol.paths()[-3:] == [
        f"POST /possystem/v5/{atol.group_code}/sell",  # refused: code 11, ExpiredToken
        "POST /possystem/v5/getToken",
        f"POST /possystem/v5/{atol.group_code}/sell",
    ]


def test_a_token_the_service_does_not_know_is_replaced(atol: AtolStandIn) -> None:
    register = adapter(atol)
    register.submit(receipt("kopilka-1-hotel_payment-1"))
    atol._tokens.clear()  # the service forgot it (code 10, MissingToken)
    assert register.submit(receipt("kopilka-1-hotel_payment-2")).outcome == "accepted"
    assert atol.token_calls == 2


def test_wrong_credentials_are_a_refusal_in_atols_words(atol: AtolStandIn) -> None:
    sent = adapter(atol, password="wrong").submit(receipt())
    assert sent.outcome == SubmitOutcome.REFUSED
    assert (
        sent.error is not None and "12" in sent.error and "Неверный логин или пароль" in sent.error
    )
    assert "wrong" not in sent.error  # the password is never repeated
    assert atol.documents == {}


def test_a_group_code_of_another_login_is_refused(atol: AtolStandIn) -> None:
    sent = adapter(atol, group_code="someone-else_2").submit(receipt())
    assert sent.outcome == SubmitOutcome.REFUSED and sent.error is not None
    assert "ATOL 20" in sent.error


def test_bad_receipts_are_refused_with_the_fields_named(atol: AtolStandIn) -> None:
    settings = parse_settings(atol.register_settings())
    # The checks Kopilka makes itself are bypassed here, to see the service's own.
    bad_inn = AtolOnlineV5(replace(settings, inn="5544332210"))
    refused = bad_inn.submit(receipt())
    assert refused.outcome == SubmitOutcome.REFUSED and refused.error is not None
    assert "ATOL 32" in refused.error and "receipt.company.inn" in refused.error

    bad_email = adapter(atol).submit(receipt(email="guest@", external_id="kopilka-1-x-2"))
    assert bad_email.outcome == SubmitOutcome.REFUSED and bad_email.error is not None
    assert "receipt.client.email" in bad_email.error

    body = payload()
    body["items"][0]["amount_minor"] += 100  # the item's sum is not its price times quantity
    mismatch = adapter(atol).submit(receipt(payload=body, external_id="kopilka-1-x-3"))
    assert mismatch.outcome == SubmitOutcome.REFUSED and mismatch.error is not None
    assert "receipt.items[0].sum" in mismatch.error and "receipt.total" in mismatch.error
    assert atol.documents == {}

    # A refused receipt was not registered: its external_id may be sent again, corrected.
    assert adapter(atol).submit(receipt(external_id="kopilka-1-x-3")).outcome == "accepted"


def test_server_errors_dropped_connections_and_timeouts_are_transient(atol: AtolStandIn) -> None:
    register = adapter(atol)
    atol.fail("500")
    failed = register.submit(receipt())
    assert failed.outcome == SubmitOutcome.TRANSIENT and failed.error is not None
    assert "HTTP 500" in failed.error

    atol.fail("drop")
    dropped = register.submit(receipt())
    assert dropped.outcome == SubmitOutcome.TRANSIENT and dropped.error is not None
    assert "could not be reached" in dropped.error

    atol.fail("slow")
    atol.slow_seconds = 0.5
    slow = adapter(atol, timeout_ms=100).submit(receipt())
    assert slow.outcome == SubmitOutcome.TRANSIENT and slow.error is not None
    assert "in time" in slow.error

    atol.fail("normal")
    assert register.submit(receipt()).outcome == SubmitOutcome.ACCEPTED
    assert len(atol.documents) == 1


def test_a_service_that_is_not_there_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    settings = AtolSettings(
        base_url=f"http://127.0.0.1:{port}",
        login="x",
        password="y",
        group_code="g",
        inn="5544332219",
        payment_address="https://hotel.example.ru",
        sno="osn",
        company_email="hotel@example.ru",
        timeout_ms=500,
    )
    sent = AtolOnlineV5(settings).submit(receipt())
    assert sent.outcome == SubmitOutcome.TRANSIENT
    report = AtolOnlineV5(settings).report("0b5c7d4e-1c2a-4b5f-9a8e-7f6d5c4b3a21")
    assert report.status == ReportStatus.TRANSIENT


def test_reports_of_failed_unknown_and_not_yet_found_receipts(atol: AtolStandIn) -> None:
    register = adapter(atol)
    atol.fail_reports = True
    atol.wait_as_not_found = True
    sent = register.submit(receipt())
    assert sent.uuid is not None
    waiting = register.report(sent.uuid)  # code 34, StateCheckNotFound: still waiting
    assert waiting.status == ReportStatus.WAIT
    failed = register.report(sent.uuid)
    assert failed.status == ReportStatus.FAILED and failed.error is not None
    assert "timeout" in failed.error and "Превышено время ожидания" in failed.error

    unknown = register.report("0b5c7d4e-1c2a-4b5f-9a8e-7f6d5c4b3a21")
    assert unknown.status == ReportStatus.FAILED and unknown.error is not None
    assert "ATOL 30" in unknown.error
    assert register.report("../../etc").status == ReportStatus.FAILED  # never sent

    atol.fail("500", times=1)
    assert register.report(sent.uuid).status == ReportStatus.TRANSIENT
    # While the credentials are wrong a waiting receipt is not given up on.
    broken = adapter(atol, password="changed")
    assert broken.report(sent.uuid).status == ReportStatus.TRANSIENT


def test_the_password_stays_out_of_reprs(atol: AtolStandIn) -> None:
    register = adapter(atol)
    assert atol.password not in repr(register)
    assert atol.password not in repr(register.settings)
