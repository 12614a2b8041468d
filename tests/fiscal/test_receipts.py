"""Receipts from the hotel's side: asked for in the payment's transaction, checked,
idempotent by their source; sent after the commit, polled, put off by a back-off while
the register is away, kept when refused, and retried."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from kopilka.core.clock import utcnow
from kopilka.core.errors import Conflict, InvalidInput, NotFound, Refused
from kopilka.fiscal import receipts as rc
from kopilka.fiscal import registers as rg
from kopilka.fiscal.jobs import KIND, ReceiptScheduler
from kopilka.fiscal.schema import fiscal_receipts
from kopilka.jobs.runner import get_job, start_job
from kopilka.ledger.schema import transfers
from kopilka.tenancy.actions import create_tenant
from tests.fiscal.conftest import Desk, payload


def refused_code(desk: Desk, **fields: Any) -> str:
    with pytest.raises((InvalidInput, Refused, NotFound, Conflict)) as refused:
        desk.ask(fields.pop("source_id", 99), **fields)
    return str(refused.value.code)


# --------------------------------------------------------------------------- asking


def test_a_receipt_is_written_pending_without_a_word_to_the_register(desk: Desk) -> None:
    receipt = desk.ask(7)
    assert receipt.status == "pending" and receipt.attempts == 0
    assert receipt.external_id == f"kopilka-{desk.tenant.id}-hotel_payment-7"
    assert receipt.register_name == "Ресепшен" and receipt.total_minor == 350_000
    assert receipt.next_attempt_at is not None and receipt.next_attempt_at <= utcnow()
    assert desk.atol.requests == []  # nothing over the network inside the transaction
    assert [a.action for a in desk.audits("receipt.")] == ["receipt.request"]


def test_the_same_source_again_is_the_same_receipt_and_other_content_a_conflict(
    desk: Desk,
) -> None:
    first = desk.ask(7)
    again = desk.ask(7)
    assert again == first
    assert desk.count(fiscal_receipts) == 1
    other_payload = payload(("Завтрак", 50_000, 1000))
    assert refused_code(desk, source_id=7, body=other_payload) == "receipt_conflict"
    assert refused_code(desk, source_id=7, email="other@example.ru") == "receipt_conflict"
    assert refused_code(desk, source_id=7, operation="sell_refund") == "receipt_conflict"
    # A refund of the same payment is another source.
    refund = desk.ask(7, source_type="hotel_refund", operation="sell_refund")
    assert refund.id != first.id and refund.operation == "sell_refund"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"email": None, "phone": None}, "receipt_contact_required"),
        ({"email": "  ", "phone": ""}, "receipt_contact_required"),
        ({"email": "guest@"}, "invalid_contact"),
        ({"email": "x" * 60 + "@example.ru"}, "invalid_contact"),
        ({"email": None, "phone": "12345"}, "invalid_contact"),
        ({"operation": "buy"}, "invalid_receipt"),
        ({"source_type": "Hotel Payment"}, "invalid_receipt"),
        ({"source_id": 0}, "invalid_receipt"),
        ({"body": {**payload(), "total_minor": 350_001}}, "receipt_sum_mismatch"),
        (
            {"body": payload(payments=(("card", 300_000), ("cash", 40_000)))},
            "receipt_sum_mismatch",
        ),
        ({"body": {**payload(), "currency": "RUB"}}, "invalid_receipt"),
        ({"body": {**payload(), "exponent": 0}}, "invalid_receipt"),
        ({"body": payload(vat="vat18")}, "invalid_receipt"),
        ({"body": payload(payment_object="hotel")}, "invalid_receipt"),
        ({"body": payload(payment_method="barter")}, "invalid_receipt"),
        ({"body": payload(payments=(("crypto", 350_000),))}, "invalid_receipt"),
        ({"body": payload(("", 100, 1000))}, "invalid_receipt"),
        ({"body": payload(("Ночь", 100, 0))}, "invalid_receipt"),
        ({"body": {**payload(), "items": []}}, "invalid_receipt"),
        ({"register_id": 10**12}, "cash_register_not_found"),
    ],
)
def test_bad_requests_are_refused_saying_what_and_write_nothing(
    desk: Desk, fields: dict[str, Any], code: str
) -> None:
    assert refused_code(desk, **fields) == code
    assert desk.count(fiscal_receipts) == 0


def test_an_item_must_be_its_price_times_its_quantity(desk: Desk) -> None:
    body = payload(("Ужин", 33_333, 3000))  # 999.99 for three at 333.33
    assert body["items"][0]["amount_minor"] == 99_999
    assert desk.ask(1, body=body).total_minor == 99_999
    body["items"][0]["amount_minor"] = 99_997
    body["payments"][0]["amount_minor"] = body["total_minor"] = 99_997
    assert refused_code(desk, source_id=2, body=body) == "receipt_sum_mismatch"


def test_phones_are_written_as_registers_take_them(desk: Desk) -> None:
    receipt = desk.ask(1, email=None, phone="8 (912) 345-67-89")
    assert receipt.contact_phone == "+79123456789" and receipt.contact_email is None
    assert desk.ask(2, phone="9123456789").contact_phone == "+79123456789"


def test_a_switched_off_or_foreign_register_takes_no_receipts(desk: Desk) -> None:
    desk.tx(
        lambda c: rg.set_register_enabled(
            c,
            tenant_id=desk.tenant.id,
            register_id=desk.register.id,
            enabled=False,
            actor=desk.actor,
        )
    )
    assert refused_code(desk) == "cash_register_disabled"
    other = desk.tx(
        lambda c: create_tenant(c, slug=f"o-{desk.tenant.id}", name="Other", actor=desk.actor)
    )
    with pytest.raises(NotFound):
        desk.tx(
            lambda c: rc.request_receipt(
                c,
                tenant_id=other.id,
                register_id=desk.register.id,
                operation="sell",
                source_type="hotel_payment",
                source_id=1,
                payload=payload(),
                email="guest@example.ru",
                phone=None,
                actor=desk.actor,
            )
        )


# --------------------------------------------------------------------------- sending


def test_a_receipt_goes_out_is_polled_and_comes_back_with_its_fiscal_data(desk: Desk) -> None:
    receipt = desk.ask(7)
    sent = desk.send(receipt.id)
    assert sent.status == "wait" and sent.provider_uuid and sent.attempts == 1
    assert sent.last_error is None
    document = desk.atol.documents[sent.provider_uuid]
    assert document.external_id == receipt.external_id
    assert desk.send(receipt.id).status == "wait"  # the first report: still waiting
    done = desk.send(receipt.id)
    assert done.status == "done" and done.next_attempt_at is None
    assert done.fiscal is not None and done.fiscal["total"] == "3500.00"
    assert done.fiscal["fiscal_document_number"] == 100 + document.number
    assert desk.send(receipt.id) == done  # nothing more to do
    assert desk.count(transfers) == 0  # receipts never touch the ledger


def test_process_due_sends_and_polls_what_is_due_and_nothing_else(desk: Desk) -> None:
    now = utcnow() + timedelta(seconds=1)
    first, second = desk.ask(1), desk.ask(2)
    counts = desk.due(now)
    assert (counts.due, counts.accepted, counts.done) == (2, 2, 0)
    assert {desk.get(r.id).status for r in (first, second)} == {"wait"}
    assert desk.due(now).due == 0  # the next question is 10 s away
    later = now + timedelta(seconds=11)
    assert desk.due(later).waiting == 2  # the stand-in's first answer: wait
    final = desk.due(later + timedelta(seconds=21))
    assert (final.due, final.done) == (2, 2)
    assert {desk.get(r.id).status for r in (first, second)} == {"done"}
    assert len(desk.atol.documents) == 2


def test_while_the_register_is_away_the_receipt_waits_with_a_growing_back_off(desk: Desk) -> None:
    receipt = desk.ask(7)
    now = utcnow() + timedelta(seconds=1)
    desk.atol.fail("500")
    first = desk.due(now)
    assert first.retrying == 1
    kept = desk.get(receipt.id)
    assert kept.status == "pending" and kept.attempts == 1
    assert kept.last_error is not None and "HTTP 500" in kept.last_error
    assert kept.next_attempt_at == now + timedelta(seconds=30)
    desk.atol.fail("drop")
    desk.due(now + timedelta(seconds=30))
    kept = desk.get(receipt.id)
    assert kept.attempts == 2 and kept.next_attempt_at == now + timedelta(seconds=90)
    assert kept.last_error is not None and "could not be reached" in kept.last_error
    assert desk.due(now + timedelta(seconds=89)).due == 0
    desk.atol.fail("normal")
    back = desk.due(now + timedelta(seconds=90))
    assert back.accepted == 1
    sent = desk.get(receipt.id)
    assert sent.status == "wait" and sent.last_error is None and sent.attempts == 3
    assert sent.external_id == receipt.external_id  # the same receipt, printed once
    assert len(desk.atol.documents) == 1


def test_a_receipt_the_service_got_but_whose_answer_was_lost_is_not_printed_twice(
    desk: Desk,
) -> None:
    receipt = desk.ask(7)
    desk.send(receipt.id)
    # The answer never came back: the receipt is pending again as far as Kopilka knows.
    desk.tx(
        lambda c: c.execute(
            fiscal_receipts.update()
            .where(fiscal_receipts.c.id == receipt.id)
            .values(status="pending", provider_uuid=None)
        )
    )
    again = desk.send(receipt.id)
    assert again.status == "wait" and again.provider_uuid in desk.atol.documents
    assert len(desk.atol.documents) == 1  # ATOL answered code 33 with the first uuid


def test_a_refused_receipt_is_kept_shown_and_retried_under_a_new_external_id(desk: Desk) -> None:
    desk.tx(
        lambda c: rg.update_register(
            c,
            tenant_id=desk.tenant.id,
            register_id=desk.register.id,
            settings={"password": "wrong"},
            actor=desk.actor,
        )
    )
    receipt = desk.ask(7)
    failed = desk.send(receipt.id)
    assert failed.status == "failed" and failed.next_attempt_at is None
    assert failed.last_error is not None and "Неверный логин или пароль" in failed.last_error
    assert desk.due(utcnow() + timedelta(days=1)).due == 0  # failed is never sent by itself
    listed = desk.read(lambda c: rc.list_receipts(c, desk.tenant.id, status="failed"))
    assert [r.id for r in listed] == [receipt.id]

    desk.tx(
        lambda c: rg.update_register(
            c,
            tenant_id=desk.tenant.id,
            register_id=desk.register.id,
            settings={"password": desk.atol.password},
            actor=desk.actor,
        )
    )
    retried = desk.tx(lambda c: rc.retry_receipt(c, desk.tenant.id, receipt.id, desk.actor))
    assert retried.status == "pending" and retried.attempts == 0 and retried.last_error is None
    assert retried.external_id == receipt.external_id + "-r2"
    sent = desk.send(receipt.id)
    assert sent.status == "wait"
    assert list(desk.atol.documents_by_external_id()) == [receipt.external_id + "-r2"]
    retry_audit = desk.audits("receipt.retry")[0].details
    assert retry_audit["status_was"] == "failed"
    assert retry_audit["external_id"] == receipt.external_id + "-r2"


def test_a_receipt_reported_failed_is_retried_and_then_printed(desk: Desk) -> None:
    desk.atol.fail_reports = True
    desk.atol.wait_polls = 0
    receipt = desk.ask(7)
    desk.send(receipt.id)
    failed = desk.send(receipt.id)
    assert failed.status == "failed" and "timeout" in (failed.last_error or "")
    desk.atol.fail_reports = False
    once = rc.retry_and_send(desk.engine, desk.tenant.id, receipt.id, desk.actor)
    assert once.status == "wait" and once.external_id.endswith("-r2")
    desk.tx(lambda c: rc.retry_receipt(c, desk.tenant.id, receipt.id, desk.actor))  # ask now
    assert desk.send(receipt.id).status == "done"
    with pytest.raises(Refused) as done:
        desk.tx(lambda c: rc.retry_receipt(c, desk.tenant.id, receipt.id, desk.actor))
    assert done.value.code == "receipt_not_retryable"
    # A second refusal would get -r3.
    assert rc._next_external_id(desk.get(receipt.id)).endswith("-r3")


def test_retrying_a_pending_receipt_makes_it_due_now_and_restarts_its_back_off(
    desk: Desk,
) -> None:
    receipt = desk.ask(7)
    desk.atol.fail("500")
    desk.send(receipt.id, now=utcnow())
    waiting = desk.get(receipt.id)
    assert waiting.attempts == 1 and waiting.next_attempt_at is not None
    assert waiting.next_attempt_at > utcnow()
    retried = desk.tx(lambda c: rc.retry_receipt(c, desk.tenant.id, receipt.id, desk.actor))
    assert retried.attempts == 0 and retried.next_attempt_at is not None
    assert retried.next_attempt_at <= utcnow()
    assert retried.external_id == receipt.external_id  # not refused: the same id
    with pytest.raises(NotFound):
        desk.tx(lambda c: rc.retry_receipt(c, desk.tenant.id, 10**12, desk.actor))


def test_a_claimed_receipt_is_not_taken_twice(desk: Desk) -> None:
    receipt = desk.ask(7)
    now = utcnow() + timedelta(seconds=1)
    assert rc._claim(desk.engine, receipt.id, "pending", now) is True
    assert rc._claim(desk.engine, receipt.id, "pending", now) is False
    assert desk.due(now).due == 0
    assert desk.due(now + rc.CLAIM_LEASE).accepted == 1


def test_lists_by_source_and_status(desk: Desk) -> None:
    one, two = desk.ask(1), desk.ask(2)
    refund = desk.ask(1, source_type="hotel_refund", operation="sell_refund")
    desk.send(two.id)

    def listed(**filters: Any) -> list[int]:
        return [r.id for r in desk.read(lambda c: rc.list_receipts(c, desk.tenant.id, **filters))]

    assert listed() == [one.id, two.id, refund.id]
    assert listed(source_type="hotel_payment", source_ids=[2, 3]) == [two.id]
    assert listed(status="pending", newest_first=True) == [refund.id, one.id]
    assert listed(after_id=one.id, limit=1) == [two.id]
    assert desk.read(lambda c: rc.count_receipts(c, desk.tenant.id, "wait")) == 1
    found = desk.read(lambda c: rc.receipt_for_source(c, desk.tenant.id, "hotel_refund", 1))
    assert found is not None and found.id == refund.id
    with pytest.raises(InvalidInput):
        listed(status="lost")


# --------------------------------------------------------------------------- the job


def test_the_job_sends_the_tenants_due_receipts_with_progress(desk: Desk) -> None:
    desk.ask(1)
    desk.ask(2)
    job_id = start_job(
        desk.engine, tenant_id=desk.tenant.id, kind=KIND, params={}, actor=desk.actor
    )
    deadline = time.monotonic() + 20
    job = get_job(desk.engine, desk.tenant.id, job_id)
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.05)
        job = get_job(desk.engine, desk.tenant.id, job_id)
    assert job.status == "done", job.message
    assert job.result is not None and job.result["accepted"] == 2
    assert (job.done, job.total) == (2, 2)


def test_the_servers_clock_sends_receipts_by_itself(desk: Desk) -> None:
    receipt = desk.ask(7)
    clock = ReceiptScheduler(desk.engine, every_seconds=0.05)
    clock.start()
    try:
        deadline = time.monotonic() + 20
        while desk.get(receipt.id).status == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        clock.stop()
    assert desk.get(receipt.id).status in ("wait", "done")
