"""Gift certificates (SPEC C-9): issued, sold for 3 000,00 ₽, paid with in parts, refunded
to, expired by the nightly routine; every refusal has its code, every replay is a replay."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, func, select

from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.ledger.accounts import get_account
from kopilka.ledger.schema import accounts, transfers
from kopilka.loyalty import certificates as gc
from kopilka.loyalty.cards import is_valid_luhn
from kopilka.loyalty.nightly import run_nightly

from .conftest import Shop

T = TypeVar("T")
_numbers = itertools.count(1)
_ops = itertools.count(1)


def op() -> str:
    return f"op-{next(_ops)}"


class Desk:
    """The shop's certificate desk: the verbs the examples use."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.tenant_id = shop.tenant.id

    def tx(self, work: Callable[[Connection], T]) -> T:
        return self.shop.tx(work)

    def issue(self, **kwargs: Any) -> gc.CertificateView:
        number = kwargs.pop("number", f"50{next(_numbers):08d}")
        return self.tx(
            lambda c: gc.issue_certificate(
                c, tenant_id=self.tenant_id, number=number, actor=self.shop.actor, **kwargs
            )
        )

    def sell(
        self, number: str, nominal: int, operation_id: str | None = None, **kw: Any
    ) -> gc.Sale:
        return self.tx(
            lambda c: gc.sell_certificate(
                c,
                tenant_id=self.tenant_id,
                number=number,
                nominal_minor=nominal,
                operation_id=operation_id or op(),
                actor=self.shop.actor,
                **kw,
            )
        )

    def sold(self, nominal: int, **kw: Any) -> gc.CertificateView:
        return self.sell(self.issue().number, nominal, **kw).certificate

    def pay(
        self, number: str, amount: int, operation_id: str | None = None, **kw: Any
    ) -> gc.Payment:
        kw.setdefault("terminal_id", self.shop.terminal_id)
        return self.tx(
            lambda c: gc.pay_with_certificate(
                c,
                tenant_id=self.tenant_id,
                number=number,
                amount_minor=amount,
                operation_id=operation_id or op(),
                actor=self.shop.actor,
                **kw,
            )
        )

    def refund(
        self, number: str, operation_id: str, refund_id: str, amount: int | None, **kw: Any
    ) -> gc.PaymentRefund:
        kw.setdefault("terminal_id", self.shop.terminal_id)
        return self.tx(
            lambda c: gc.refund_payment(
                c,
                tenant_id=self.tenant_id,
                number=number,
                operation_id=operation_id,
                refund_id=refund_id,
                amount_minor=amount,
                actor=self.shop.actor,
                **kw,
            )
        )

    def block(self, number: str, reason: str) -> gc.CertificateView:
        return self.tx(
            lambda c: gc.block_certificate(
                c, tenant_id=self.tenant_id, number=number, reason=reason, actor=self.shop.actor
            )
        )

    def get(self, number: str) -> gc.CertificateView:
        with read_only(self.shop.engine) as conn:
            return gc.find_certificate(conn, self.tenant_id, number)

    def system_balance(self, purpose: str) -> int:
        with read_only(self.shop.engine) as conn:
            account_id = conn.execute(
                select(accounts.c.id).where(
                    accounts.c.tenant_id == self.tenant_id, accounts.c.code == f"{purpose}:RUB"
                )
            ).scalar_one()
            return get_account(conn, self.tenant_id, account_id).balance_minor

    def transfer_count(self) -> int:
        with read_only(self.shop.engine) as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(transfers)
                    .where(transfers.c.tenant_id == self.tenant_id)
                ).scalar_one()
            )


@pytest.fixture
def desk(shop: Shop) -> Desk:
    return Desk(shop)


def refused(code: str, work: Callable[[], object]) -> KopilkaError:
    with pytest.raises(KopilkaError) as caught:
        work()
    assert caught.value.code == code, caught.value
    return caught.value


# --------------------------------------------------------------------------- worked examples


def test_sold_for_3000_paid_in_two_parts_then_refused(desk: Desk) -> None:
    certificate = desk.issue()
    assert (certificate.status, certificate.balance_minor, certificate.currency) == (
        "issued",
        0,
        "RUB",
    )
    sale = desk.sell(certificate.number, 3_000_00)
    assert (sale.certificate.status, sale.certificate.balance_minor) == ("active", 3_000_00)
    assert sale.certificate.nominal_minor == 3_000_00

    first = desk.pay(certificate.number, 1_200_00, check_id="CHK-1")
    assert (first.amount_minor, first.balance_after_minor) == (1_200_00, 1_800_00)
    second = desk.pay(certificate.number, 1_800_00)
    assert second.balance_after_minor == 0
    error = refused("insufficient_certificate_balance", lambda: desk.pay(certificate.number, 1))
    assert error.params["available"] == "0.00"

    assert desk.system_balance(gc.SALES) == -3_000_00
    assert desk.system_balance(gc.REDEMPTIONS) == 3_000_00
    desk.shop.assert_clean()


def test_a_refund_goes_back_to_the_certificate_and_can_be_spent_again(desk: Desk) -> None:
    certificate = desk.sold(3_000_00)
    desk.pay(certificate.number, 1_200_00, "P-1")
    desk.pay(certificate.number, 1_800_00, "P-2")

    back = desk.refund(certificate.number, "P-2", "R-1", 500_00)
    assert (back.amount_minor, back.balance_after_minor) == (500_00, 500_00)
    assert back.payment.refunded_minor == 500_00
    again = desk.pay(certificate.number, 500_00)
    assert again.balance_after_minor == 0

    # What is left of P-2 to refund is 1 300,00; the rest at once, then nothing more.
    refused("refund_too_large", lambda: desk.refund(certificate.number, "P-2", "R-2", 1_300_01))
    rest = desk.refund(certificate.number, "P-2", "R-3", None)
    assert rest.amount_minor == 1_300_00 and rest.payment.refunded_minor == 1_800_00
    refused("refund_too_large", lambda: desk.refund(certificate.number, "P-2", "R-4", None))
    assert desk.get(certificate.number).balance_minor == 1_300_00
    assert desk.system_balance(gc.REDEMPTIONS) == 1_700_00
    desk.shop.assert_clean()


def test_expiry_writes_off_the_rest_and_a_second_night_changes_nothing(desk: Desk) -> None:
    certificate = desk.sold(3_000_00, validity_days=30)
    assert certificate.expires_at is not None
    untouched = desk.sold(1_000_00)  # no date: never expires
    desk.pay(certificate.number, 1_000_00, "P-1")

    def nightly(days: int) -> int:
        report = run_nightly(
            desk.shop.engine,
            tenant_id=desk.tenant_id,
            actor=desk.shop.actor,
            now=utcnow() + timedelta(days=days),
        )
        return report.certificates_expired

    assert nightly(29) == 0
    assert nightly(31) == 1
    gone = desk.get(certificate.number)
    assert (gone.status, gone.balance_minor) == ("expired", 0)
    assert desk.system_balance(gc.BREAKAGE) == 2_000_00
    count = desk.transfer_count()
    assert nightly(31) == 0
    assert nightly(400) == 0
    assert desk.transfer_count() == count
    assert desk.get(untouched.number).balance_minor == 1_000_00

    refused("certificate_expired", lambda: desk.pay(certificate.number, 1))
    refused("certificate_expired", lambda: desk.refund(certificate.number, "P-1", "R-1", 1))
    refused("already_sold", lambda: desk.sell(certificate.number, 1_00))
    desk.shop.assert_clean()


def test_a_certificate_past_its_date_pays_nothing_before_the_night_runs(desk: Desk) -> None:
    certificate = desk.sold(500_00, expires_at=utcnow() + timedelta(seconds=1))
    later = utcnow() + timedelta(seconds=5)
    refused(
        "certificate_expired",
        lambda: desk.pay(certificate.number, 1_00, now=later),
    )
    with read_only(desk.shop.engine) as conn:
        refused(
            "certificate_expired",
            lambda: gc.certificate_for_use(conn, desk.tenant_id, certificate.number, now=later),
        )


def test_validity_given_at_issue_counts_from_the_sale(desk: Desk) -> None:
    number = desk.issue(validity_days=365).number
    sold_at = utcnow()
    certificate = desk.sell(number, 1_000_00, now=sold_at).certificate
    assert certificate.expires_at == sold_at + timedelta(days=365)
    # A date named at the sale wins.
    other = desk.issue(validity_days=365).number
    until = datetime(2099, 12, 31, tzinfo=sold_at.tzinfo)
    assert desk.sell(other, 1_00, expires_at=until).certificate.expires_at == until


# --------------------------------------------------------------------------- issue


def test_a_range_is_issued_at_once_with_check_digits_and_listed_by_pages(desk: Desk) -> None:
    ids = desk.tx(
        lambda c: gc.issue_certificate_range(
            c,
            tenant_id=desk.tenant_id,
            prefix="9000",
            first=1,
            last=5,
            check_digit=True,
            actor=desk.shop.actor,
            width=4,
            validity_days=90,
        )
    )
    assert len(ids) == 5
    with read_only(desk.shop.engine) as conn:
        page = gc.list_certificates(conn, desk.tenant_id, limit=3, number_prefix="9000")
        rest = gc.list_certificates(conn, desk.tenant_id, after_id=page[-1].id, limit=3)
    numbers = [c.number for c in page + rest]
    assert len(numbers) == 5 and numbers[0].startswith("90000001")
    assert all(is_valid_luhn(n) for n in numbers)
    assert {c.status for c in page + rest} == {"issued"}
    assert {c.validity_days for c in page + rest} == {90}

    desk.sell(numbers[0], 1_000_00)
    with read_only(desk.shop.engine) as conn:
        active = gc.list_certificates(conn, desk.tenant_id, status="active")
        issued = gc.list_certificates(conn, desk.tenant_id, status="issued")
    assert [c.number for c in active] == [numbers[0]]
    assert len(issued) == 4

    # Overlapping numbers: nothing of the second range is written.
    error = refused(
        "certificate_exists",
        lambda: desk.tx(
            lambda c: gc.issue_certificate_range(
                c,
                tenant_id=desk.tenant_id,
                prefix="9000",
                first=5,
                last=7,
                check_digit=True,
                actor=desk.shop.actor,
                width=4,
            )
        ),
    )
    assert error.params["count"] == 1
    with read_only(desk.shop.engine) as conn:
        assert len(gc.list_certificates(conn, desk.tenant_id, number_prefix="9000")) == 5


def test_every_certificate_is_a_ledger_account_in_the_tenants_currency(desk: Desk) -> None:
    certificate = desk.sold(100_00)
    with read_only(desk.shop.engine) as conn:
        account = get_account(conn, desk.tenant_id, certificate.account_id)
    assert (account.unit.code, account.kind, account.policy.value) == (
        "RUB",
        "certificate",
        "non_negative",
    )
    assert (account.owner_type, account.owner_id) == ("certificate", certificate.number)
    assert account.balance_minor == 100_00


# --------------------------------------------------------------------------- idempotency


def test_a_sale_replayed_is_the_first_sale_and_another_sale_is_refused(desk: Desk) -> None:
    number = desk.issue().number
    first = desk.sell(number, 3_000_00, "S-1")
    count = desk.transfer_count()
    again = desk.sell(number, 3_000_00, "S-1")
    assert again.replayed and again.transfer_id == first.transfer_id
    assert desk.transfer_count() == count
    refused("certificate_operation_conflict", lambda: desk.sell(number, 2_000_00, "S-1"))
    refused("already_sold", lambda: desk.sell(number, 3_000_00, "S-2"))
    # The sale's operation id names one sale in the tenant.
    refused("certificate_operation_conflict", lambda: desk.sell(desk.issue().number, 1_00, "S-1"))
    assert desk.get(number).balance_minor == 3_000_00


def test_a_payment_replayed_is_the_first_payment(desk: Desk) -> None:
    certificate = desk.sold(1_000_00)
    first = desk.pay(certificate.number, 300_00, "P-1")
    count = desk.transfer_count()
    again = desk.pay(certificate.number, 300_00, "P-1")
    assert again.replayed and again.id == first.id
    assert again.balance_after_minor == first.balance_after_minor == 700_00
    assert desk.transfer_count() == count
    refused("certificate_operation_conflict", lambda: desk.pay(certificate.number, 301_00, "P-1"))
    # The same id from staff (another channel) is another payment.
    staff = desk.pay(certificate.number, 100_00, "P-1", terminal_id=None)
    assert staff.channel == "staff" and staff.balance_after_minor == 600_00
    # A replay still answers after the certificate was blocked.
    desk.tx(
        lambda c: gc.block_certificate(
            c,
            tenant_id=desk.tenant_id,
            number=certificate.number,
            reason="lost",
            actor=desk.shop.actor,
        )
    )
    assert desk.pay(certificate.number, 300_00, "P-1").replayed


def test_a_refund_replayed_is_the_first_refund(desk: Desk) -> None:
    certificate = desk.sold(1_000_00)
    desk.pay(certificate.number, 600_00, "P-1")
    first = desk.refund(certificate.number, "P-1", "R-1", 200_00)
    again = desk.refund(certificate.number, "P-1", "R-1", 200_00)
    assert again.replayed and again.transfer_id == first.transfer_id
    assert again.balance_after_minor == first.balance_after_minor == 600_00
    refused("refund_conflict", lambda: desk.refund(certificate.number, "P-1", "R-1", 100_00))
    assert desk.get(certificate.number).balance_minor == 600_00
    desk.shop.assert_clean()


# --------------------------------------------------------------------------- refusals


def test_blocked_and_unsold_certificates_are_refused(desk: Desk) -> None:
    unsold = desk.issue()
    refused("certificate_not_sold", lambda: desk.pay(unsold.number, 1_00))
    certificate = desk.sold(1_000_00)
    desk.pay(certificate.number, 100_00, "P-1")

    def block(number: str) -> gc.CertificateView:
        return desk.tx(
            lambda c: gc.block_certificate(
                c, tenant_id=desk.tenant_id, number=number, reason="stolen", actor=desk.shop.actor
            )
        )

    blocked = block(certificate.number)
    assert (blocked.status, blocked.blocked_reason) == ("blocked", "stolen")
    error = refused("certificate_blocked", lambda: desk.pay(certificate.number, 1_00))
    assert error.params["reason"] == "stolen"
    with read_only(desk.shop.engine) as conn:
        refused(
            "certificate_blocked",
            lambda: gc.certificate_for_use(conn, desk.tenant_id, certificate.number),
        )
    # A refund of an earlier payment still returns the money to it.
    assert desk.refund(certificate.number, "P-1", "R-1", None).balance_after_minor == 1_000_00
    block(unsold.number)
    refused("certificate_blocked", lambda: desk.sell(unsold.number, 1_00))

    unblocked = desk.tx(
        lambda c: gc.unblock_certificate(
            c, tenant_id=desk.tenant_id, number=certificate.number, actor=desk.shop.actor
        )
    )
    assert unblocked.status == "active"
    assert desk.pay(certificate.number, 1_000_00).balance_after_minor == 0
    again = desk.tx(
        lambda c: gc.unblock_certificate(
            c, tenant_id=desk.tenant_id, number=unsold.number, actor=desk.shop.actor
        )
    )
    assert again.status == "issued"


@pytest.mark.parametrize(
    ("code", "call"),
    [
        ("invalid_certificate_number", lambda d: d.issue(number="12-ab")),
        ("invalid_certificate_number", lambda d: d.pay("12", 1)),
        ("certificate_not_found", lambda d: d.pay("1234567890", 1)),
        ("invalid_certificate", lambda d: d.issue(validity_days=0)),
        ("invalid_amount", lambda d: d.sell(d.issue().number, 0)),
        ("invalid_amount", lambda d: d.sell(d.issue().number, 10**16)),
        ("invalid_certificate", lambda d: d.sell(d.issue().number, 1, operation_id=" ")),
        (
            "invalid_certificate",
            lambda d: d.sell(d.issue().number, 1, expires_at=utcnow() - timedelta(days=1)),
        ),
        (
            "invalid_certificate",
            lambda d: d.sell(
                d.issue().number, 1, expires_at=utcnow() + timedelta(days=9), validity_days=9
            ),
        ),
        ("invalid_amount", lambda d: d.pay(d.sold(1_00).number, -1)),
        ("invalid_amount", lambda d: d.pay(d.sold(1_00).number, True)),
        ("invalid_certificate", lambda d: d.pay(d.sold(1_00).number, 1, check_id="x" * 101)),
        ("certificate_payment_not_found", lambda d: d.refund(d.sold(1_00).number, "no", "R", 1)),
        ("invalid_amount", lambda d: d.refund(d.sold(1_00).number, "no", "R", 0)),
        (
            "reason_required",
            lambda d: d.block(d.issue().number, " "),
        ),
        (
            "invalid_certificate_range",
            lambda d: d.tx(
                lambda c: gc.issue_certificate_range(
                    c,
                    tenant_id=d.tenant_id,
                    prefix="9",
                    first=5,
                    last=1,
                    check_digit=False,
                    actor=d.shop.actor,
                )
            ),
        ),
    ],
)
def test_bad_input_has_its_code_and_writes_nothing(
    desk: Desk, code: str, call: Callable[[Desk], object]
) -> None:
    refused(code, lambda: call(desk))
    desk.shop.assert_clean()


def test_a_certificate_number_is_unique_in_the_tenant(desk: Desk) -> None:
    number = desk.issue().number
    refused("certificate_exists", lambda: desk.issue(number=number))
    refused("invalid_certificate", lambda: _list(desk, status="lost"))


def _list(desk: Desk, **kwargs: Any) -> list[gc.CertificateView]:
    with read_only(desk.shop.engine) as conn:
        return gc.list_certificates(conn, desk.tenant_id, **kwargs)


def test_a_refund_names_the_payment_of_its_own_channel_and_certificate(desk: Desk) -> None:
    certificate = desk.sold(1_000_00)
    other = desk.sold(1_000_00)
    desk.pay(certificate.number, 100_00, "P-1")
    refused("certificate_payment_not_found", lambda: desk.refund(other.number, "P-1", "R-1", None))
    refused(
        "certificate_payment_not_found",
        lambda: desk.refund(certificate.number, "P-1", "R-1", None, terminal_id=None),
    )


# --------------------------------------------------------------------------- concurrency


def test_twenty_terminals_paying_at_once_never_overspend(desk: Desk, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's; SQLite runs one writer at a time")
    certificate = desk.sold(1_000_00)
    threads_count = 20
    barrier = threading.Barrier(threads_count)
    outcomes: list[str] = []
    lock = threading.Lock()

    def terminal(n: int) -> None:
        barrier.wait()
        try:
            desk.pay(certificate.number, 100_00, f"T-{n}")
            result = "ok"
        except KopilkaError as error:
            result = error.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=terminal, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 10, outcomes
    assert outcomes.count("insufficient_certificate_balance") == 10, outcomes
    assert desk.get(certificate.number).balance_minor == 0
    desk.shop.assert_clean()


def test_one_payment_sent_by_many_threads_at_once_is_made_once(desk: Desk, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's; SQLite runs one writer at a time")
    certificate = desk.sold(1_000_00)
    barrier = threading.Barrier(8)
    replays: list[bool] = []
    lock = threading.Lock()

    def terminal() -> None:
        barrier.wait()
        payment = desk.pay(certificate.number, 100_00, "SAME")
        with lock:
            replays.append(payment.replayed)

    threads = [threading.Thread(target=terminal) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(replays) == [False] + [True] * 7
    assert desk.get(certificate.number).balance_minor == 900_00
