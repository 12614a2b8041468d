"""YooKassa's adapter against the stand-in: a studio sells "8 занятий в месяц" for
4 000.00 RUB plus a 3 % commission, 4 120.00 in all (seed 004)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from kopilka.core.errors import InvalidInput
from kopilka.memberships.providers.base import (
    ForgedNotification,
    IgnoredNotification,
    PaymentRequest,
    PaymentState,
    ProviderError,
    ReceiptLine,
    RefundState,
)
from kopilka.memberships.providers.yookassa import (
    YooKassaProvider,
    idempotence_key,
    parse_config,
    provider,
)
from tests.events.receiver import Receiver
from tests.memberships.providers.yookassa_stand_in import YooKassaStandIn

MakeRequest = Callable[..., PaymentRequest]


@pytest.fixture
def shop(yookassa: YooKassaStandIn) -> YooKassaProvider:
    return provider(yookassa.config())


def _posted(yookassa: YooKassaStandIn, path: str = "/v3/payments") -> list[dict[str, Any]]:
    return [json.loads(s.body) for s in yookassa.requests if s.method == "POST" and s.path == path]


# --------------------------------------------------------------------------- creating


def test_a_payment_is_created_as_yookassa_documents(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    request = payment_request(order_id=41)
    payment = shop.create_payment(request)

    assert payment.state is PaymentState.PENDING
    assert (payment.amount_minor, payment.currency, payment.order_id) == (412_000, "RUB", 41)
    assert (
        payment.redirect_url
        == yookassa.payment(payment.provider_payment_id)["confirmation"]["confirmation_url"]
    )
    [seen] = [s for s in yookassa.requests if s.method == "POST"]
    credentials = base64.b64encode(f"{yookassa.shop_id}:{yookassa.secret_key}".encode()).decode()
    assert seen.headers["authorization"] == f"Basic {credentials}"
    assert seen.headers["idempotence-key"] == request.idempotency_key
    body = json.loads(seen.body)
    assert body["amount"] == {"value": "4120.00", "currency": "RUB"}
    assert body["capture"] is True
    assert body["confirmation"] == {"type": "redirect", "return_url": request.return_url}
    assert body["description"] == "8 занятий в месяц"
    assert body["metadata"]["order_id"] == "41"
    assert body["receipt"] == {
        "customer": {"email": "client@example.ru"},
        "items": [
            {
                "description": "8 занятий в месяц",
                "quantity": "1.000",
                "amount": {"value": "4120.00", "currency": "RUB"},
                "vat_code": 1,
                "payment_mode": "full_payment",
                "payment_subject": "service",
            }
        ],
    }


def test_receipt_lines_are_priced_per_unit_and_must_add_up(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    lines = (
        ReceiptLine("Занятие", 300_000, quantity_milli=2000),
        ReceiptLine("Комиссия", 9_000, vat_code=4, payment_subject="agent_commission"),
    )
    shop.create_payment(payment_request(amount_minor=309_000, receipt=lines))
    [body] = _posted(yookassa)
    items = body["receipt"]["items"]
    assert [(i["quantity"], i["amount"]["value"]) for i in items] == [
        ("2.000", "1500.00"),
        ("1.000", "90.00"),
    ]
    with pytest.raises(ValueError, match="add up"):
        shop.create_payment(payment_request(amount_minor=309_001, receipt=lines))


def test_a_shop_without_receipts_sends_none(
    yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    provider(yookassa.config(send_receipts="false")).create_payment(payment_request())
    [body] = _posted(yookassa)
    assert "receipt" not in body
    assert "customer_email" not in body["metadata"]


def test_a_retry_with_the_same_key_creates_one_payment(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    request = payment_request()
    first = shop.create_payment(request)
    again = shop.create_payment(request)
    assert again.provider_payment_id == first.provider_payment_id
    assert len(yookassa.payments) == 1


def test_a_500_after_the_work_then_a_retry_still_makes_one_payment(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    request = payment_request()
    yookassa.fail(500, after_processing=True)
    with pytest.raises(ProviderError) as failure:
        shop.create_payment(request)
    assert failure.value.retryable and failure.value.status == 500
    assert "internal_server_error" in str(failure.value)

    payment = shop.create_payment(request)
    assert list(yookassa.payments) == [payment.provider_payment_id]


def test_the_same_key_for_another_payment_is_refused(
    shop: YooKassaProvider, payment_request: MakeRequest
) -> None:
    request = payment_request()
    shop.create_payment(request)
    other = payment_request(idempotency_key=request.idempotency_key, amount_minor=500_000)
    with pytest.raises(ProviderError) as failure:
        shop.create_payment(other)
    assert not failure.value.retryable and failure.value.status == 400


def test_a_long_idempotency_key_is_hashed_to_what_yookassa_takes() -> None:
    assert idempotence_key("k" * 64) == "k" * 64
    long = idempotence_key("k" * 65)
    assert len(long) == 64 and long == idempotence_key("k" * 65)


# --------------------------------------------------------------------------- states


def test_paid_and_canceled_payments_as_yookassa_tells(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    paid = shop.create_payment(payment_request())
    left = shop.create_payment(payment_request())
    assert shop.get_payment(paid.provider_payment_id).state is PaymentState.PENDING

    yookassa.pay(paid.provider_payment_id)
    yookassa.cancel(left.provider_payment_id, reason="card_expired", party="payment_network")

    got = shop.get_payment(paid.provider_payment_id)
    assert (got.state, got.amount_minor, got.redirect_url) == (
        PaymentState.SUCCEEDED,
        412_000,
        None,
    )
    assert shop.get_payment(left.provider_payment_id).state is PaymentState.CANCELED


def test_an_unknown_payment_is_a_404_not_worth_retrying(shop: YooKassaProvider) -> None:
    with pytest.raises(ProviderError) as failure:
        shop.get_payment("2419a771-000f-5000-9000-1edaf29243f2")
    assert (failure.value.status, failure.value.retryable) == (404, False)
    with pytest.raises(ProviderError, match="not a YooKassa payment id"):
        shop.get_payment("../refunds")


# --------------------------------------------------------------------------- refunds


def test_refunds_partial_then_the_rest_never_above(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    payment = shop.create_payment(payment_request())
    yookassa.pay(payment.provider_payment_id)

    part = shop.refund(payment, 100_000, idempotency_key="refund-1")
    assert (part.state, part.amount_minor) == (RefundState.SUCCEEDED, 100_000)
    with pytest.raises(ProviderError) as failure:
        shop.refund(payment, 312_001, idempotency_key="refund-2")
    assert (failure.value.status, failure.value.retryable) == (400, False)
    assert "(amount)" in str(failure.value)

    rest = shop.refund(payment, 312_000, idempotency_key="refund-3")
    assert rest.amount_minor == 312_000
    assert yookassa.payment(payment.provider_payment_id)["refunded_amount"]["value"] == "4120.00"
    with pytest.raises(ProviderError):
        shop.refund(payment, 1, idempotency_key="refund-4")


def test_a_refund_receipt_is_made_from_the_payment_when_none_is_given(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    payment = shop.create_payment(payment_request(customer_email="anna@example.ru"))
    yookassa.pay(payment.provider_payment_id)
    bare = payment.__class__(payment.provider_payment_id, payment.state, 412_000, "RUB")

    refund = shop.refund(bare, 50_000, idempotency_key="refund-1")

    assert yookassa.receipts[refund.provider_refund_id] == {
        "customer": {"email": "anna@example.ru"},
        "items": [
            {
                "description": "8 занятий в месяц",
                "quantity": "1.000",
                "amount": {"value": "500.00", "currency": "RUB"},
                "vat_code": 1,
                "payment_mode": "full_payment",
                "payment_subject": "service",
            }
        ],
    }


def test_a_refund_receipt_given_is_sent_as_it_is(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    payment = shop.create_payment(payment_request())
    yookassa.pay(payment.provider_payment_id)
    refund = shop.refund(
        payment,
        412_000,
        idempotency_key="refund-1",
        customer_email="boss@example.ru",
        receipt=(ReceiptLine("Возврат: 8 занятий", 412_000),),
    )
    receipt = yookassa.receipts[refund.provider_refund_id]
    assert receipt["customer"] == {"email": "boss@example.ru"}
    assert receipt["items"][0]["description"] == "Возврат: 8 занятий"


def test_a_refund_retried_with_its_key_is_one_refund(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    payment = shop.create_payment(payment_request())
    yookassa.pay(payment.provider_payment_id)
    yookassa.fail(500, after_processing=True)
    with pytest.raises(ProviderError) as failure:
        shop.refund(payment, 412_000, idempotency_key="refund-1")
    assert failure.value.retryable
    again = shop.refund(payment, 412_000, idempotency_key="refund-1")
    assert list(yookassa.refunds) == [again.provider_refund_id]


def test_an_unpaid_payment_cannot_be_refunded(
    shop: YooKassaProvider, payment_request: MakeRequest
) -> None:
    payment = shop.create_payment(payment_request())
    with pytest.raises(ProviderError) as failure:
        shop.refund(payment, 1_000, idempotency_key="refund-1")
    assert not failure.value.retryable


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (401, False)])
def test_yookassa_errors_say_whether_to_retry(
    shop: YooKassaProvider,
    yookassa: YooKassaStandIn,
    payment_request: MakeRequest,
    status: int,
    retryable: bool,
) -> None:
    yookassa.fail(status)
    with pytest.raises(ProviderError) as failure:
        shop.create_payment(payment_request())
    assert (failure.value.status, failure.value.retryable) == (status, retryable)
    assert yookassa.payments == {}


def test_a_wrong_secret_key_is_not_retried_and_never_shown(
    yookassa: YooKassaStandIn, payment_request: MakeRequest, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = provider(yookassa.config(secret_key="test_wrong-secret-KEY-1"))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderError) as failure:
        wrong.create_payment(payment_request())
    assert (failure.value.status, failure.value.retryable) == (401, False)
    assert "invalid_credentials" in str(failure.value)
    assert "wrong-secret" not in str(failure.value) + caplog.text + repr(wrong.config)


def test_a_timeout_is_retried_and_the_retry_finds_the_payment(
    yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    impatient = provider(yookassa.config(timeout_ms="200"))
    request = payment_request()
    yookassa.slow(1.0)
    with pytest.raises(ProviderError) as failure:
        impatient.create_payment(request)
    assert failure.value.retryable and "within 200 ms" in str(failure.value)
    # YooKassa did the work all the same: the retry with the key answers that payment.
    payment = impatient.create_payment(request)
    assert list(yookassa.payments) == [payment.provider_payment_id]


def test_a_dropped_connection_and_a_dead_address_are_retryable(
    shop: YooKassaProvider, payment_request: MakeRequest, yookassa: YooKassaStandIn
) -> None:
    yookassa.drop()
    with pytest.raises(ProviderError) as failure:
        shop.create_payment(payment_request())
    assert failure.value.retryable
    dead = provider(yookassa.config(api_base="http://127.0.0.1:9/v3"))
    with pytest.raises(ProviderError) as failure:
        dead.get_payment("2419a771-000f-5000-9000-1edaf29243f2")
    assert failure.value.retryable


# --------------------------------------------------------------------------- notifications


def test_a_real_notification_is_believed_after_asking_yookassa(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    payment = shop.create_payment(payment_request(order_id=77))
    yookassa.pay(payment.provider_payment_id)
    asked_before = len(yookassa.requests)

    notification = shop.verify_notification(yookassa.notification(payment.provider_payment_id), {})

    assert notification.event == "payment.succeeded"
    assert notification.payment.state is PaymentState.SUCCEEDED
    assert (notification.payment.order_id, notification.payment.amount_minor) == (77, 412_000)
    assert yookassa.paths()[asked_before:] == [f"GET /v3/payments/{payment.provider_payment_id}"]


def test_a_canceled_payment_notification(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    payment = shop.create_payment(payment_request())
    yookassa.cancel(payment.provider_payment_id)
    notification = shop.verify_notification(yookassa.notification(payment.provider_payment_id), {})
    assert (notification.event, notification.payment.state) == (
        "payment.canceled",
        PaymentState.CANCELED,
    )


def test_a_notification_of_a_payment_yookassa_never_had_is_forged(
    shop: YooKassaProvider, yookassa: YooKassaStandIn
) -> None:
    with pytest.raises(ForgedNotification, match="knows no payment"):
        shop.verify_notification(yookassa.forged_notification(), {})


def test_a_notification_claiming_success_of_a_pending_payment_gives_pending(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    payment = shop.create_payment(payment_request())
    lie = yookassa.notification(payment.provider_payment_id, event="payment.succeeded")
    assert json.loads(lie)["object"]["status"] == "succeeded"

    notification = shop.verify_notification(lie, {})

    assert notification.payment.state is PaymentState.PENDING


def test_a_refund_notification_gives_its_payment(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    payment = shop.create_payment(payment_request())
    yookassa.pay(payment.provider_payment_id)
    refund = shop.refund(payment, 10_000, idempotency_key="r-1")
    notification = shop.verify_notification(
        yookassa.refund_notification(refund.provider_refund_id), {}
    )
    assert notification.event == "refund.succeeded"
    assert notification.payment.provider_payment_id == payment.provider_payment_id


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b'{"type": "payment", "event": "payment.succeeded", "object": {"id": "a"}}',
        b'{"type": "notification", "object": {"id": "a"}}',
        b'{"type": "notification", "event": "payment.succeeded", "object": {}}',
        b'{"type": "notification", "event": "payment.succeeded", "object": {"id": "../x"}}',
    ],
)
def test_what_is_not_a_notification_is_refused_without_asking(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, body: bytes
) -> None:
    with pytest.raises(ForgedNotification):
        shop.verify_notification(body, {})
    assert yookassa.requests == []


def test_another_event_is_ignored(shop: YooKassaProvider, yookassa: YooKassaStandIn) -> None:
    body = b'{"type": "notification", "event": "payout.succeeded", "object": {"id": "po-1"}}'
    with pytest.raises(IgnoredNotification):
        shop.verify_notification(body, {})
    assert yookassa.requests == []


def test_when_yookassa_cannot_be_asked_the_notification_waits(
    shop: YooKassaProvider, yookassa: YooKassaStandIn, payment_request: MakeRequest
) -> None:
    payment = shop.create_payment(payment_request())
    yookassa.pay(payment.provider_payment_id)
    yookassa.fail(500)
    with pytest.raises(ProviderError) as failure:
        shop.verify_notification(yookassa.notification(payment.provider_payment_id), {})
    assert failure.value.retryable


def test_notifications_sent_before_the_redirect_and_three_times(
    shop: YooKassaProvider,
    yookassa: YooKassaStandIn,
    receiver: Receiver,
    payment_request: MakeRequest,
) -> None:
    payment = shop.create_payment(payment_request())
    yookassa.pay(payment.provider_payment_id, notify=receiver.url)
    assert len(receiver.received) == 1  # already there when the client would come back
    assert yookassa.notify(receiver.url, payment.provider_payment_id, times=3) == [200] * 3

    states = [shop.verify_notification(r.body, r.headers).payment.state for r in receiver.received]
    assert states == [PaymentState.SUCCEEDED] * 4
    assert receiver.received[0].headers["content-type"] == "application/json"


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"secret_key": "test_x"}, "shop_id"),
        ({"shop_id": "shop", "secret_key": "test_x"}, "shop_id"),
        ({"shop_id": "100500"}, "secret_key"),
        ({"shop_id": "100500", "secret_key": "test_x", "api_base": "ftp://x"}, "api_base"),
        ({"shop_id": "100500", "secret_key": "test_x", "timeout_ms": "5"}, "timeout_ms"),
        ({"shop_id": "100500", "secret_key": "test_x", "shopid": "1"}, "shopid"),
    ],
)
def test_settings_are_checked(config: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as refusal:
        parse_config(config)
    assert refusal.value.code == "invalid_provider_config"
    assert refusal.value.params["field"] == field


def test_settings_default_to_yookassa_itself() -> None:
    config = parse_config({"shop_id": " 100500 ", "secret_key": "live_abc"})
    assert (config.shop_id, config.api_base, config.timeout_ms) == (
        "100500",
        "https://api.yookassa.ru/v3",
        10_000,
    )
    assert "live_abc" not in repr(config) + repr(YooKassaProvider(config))
