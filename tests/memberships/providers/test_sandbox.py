"""The built-in sandbox on SQLite and PostgreSQL: its card page's functions, its books,
refund limits and signed notifications."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select

from kopilka.core.actor import Actor
from kopilka.core.errors import InvalidInput, NotFound, Refused
from kopilka.memberships.providers import sandbox as sbx
from kopilka.memberships.providers.base import (
    ForgedNotification,
    PaymentRequest,
    PaymentState,
    ProviderError,
    ProviderPayment,
    RefundState,
)
from kopilka.memberships.providers.sandbox import SandboxProvider
from kopilka.memberships.schema import sandbox_payments, sandbox_refunds
from kopilka.tenancy.actions import Tenant, create_tenant
from tests.memberships.providers.conftest import PUBLIC_BASE

MakeRequest = Callable[..., PaymentRequest]
CARD = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"


def _pay(engine: Engine, payment_id: str, card: str = CARD, **fields: str) -> ProviderPayment:
    form = {"expiry": "12/30", "cvc": "123", **fields}
    return sbx.pay_with_card(engine, payment_id, card, **form)


def _paid(sandbox_provider: SandboxProvider, request: PaymentRequest) -> ProviderPayment:
    payment = sandbox_provider.create_payment(request)
    return _pay(sandbox_provider.engine, payment.provider_payment_id)


def _other_tenant(engine: Engine) -> SandboxProvider:
    with engine.begin() as conn:
        other = create_tenant(
            conn, slug=f"t-{uuid.uuid4().hex[:12]}", name="Other", actor=Actor.cli("tests")
        )
    return sbx.provider(
        sbx.new_config(), engine=engine, tenant_id=other.id, public_base=PUBLIC_BASE
    )


# --------------------------------------------------------------------------- payments


def test_a_payment_sends_the_client_to_the_sandbox_card_page(
    sandbox: SandboxProvider, tenant: Tenant, payment_request: MakeRequest
) -> None:
    request = payment_request(order_id=41)
    payment = sandbox.create_payment(request)

    assert payment.state is PaymentState.PENDING
    assert payment.provider_payment_id.startswith("sbx_")
    assert payment.redirect_url == f"{PUBLIC_BASE}/sandbox/pay/{payment.provider_payment_id}"
    page = sbx.get_sandbox_payment(sandbox.engine, payment.provider_payment_id)
    assert (page.tenant_id, page.amount_minor, page.currency) == (tenant.id, 412_000, "RUB")
    assert (page.description, page.order_id, page.status) == (
        "8 занятий в месяц",
        41,
        PaymentState.PENDING,
    )
    assert (page.return_url, page.cancel_url) == (request.return_url, request.cancel_url)


def test_a_retry_with_the_same_key_creates_one_payment(
    sandbox: SandboxProvider, tenant: Tenant, payment_request: MakeRequest
) -> None:
    request = payment_request()
    first = sandbox.create_payment(request)
    assert sandbox.create_payment(request).provider_payment_id == first.provider_payment_id
    with sandbox.engine.connect() as conn:
        rows = conn.execute(
            select(sandbox_payments.c.id).where(sandbox_payments.c.tenant_id == tenant.id)
        ).all()
    assert len(rows) == 1
    with pytest.raises(ProviderError) as failure:
        sandbox.create_payment(
            payment_request(idempotency_key=request.idempotency_key, amount_minor=1)
        )
    assert not failure.value.retryable


def test_the_test_card_pays(sandbox: SandboxProvider, payment_request: MakeRequest) -> None:
    payment = sandbox.create_payment(payment_request())
    paid = _pay(sandbox.engine, payment.provider_payment_id)
    assert (paid.state, paid.raw["card_last4"]) == (PaymentState.SUCCEEDED, "4242")
    got = sandbox.get_payment(payment.provider_payment_id)
    assert (got.state, got.redirect_url) == (PaymentState.SUCCEEDED, None)
    # The form sent twice: the payment as it is, nothing taken twice.
    assert _pay(sandbox.engine, payment.provider_payment_id).state is PaymentState.SUCCEEDED


def test_the_declined_card_cancels_the_payment(
    sandbox: SandboxProvider, payment_request: MakeRequest
) -> None:
    payment = sandbox.create_payment(payment_request())
    declined = _pay(sandbox.engine, payment.provider_payment_id, DECLINED)
    assert (declined.state, declined.raw["decline_code"]) == (
        PaymentState.CANCELED,
        "card_declined",
    )
    assert sandbox.get_payment(payment.provider_payment_id).state is PaymentState.CANCELED
    with pytest.raises(Refused) as refusal:
        _pay(sandbox.engine, payment.provider_payment_id)
    assert refusal.value.code == "sandbox_payment_state"


@pytest.mark.parametrize(
    ("card", "fields", "code"),
    [
        ("4242 4242 4242 4241", {}, "invalid_card_number"),  # a mistyped digit
        ("4242 4242", {}, "invalid_card_number"),
        ("4242-4242-4242-424x", {}, "invalid_card_number"),
        ("5555 5555 5555 4444", {}, "not_a_test_card"),  # a real-looking card
        (CARD, {"expiry": "13/30"}, "invalid_card_expiry"),
        (CARD, {"expiry": "1230"}, "invalid_card_expiry"),
        (CARD, {"expiry": "01/20"}, "invalid_card_expiry"),
        (CARD, {"cvc": "12"}, "invalid_card_cvc"),
        (CARD, {"cvc": "abc"}, "invalid_card_cvc"),
    ],
)
def test_the_card_form_refuses_what_is_not_a_card(
    sandbox: SandboxProvider,
    payment_request: MakeRequest,
    card: str,
    fields: dict[str, str],
    code: str,
) -> None:
    payment = sandbox.create_payment(payment_request())
    with pytest.raises(InvalidInput) as refusal:
        _pay(sandbox.engine, payment.provider_payment_id, card, **fields)
    assert refusal.value.code == code
    # Nothing happened: the client may try again.
    assert sandbox.get_payment(payment.provider_payment_id).state is PaymentState.PENDING


def test_luhn() -> None:
    assert sbx.luhn_ok("4242424242424242")
    assert sbx.luhn_ok("4000000000000002")
    assert sbx.luhn_ok("79927398713")
    assert not sbx.luhn_ok("79927398710")
    assert not sbx.luhn_ok("4242424242424241")


def test_a_card_good_to_the_end_of_this_month(
    sandbox: SandboxProvider, payment_request: MakeRequest
) -> None:
    payment = sandbox.create_payment(payment_request())
    now = datetime(2030, 12, 31, 23, 0, tzinfo=UTC)
    paid = sbx.pay_with_card(
        sandbox.engine, payment.provider_payment_id, CARD, expiry="12/2030", cvc="1234", now=now
    )
    assert paid.state is PaymentState.SUCCEEDED


def test_the_client_gives_up(sandbox: SandboxProvider, payment_request: MakeRequest) -> None:
    payment = sandbox.create_payment(payment_request())
    assert sbx.cancel(sandbox.engine, payment.provider_payment_id).state is PaymentState.CANCELED
    assert sbx.cancel(sandbox.engine, payment.provider_payment_id).state is PaymentState.CANCELED
    paid = _paid(sandbox, payment_request())
    with pytest.raises(Refused):
        sbx.cancel(sandbox.engine, paid.provider_payment_id)


def test_unknown_payments(sandbox: SandboxProvider, engine: Engine) -> None:
    for payment_id in ("sbx_" + "0" * 32, "nonsense", "../x"):
        with pytest.raises(NotFound):
            sbx.get_sandbox_payment(engine, payment_id)
        with pytest.raises(NotFound):
            _pay(engine, payment_id)
        with pytest.raises(ProviderError) as failure:
            sandbox.get_payment(payment_id)
        assert (failure.value.status, failure.value.retryable) == (404, False)


def test_another_tenant_cannot_see_or_refund_the_payment(
    sandbox: SandboxProvider, engine: Engine, payment_request: MakeRequest
) -> None:
    paid = _paid(sandbox, payment_request())
    other = _other_tenant(engine)
    with pytest.raises(ProviderError):
        other.get_payment(paid.provider_payment_id)
    with pytest.raises(ProviderError):
        other.refund(paid, 1_000, idempotency_key="r-1")


# --------------------------------------------------------------------------- refunds


def test_refunds_never_above_what_is_left(
    sandbox: SandboxProvider, tenant: Tenant, payment_request: MakeRequest
) -> None:
    paid = _paid(sandbox, payment_request())

    part = sandbox.refund(paid, 100_000, idempotency_key="r-1")
    assert (part.state, part.amount_minor) == (RefundState.SUCCEEDED, 100_000)
    with pytest.raises(ProviderError) as failure:
        sandbox.refund(paid, 312_001, idempotency_key="r-2")
    assert (failure.value.status, failure.value.retryable) == (400, False)
    assert "312000 of 412000" in str(failure.value)
    sandbox.refund(paid, 312_000, idempotency_key="r-3")
    with pytest.raises(ProviderError):
        sandbox.refund(paid, 1, idempotency_key="r-4")

    assert sandbox.get_payment(paid.provider_payment_id).raw["refunded_minor"] == 412_000
    with sandbox.engine.connect() as conn:
        amounts = conn.execute(
            select(sandbox_refunds.c.amount_minor)
            .where(sandbox_refunds.c.tenant_id == tenant.id)
            .order_by(sandbox_refunds.c.created_at)
        ).scalars()
        assert sorted(amounts) == [100_000, 312_000]


def test_a_refund_retried_with_its_key_is_one_refund(
    sandbox: SandboxProvider, payment_request: MakeRequest
) -> None:
    paid = _paid(sandbox, payment_request())
    first = sandbox.refund(paid, 100_000, idempotency_key="r-1")
    assert sandbox.refund(paid, 100_000, idempotency_key="r-1") == first
    with pytest.raises(ProviderError, match="another refund"):
        sandbox.refund(paid, 200_000, idempotency_key="r-1")
    assert sandbox.get_payment(paid.provider_payment_id).raw["refunded_minor"] == 100_000


def test_an_unpaid_payment_cannot_be_refunded(
    sandbox: SandboxProvider, payment_request: MakeRequest
) -> None:
    payment = sandbox.create_payment(payment_request())
    with pytest.raises(ProviderError, match="not paid"):
        sandbox.refund(payment, 1_000, idempotency_key="r-1")


def test_two_refunds_at_once_never_take_more_than_was_paid(
    sandbox: SandboxProvider, payment_request: MakeRequest
) -> None:
    paid = _paid(sandbox, payment_request())
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def refund(key: str) -> None:
        start.wait()
        try:
            sandbox.refund(paid, 300_000, idempotency_key=key)
            outcomes.append("refunded")
        except ProviderError:
            outcomes.append("refused")

    threads = [threading.Thread(target=refund, args=(f"r-{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["refunded", "refused"]
    assert sandbox.get_payment(paid.provider_payment_id).raw["refunded_minor"] == 300_000


# --------------------------------------------------------------------------- notifications


def test_a_signed_notification_is_believed_from_the_books(
    sandbox: SandboxProvider, payment_request: MakeRequest
) -> None:
    paid = _paid(sandbox, payment_request(order_id=77))
    body, headers = sandbox.notification_for(paid)

    notification = sandbox.verify_notification(body, headers)

    assert notification.event == "payment.succeeded"
    assert (notification.payment.state, notification.payment.order_id) == (
        PaymentState.SUCCEEDED,
        77,
    )
    lowered = {name.lower(): value for name, value in headers.items()}
    assert sandbox.verify_notification(body, lowered).payment.state is PaymentState.SUCCEEDED


def test_a_notification_claiming_more_than_the_books_say_gives_the_books(
    sandbox: SandboxProvider, payment_request: MakeRequest
) -> None:
    pending = sandbox.create_payment(payment_request())
    claim = ProviderPayment(
        pending.provider_payment_id, PaymentState.SUCCEEDED, 412_000, "RUB", order_id=1
    )
    body, headers = sandbox.notification_for(claim)
    assert json.loads(body)["payment"]["status"] == "succeeded"
    assert sandbox.verify_notification(body, headers).payment.state is PaymentState.PENDING


def test_forged_notifications_are_refused(
    sandbox: SandboxProvider, engine: Engine, payment_request: MakeRequest
) -> None:
    paid = _paid(sandbox, payment_request())
    body, headers = sandbox.notification_for(paid)
    [name] = [h for h in headers if h != "Content-Type"]

    with pytest.raises(ForgedNotification, match="does not check"):
        sandbox.verify_notification(body.replace(b"412000", b"1"), headers)
    with pytest.raises(ForgedNotification):
        sandbox.verify_notification(body, {})
    with pytest.raises(ForgedNotification):
        sandbox.verify_notification(body, {name: "v1=abc"})
    stale = sandbox.notification_for(paid, now=time.time() - 301)
    with pytest.raises(ForgedNotification, match="5 minutes"):
        sandbox.verify_notification(*stale)
    # Signed by another tenant's sandbox (another secret), or about its own payment.
    other = _other_tenant(engine)
    with pytest.raises(ForgedNotification, match="does not check"):
        sandbox.verify_notification(*other.notification_for(paid))
    with pytest.raises(ForgedNotification, match="knows no payment"):
        other.verify_notification(*other.notification_for(paid))


def test_without_a_secret_notifications_cannot_be_checked(
    engine: Engine, tenant: Tenant, payment_request: MakeRequest
) -> None:
    bare = sbx.provider({}, engine=engine, tenant_id=tenant.id, public_base=PUBLIC_BASE)
    payment = bare.create_payment(payment_request())
    with pytest.raises(ForgedNotification, match="no secret"):
        bare.verify_notification(b"{}", {})
    with pytest.raises(ValueError, match="no secret"):
        bare.notification_for(payment)


def test_settings() -> None:
    config = sbx.new_config()
    assert config["secret"].startswith("sbxsec_") and len(config["secret"]) > 40
    assert sbx.new_config() != config
    assert config["secret"] not in repr(sbx.parse_config(config))
    with pytest.raises(InvalidInput):
        sbx.parse_config({"secret": "short"})
    with pytest.raises(InvalidInput):
        sbx.parse_config({"secret": "x" * 20, "other": "1"})
