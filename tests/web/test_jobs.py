"""Background jobs with visible progress (SPEC X-5): the ledger check, a job that fails,
a job cut short, and jobs kept to their tenant."""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.jobs.runner import JobContext, register, start_job
from kopilka.jobs.schema import jobs
from kopilka.ledger.accounts import Policy, create_account
from kopilka.ledger.posting import post_one, simple_transfer
from kopilka.ledger.schema import accounts
from kopilka.tenancy.actions import create_tenant
from tests.web.conftest import Visitor, Web, text_of

ACTOR = Actor.cli("tests")
FINISHED = ("done", "failed", "interrupted")

# A job the test holds at step 1 of 3 until it lets it go.
_release: dict[int, threading.Event] = {}


@register("test.slow")
def _slow(ctx: JobContext) -> dict[str, Any]:
    ctx.progress.update(1, 3, "first third")
    gate = _release.setdefault(ctx.params["gate"], threading.Event())
    gate.wait(timeout=20)
    ctx.progress.update(2, 3, "second third")
    return {"answer": 42}


@register("test.fails")
def _fails(ctx: JobContext) -> None:
    ctx.progress.update(1, 4, "opening the vault")
    raise RuntimeError("the vault is locked")


def status_of(html: str) -> str:
    match = re.search(r'data-testid="job-progress"[^>]*data-status="(\w+)"', html) or re.search(
        r'data-status="(\w+)"[^>]*data-testid="job-progress"', html
    )
    if match is None:
        match = re.search(r'data-status="(\w+)"', html)
    assert match, html[:500]
    return match.group(1)


def poll(visitor: Visitor, job_id: int, *, until: tuple[str, ...] = FINISHED) -> httpx.Response:
    """Fetch the progress block as htmx does until the job reaches one of ``until``."""
    deadline = time.monotonic() + 30
    while True:
        block = visitor.get(f"/jobs/{job_id}/progress", headers={"HX-Request": "true"})
        assert block.status_code == 200
        if status_of(block.text) in until:
            return block
        assert time.monotonic() < deadline, f"job {job_id} is still {status_of(block.text)}"
        time.sleep(0.05)


def progress_bar(html: str) -> tuple[str, str]:
    match = re.search(r'<progress value="(\d+)" max="(\d+)"', html)
    assert match, html
    return match.group(1), match.group(2)


def test_the_ledger_check_runs_to_done_with_progress(web: Web) -> None:
    with web.engine.begin() as conn:
        wallet = create_account(
            conn, tenant_id=web.tenant.id, unit_code="RUB", kind="wallet", actor=ACTOR
        )
        cash = create_account(
            conn,
            tenant_id=web.tenant.id,
            unit_code="RUB",
            kind="cashdesk",
            policy=Policy.UNLIMITED,
            actor=ACTOR,
        )
        post_one(
            conn,
            tenant_id=web.tenant.id,
            spec=simple_transfer(
                uuid.uuid4().hex,
                debit_account_id=cash.id,
                credit_account_id=wallet.id,
                amount_minor=10000,
            ),
            actor=ACTOR,
        )
    owner = web.sign_in("owner")
    page = owner.get("/ledger/check")
    assert page.status_code == 200
    assert 'data-testid="start-check"' in page.text
    started = owner.post("/ledger/check")
    assert started.status_code == 303
    location = started.headers["location"]
    job_id = int(location.rsplit("/", 1)[1])
    assert location == f"/jobs/{job_id}"
    job_page = owner.get(location)
    assert job_page.status_code == 200
    assert 'data-testid="job-progress"' in job_page.text
    assert 'data-testid="job-status"' in job_page.text

    done = poll(owner, job_id)
    assert status_of(done.text) == "done"
    assert progress_bar(done.text) == ("13", "13")
    assert "hx-get" not in done.text and "every 1s" not in done.text  # polling stops
    assert "Проблем не найдено" in text_of(done.text)
    assert re.search(r'data-testid="job-status">Готово<', done.text)
    # The list of recent jobs shows it.
    listing = text_of(owner.get("/ledger/check").text)
    assert f"Проверка учёта #{job_id}" in listing and "Проблем нет" in listing


def test_the_ledger_check_lists_the_problems_it_finds(web: Web) -> None:
    with web.engine.begin() as conn:
        wallet = create_account(
            conn, tenant_id=web.tenant.id, unit_code="RUB", kind="wallet", actor=ACTOR
        )
        # A stored balance its entries do not explain (there are none).
        conn.execute(update(accounts).where(accounts.c.id == wallet.id).values(balance_minor=777))
    owner = web.sign_in("owner")
    job_id = int(owner.post("/ledger/check").headers["location"].rsplit("/", 1)[1])
    done = poll(owner, job_id)
    assert status_of(done.text) == "done"
    text = text_of(done.text)
    assert "Найдена 1 проблема." in text
    assert "Хранимые остатки равны сумме движений" in text
    assert f"account {wallet.id}" in text


def test_progress_is_shown_while_a_job_runs_and_polling_stops_when_it_ends(web: Web) -> None:
    gate = hash(uuid.uuid4().hex)
    _release[gate] = threading.Event()
    owner = web.sign_in("owner")
    try:
        job_id = start_job(
            web.engine,
            tenant_id=web.tenant.id,
            kind="test.slow",
            params={"gate": gate},
            actor=ACTOR,
        )
        running = poll(owner, job_id, until=("running", *FINISHED))
        assert status_of(running.text) == "running"
        deadline = time.monotonic() + 10
        while progress_bar(running.text) != ("1", "3"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
            running = poll(owner, job_id, until=("running", *FINISHED))
        assert f'hx-get="/jobs/{job_id}/progress"' in running.text
        assert 'hx-trigger="every 1s"' in running.text and 'hx-swap="outerHTML"' in running.text
        assert f'href="/jobs/{job_id}"' in running.text  # the no-JavaScript refresh
        assert "first third" in running.text
        page = owner.get(f"/jobs/{job_id}")
        assert "Выполняется" in text_of(page.text)
    finally:
        _release[gate].set()
    done = poll(owner, job_id)
    assert status_of(done.text) == "done"
    assert progress_bar(done.text) == ("3", "3")
    assert "hx-get" not in done.text
    with web.engine.connect() as conn:
        row = conn.execute(jobs.select().where(jobs.c.id == job_id)).one()
    assert row.result == {"answer": 42}
    assert row.finished_at is not None and row.started_at is not None


def test_a_job_that_raises_ends_failed_with_its_message(web: Web) -> None:
    owner = web.sign_in("owner")
    job_id = start_job(
        web.engine, tenant_id=web.tenant.id, kind="test.fails", params={}, actor=ACTOR
    )
    failed = poll(owner, job_id)
    assert status_of(failed.text) == "failed"
    text = text_of(failed.text)
    assert "the vault is locked" in text and "Ошибка" in text
    assert "Traceback" not in failed.text and "RuntimeError" not in failed.text
    assert "hx-get" not in failed.text
    assert progress_bar(failed.text) == ("1", "4")


@pytest.mark.parametrize("status", ["running", "queued"])
def test_a_job_that_went_quiet_is_shown_interrupted(web: Web, status: str) -> None:
    long_ago = utcnow() - timedelta(minutes=11)
    with web.engine.begin() as conn:
        job_id = conn.execute(
            jobs.insert().returning(jobs.c.id),
            {
                "tenant_id": web.tenant.id,
                "kind": "ledger.verify",
                "status": status,
                "done": 4 if status == "running" else 0,
                "total": 13 if status == "running" else None,
                "message": "stored_balance" if status == "running" else "",
                "actor_type": "cli",
                "created_at": long_ago,
                "started_at": long_ago if status == "running" else None,
                "updated_at": long_ago,
            },
        ).scalar_one()
    block = web.sign_in("owner").get(f"/jobs/{job_id}/progress")
    assert status_of(block.text) == "interrupted"
    assert "Прервано" in text_of(block.text)
    assert "hx-get" not in block.text


def test_jobs_belong_to_their_tenant(web: Web) -> None:
    with web.engine.begin() as conn:
        other = create_tenant(conn, slug=f"o-{uuid.uuid4().hex[:10]}", name="Other", actor=ACTOR)
    theirs = start_job(web.engine, tenant_id=other.id, kind="ledger.verify", params={}, actor=ACTOR)
    owner = web.sign_in("owner")
    assert owner.get(f"/jobs/{theirs}").status_code == 404
    assert owner.get(f"/jobs/{theirs}/progress").status_code == 404
    assert f"#{theirs}" not in text_of(owner.get("/ledger/check").text)


def test_cashiers_cannot_run_jobs(web: Web) -> None:
    cashier = web.sign_in("cashier")
    assert cashier.get("/ledger/check").status_code == 403
    assert cashier.post("/ledger/check").status_code == 403
    owner_job = start_job(
        web.engine, tenant_id=web.tenant.id, kind="ledger.verify", params={}, actor=ACTOR
    )
    assert cashier.get(f"/jobs/{owner_job}").status_code == 403


def test_a_post_without_the_csrf_token_starts_nothing(web: Web) -> None:
    owner = web.sign_in("owner")
    refused = owner.client.post("/ledger/check", data={}, follow_redirects=False)
    assert refused.status_code == 403
    with web.engine.connect() as conn:
        count = conn.execute(jobs.select().where(jobs.c.tenant_id == web.tenant.id)).all()
    assert count == []
