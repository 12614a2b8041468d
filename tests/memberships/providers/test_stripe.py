"""Stripe's adapter (the official SDK) against the stand-in: a Checkout Session for
"8 занятий в месяц", 4 120.00 RUB, its webhooks and refunds."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qsl

import pytest

from kopilka.core.errors import InvalidInput
from kopilka.memberships.providers.base import (
    ForgedNotification,
    IgnoredNotification,
    PaymentRequest,
    PaymentState,
    ProviderError,
    ProviderPayment,
    RefundState,
)
from kopilka.memberships.providers.stripe import (
    StripeProvider,
    from_stripe_amount,
    parse_config,
    provider,
    to_stripe_amount,
)
from tests.events.receiver import Receiver
from tests.memberships.providers.stripe_stand_in import StripeStandIn

MakeRequest = Callable[..., PaymentRequest]


@pytest.fixture
def account(stripe_api: StripeStandIn) -> StripeProvider:
    return provider(stripe_api.config())


def _paid(
    account: StripeProvider, stripe_api: StripeStandIn, request: PaymentRequest
) -> ProviderPayment:
    payment = account.create_payment(request)
    stripe_api.pay(payment.provider_payment_id)
    return account.get_payment(payment.provider_payment_id)


# --------------------------------------------------------------------------- creating


def test_a_checkout_session_is_created_as_stripe_documents(
    account: StripeProvider, stripe_api: StripeStandIn, payment_request: MakeRequest
) -> None:
    request = payment_request(order_id=41)
    payment = account.create_payment(request)

    assert payment.state is PaymentState.PENDING
    assert payment.provider_payment_id.startswith("cs_test_")
    assert (payment.amount_minor, payment.currency, payment.order_id) == (412_000, "RUB", 41)
    assert payment.redirect_url == f"{stripe_api.base_url}/c/pay/{payment.provider_payment_id}"
    [seen] = [s for s in stripe_api.requests if s.method == "POST"]
    assert seen.path == "/v1/checkout/sessions"
    assert seen.headers["authorization"] == f"Bearer {stripe_api.secret_key}"
    assert seen.headers["idempotency-key"] == request.idempotency_key
    assert seen.headers["content-type"].startswith("application/x-www-form-urlencoded")
    form = dict(parse_qsl(seen.body.decode()))
    assert form == {
        "mode": "payment",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "rub",
        "line_items[0][price_data][unit_amount]": "412000",
        "line_items[0][price_data][product_data][name]": "8 занятий в месяц",
        "customer_email": "client@example.ru",
        "success_url": request.return_url,
        "cancel_url": request.cancel_url,
        "client_reference_id": "41",
        "metadata[tenant_id]": "7",
        "metadata[order_id]": "41",
        "payment_intent_data[metadata][tenant_id]": "7",
        "payment_intent_data[metadata][order_id]": "41",
    }


def test_a_retry_with_the_same_key_creates_one_session(
    account: StripeProvider, stripe_api: StripeStandIn, payment_request: MakeRequest
) -> None:
    request = payment_request()
    stripe_api.fail(500, after_processing=True)
    with pytest.raises(ProviderError) as failure:
        account.create_payment(request)
    assert failure.value.retryable and failure.value.status == 500

    first = account.create_payment(request)
    again = account.create_payment(request)
    assert first.provider_payment_id == again.provider_payment_id
    assert list(stripe_api.sessions) == [first.provider_payment_id]


def test_the_same_key_for_another_payment_is_refused(
    account: StripeProvider, payment_request: MakeRequest
) -> None:
    request = payment_request()
    account.create_payment(request)
    with pytest.raises(ProviderError) as failure:
        account.create_payment(
            payment_request(idempotency_key=request.idempotency_key, amount_minor=500_000)
        )
    assert (failure.value.status, failure.value.retryable) == (400, False)


def test_amounts_in_stripe_minor_units() -> None:
    assert to_stripe_amount(412_000, "RUB", 2) == 412_000
    assert to_stripe_amount(5_000, "JPY", 0) == 5_000
    assert to_stripe_amount(1_500, "KWD", 3) == 1_500
    assert to_stripe_amount(5_000, "ISK", 0) == 500_000  # Stripe keeps two zero decimals
    assert from_stripe_amount(500_000, "isk") == 5_000
    with pytest.raises(ProviderError):
        from_stripe_amount(500_050, "isk")


# --------------------------------------------------------------------------- states


def test_paid_expired_and_delayed_sessions(
    account: StripeProvider, stripe_api: StripeStandIn, payment_request: MakeRequest
) -> None:
    paid = account.create_payment(payment_request())
    expired = account.create_payment(payment_request())
    delayed = account.create_payment(payment_request())

    stripe_api.pay(paid.provider_payment_id)
    stripe_api.expire(expired.provider_payment_id)
    stripe_api.pay(delayed.provider_payment_id, delayed=True)

    got = account.get_payment(paid.provider_payment_id)
    assert (got.state, got.redirect_url) == (PaymentState.SUCCEEDED, None)
    assert got.raw["payment_intent"].startswith("pi_")
    assert account.get_payment(expired.provider_payment_id).state is PaymentState.CANCELED
    assert account.get_payment(delayed.provider_payment_id).state is PaymentState.PENDING
    stripe_api.settle(delayed.provider_payment_id)
    assert account.get_payment(delayed.provider_payment_id).state is PaymentState.SUCCEEDED


def test_an_unknown_session_is_a_404_not_worth_retrying(account: StripeProvider) -> None:
    with pytest.raises(ProviderError) as failure:
        account.get_payment("cs_test_nothing")
    assert (failure.value.status, failure.value.retryable) == (404, False)
    with pytest.raises(ProviderError, match="not a Checkout Session"):
        account.get_payment("pi_123")


# --------------------------------------------------------------------------- refunds


def test_refunds_partial_then_the_rest_never_above(
    account: StripeProvider, stripe_api: StripeStandIn, payment_request: MakeRequest
) -> None:
    payment = _paid(account, stripe_api, payment_request())

    part = account.refund(payment, 100_000, idempotency_key="refund-1")
    assert (part.state, part.amount_minor) == (RefundState.SUCCEEDED, 100_000)
    assert part.raw["payment_intent"] == payment.raw["payment_intent"]
    with pytest.raises(ProviderError) as failure:
        account.refund(payment, 312_001, idempotency_key="refund-2")
    assert (failure.value.status, failure.value.retryable) == (400, False)
    assert "greater than unrefunded" in str(failure.value)

    assert account.refund(payment, 312_000, idempotency_key="refund-3").amount_minor == 312_000
    with pytest.raises(ProviderError, match="already been refunded"):
        account.refund(payment, 1, idempotency_key="refund-4")


def test_a_refund_of_a_bare_payment_asks_for_its_payment_intent(
    account: StripeProvider, stripe_api: StripeStandIn, payment_request: MakeRequest
) -> None:
    paid = _paid(account, stripe_api, payment_request())
    bare = ProviderPayment(paid.provider_payment_id, PaymentState.SUCCEEDED, 412_000, "RUB")
    refund = account.refund(bare, 412_000, idempotency_key="refund-1")
    assert refund.raw["payment_intent"] == paid.raw["payment_intent"]


def test_a_refund_retried_with_its_key_is_one_refund(
    account: StripeProvider, stripe_api: StripeStandIn, payment_request: MakeRequest
) -> None:
    payment = _paid(account, stripe_api, payment_request())
    stripe_api.fail(500, after_processing=True)
    with pytest.raises(ProviderError):
        account.refund(payment, 412_000, idempotency_key="refund-1")
    again = account.refund(payment, 412_000, idempotency_key="refund-1")
    assert list(stripe_api.refunds) == [again.provider_refund_id]


def test_an_unpaid_session_cannot_be_refunded(
    account: StripeProvider, payment_request: MakeRequest
) -> None:
    payment = account.create_payment(payment_request())
    with pytest.raises(ProviderError, match="was not paid") as failure:
        account.refund(payment, 1_000, idempotency_key="refund-1")
    assert not failure.value.retryable


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (401, False)])
def test_stripe_errors_say_whether_to_retry(
    account: StripeProvider,
    stripe_api: StripeStandIn,
    payment_request: MakeRequest,
    status: int,
    retryable: bool,
) -> None:
    stripe_api.fail(status)
    with pytest.raises(ProviderError) as failure:
        account.create_payment(payment_request())
    assert (failure.value.status, failure.value.retryable) == (status, retryable)
    assert stripe_api.sessions == {}
    assert len(stripe_api.requests) == 1  # the SDK's own retries are off


def test_a_wrong_secret_key_is_not_retried_and_never_shown(
    stripe_api: StripeStandIn, payment_request: MakeRequest, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = provider(stripe_api.config(secret_key="sk_test_WRONGwrongWRONG"))
    caplog.set_level("DEBUG")
    with pytest.raises(ProviderError) as failure:
        wrong.create_payment(payment_request())
    assert (failure.value.status, failure.value.retryable) == (401, False)
    shown = str(failure.value) + caplog.text + repr(wrong) + repr(wrong.config)
    assert "WRONGwrong" not in shown and stripe_api.webhook_secret not in shown


def test_a_timeout_is_retried_and_the_retry_finds_the_session(
    stripe_api: StripeStandIn, payment_request: MakeRequest
) -> None:
    impatient = provider(stripe_api.config(timeout_ms="200"))
    request = payment_request()
    stripe_api.slow(1.0)
    with pytest.raises(ProviderError) as failure:
        impatient.create_payment(request)
    assert failure.value.retryable and failure.value.status is None
    payment = impatient.create_payment(request)
    assert list(stripe_api.sessions) == [payment.provider_payment_id]


# --------------------------------------------------------------------------- webhooks


@pytest.mark.parametrize(
    ("event", "state"),
    [
        ("checkout.session.completed", PaymentState.SUCCEEDED),
        ("checkout.session.async_payment_succeeded", PaymentState.SUCCEEDED),
        ("checkout.session.async_payment_failed", PaymentState.CANCELED),
        ("checkout.session.expired", PaymentState.CANCELED),
    ],
)
def test_signed_events_are_believed(
    account: StripeProvider,
    stripe_api: StripeStandIn,
    payment_request: MakeRequest,
    event: str,
    state: PaymentState,
) -> None:
    payment = account.create_payment(payment_request(order_id=77))
    session_id = payment.provider_payment_id
    if event == "checkout.session.expired":
        stripe_api.expire(session_id)
    elif event == "checkout.session.completed":
        stripe_api.pay(session_id)
    else:
        stripe_api.pay(session_id, delayed=True)
        stripe_api.settle(session_id, succeeded=event.endswith("succeeded"))
    asked_before = len(stripe_api.requests)

    notification = account.verify_notification(*stripe_api.event(event, session_id))

    assert notification.event == event
    assert (notification.payment.state, notification.payment.order_id) == (state, 77)
    assert notification.payment.amount_minor == 412_000
    assert len(stripe_api.requests) == asked_before  # the signature is enough


def test_a_delayed_payment_completed_is_still_pending(
    account: StripeProvider, stripe_api: StripeStandIn, payment_request: MakeRequest
) -> None:
    payment = account.create_payment(payment_request())
    stripe_api.pay(payment.provider_payment_id, delayed=True)
    notification = account.verify_notification(
        *stripe_api.event("checkout.session.completed", payment.provider_payment_id)
    )
    assert notification.payment.state is PaymentState.PENDING


def test_forged_unsigned_stale_and_tampered_events_are_refused(
    account: StripeProvider, stripe_api: StripeStandIn, payment_request: MakeRequest
) -> None:
    payment = account.create_payment(payment_request())
    session_id = payment.provider_payment_id
    stripe_api.pay(session_id)
    completed = "checkout.session.completed"

    for body, headers in (
        stripe_api.event(completed, session_id, secret="whsec_someone_else"),
        stripe_api.event(completed, session_id, signed=False),
        stripe_api.event(completed, session_id, timestamp=int(time.time()) - 301),
        stripe_api.event(completed, session_id, timestamp=int(time.time()) + 600),
    ):
        with pytest.raises(ForgedNotification):
            account.verify_notification(body, headers)

    body, headers = stripe_api.event(completed, session_id)
    with pytest.raises(ForgedNotification, match="does not check"):
        account.verify_notification(body.replace(b"412000", b"100"), headers)
    with pytest.raises(ForgedNotification):
        account.verify_notification(b"\xff" + body, headers)


def test_a_recent_event_within_the_tolerance_is_believed(
    account: StripeProvider, stripe_api: StripeStandIn, payment_request: MakeRequest
) -> None:
    payment = account.create_payment(payment_request())
    stripe_api.pay(payment.provider_payment_id)
    body, headers = stripe_api.event(
        "checkout.session.completed", payment.provider_payment_id, timestamp=int(time.time()) - 240
    )
    headers = {name.lower(): value for name, value in headers.items()}
    assert account.verify_notification(body, headers).payment.state is PaymentState.SUCCEEDED


def test_other_signed_events_are_ignored(
    account: StripeProvider, stripe_api: StripeStandIn, payment_request: MakeRequest
) -> None:
    payment = account.create_payment(payment_request())
    with pytest.raises(IgnoredNotification):
        account.verify_notification(
            *stripe_api.event("charge.refunded", payment.provider_payment_id)
        )
    with pytest.raises(ForgedNotification, match="no Checkout Session"):
        account.verify_notification(
            *stripe_api.event(
                "checkout.session.completed",
                payment.provider_payment_id,
                session={"id": "pi_1", "object": "payment_intent"},
            )
        )


def test_events_sent_before_the_redirect_and_three_times(
    account: StripeProvider,
    stripe_api: StripeStandIn,
    receiver: Receiver,
    payment_request: MakeRequest,
) -> None:
    payment = account.create_payment(payment_request())
    stripe_api.pay(payment.provider_payment_id, notify=receiver.url)
    assert len(receiver.received) == 1
    assert (
        stripe_api.send_event(
            receiver.url, "checkout.session.completed", payment.provider_payment_id, times=3
        )
        == [200] * 3
    )

    states = [
        account.verify_notification(r.body, r.headers).payment.state for r in receiver.received
    ]
    assert states == [PaymentState.SUCCEEDED] * 4


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"webhook_secret": "whsec_x"}, "secret_key"),
        ({"secret_key": "pk_test_x", "webhook_secret": "whsec_x"}, "secret_key"),
        ({"secret_key": "sk_test_x"}, "webhook_secret"),
        ({"secret_key": "sk_test_x", "webhook_secret": "x"}, "webhook_secret"),
        ({"secret_key": "sk_test_x", "webhook_secret": "whsec_x", "api_base": "x"}, "api_base"),
    ],
)
def test_settings_are_checked(config: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as refusal:
        parse_config(config)
    assert refusal.value.params["field"] == field
    assert "whsec_x" not in refusal.value.detail and "sk_test_x" not in refusal.value.detail


def test_settings_default_to_stripe_itself() -> None:
    config = parse_config({"secret_key": "sk_live_abc", "webhook_secret": "whsec_def"})
    assert config.api_base == "https://api.stripe.com"
    assert "sk_live_abc" not in repr(config) and "whsec_def" not in repr(config)
