"""The doors of the card import: HTTP (multipart upload), ``kopilka cards import`` and the
``cards.import`` job, on the same shop as the domain tests."""

from __future__ import annotations

import base64
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

from kopilka.api.app import create_app
from kopilka.cli import common
from kopilka.cli.main import app as cli_app
from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.jobs.runner import get_job, start_job
from kopilka.loyalty import imports
from kopilka.loyalty.cards import find_card
from kopilka.tenancy.actions import create_user, issue_staff_token

from .conftest import Shop

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

URL = "/api/v1/loyalty/imports/cards"
GOOD = "Номер;ФИО;Накопление;Бонусы\n7100000001;Иванов;600,00;120,50\n7100000002;;;1\n".encode()
BAD = "Номер;Бонусы\n7100000003;1,234\n12ab;1\n".encode("cp1251")
_apps: dict[str, Any] = {}


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="module", autouse=True)
def _dispose_apps() -> Any:
    yield
    for made in _apps.values():
        made.state.engine.dispose()
    _apps.clear()


def token(shop: Shop, role: str) -> str:
    with shop.engine.begin() as conn:
        user = create_user(
            conn,
            tenant_id=shop.tenant.id,
            login=f"{role}-{uuid.uuid4().hex[:6]}",
            password="correct horse battery",
            role=role,
            actor=Actor.cli("tests"),
        )
        issued, _ = issue_staff_token(conn, user=user, actor=Actor.cli("tests"))
    return issued


def upload(
    shop: Shop, data: bytes, role: str = "owner", key: str | None = None, **form: Any
) -> httpx.Response:
    url = url_of(shop.engine)
    if url not in _apps:
        _apps[url] = create_app(url)
    headers = {"Authorization": f"Bearer {token(shop, role)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    fields = {"program_id": str(shop.program.id), "start_date": "2026-03-01", **form}
    return TestClient(_apps[url]).post(
        URL, headers=headers, data=fields, files={"file": ("cards.csv", data, "text/csv")}
    )


def test_http_import_replay_and_conflict(shop: Shop) -> None:
    first = upload(shop, GOOD, key="http-1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["import_id"] == "http-1"
    assert (body["cards_issued"], body["points"], body["accumulation"]) == (2, "121.50", "600.00")
    assert body["opening_at"].startswith("2026-02-28T20:59:59.999999")
    again = upload(shop, GOOD, key="http-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == {**body, "replayed": True}
    conflict = upload(shop, GOOD, key="http-1", start_date="2026-02-01")
    assert conflict.status_code == 409 and conflict.json()["code"] == "import_conflict"
    shop.assert_clean()


def test_http_bad_file_lists_every_row_and_roles(shop: Shop) -> None:
    bad = upload(shop, BAD)
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    problem = bad.json()
    assert problem["code"] == "invalid_import" and problem["error_count"] == 2
    assert [(e["line"], e["column"], e["code"]) for e in problem["errors"]] == [
        (2, "Бонусы", "amount_too_precise"),
        (3, "Номер", "invalid_card_number"),
    ]
    assert all(e["message"] for e in problem["errors"])
    dry = upload(shop, GOOD, role="administrator", dry_run="true")
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    refused = upload(shop, GOOD, role="cashier")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    missing = upload(shop, GOOD, program_id="999999999")
    assert missing.status_code == 404 and missing.json()["code"] == "program_not_found"
    # The day before 0001-01-01 does not exist: it was a 500 (schemathesis).
    early = upload(shop, GOOD, start_date="0001-01-01")
    assert early.status_code == 422 and early.json()["code"] == "invalid_import"
    # A card valid through 31.12.9999 would expire on a day that does not exist.
    last = upload(shop, "Номер;Срок\n7100000009;31.12.9999\n".encode())
    assert last.status_code == 422, last.text
    assert [e["code"] for e in last.json()["errors"]] == ["invalid_date"]


@pytest.fixture
def wide() -> Any:
    saved = common.console.width, common.err_console.width
    common.console.width = common.err_console.width = 200
    yield
    common.console.width, common.err_console.width = saved


def cli(shop: Shop, *args: str) -> Any:
    return CliRunner().invoke(cli_app, ["--database-url", url_of(shop.engine), *args])


def test_cli_import_then_again_then_a_bad_file(shop: Shop, tmp_path: Path, wide: None) -> None:
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_bytes(GOOD)
    bad.write_bytes(BAD)
    common_args = ["--tenant", shop.tenant.slug, "--program", shop.program.name]
    done = cli(shop, "cards", "import", str(good), *common_args, "--start-date", "2026-03-01")
    assert done.exit_code == 0, done.output
    assert "cards issued" in done.output and "121.50 BONUS" in done.output
    with read_only(shop.engine) as conn:
        card = find_card(conn, shop.tenant.id, number="7100000001")
    assert (card.balance_minor, card.accumulation_minor) == (120_50, 600_00)
    again = cli(shop, "cards", "import", str(good), *common_args, "--start-date", "2026-03-01")
    assert again.exit_code == 0 and "done already" in again.output
    refused = cli(
        shop,
        "cards",
        "import",
        str(bad),
        "--tenant",
        shop.tenant.slug,
        "--program",
        str(shop.program.id),
        "--start-date",
        "2026-03-01",
        "--dry-run",
    )
    assert refused.exit_code == 2
    assert "amount_too_precise" in refused.output and "invalid_card_number" in refused.output
    assert "error [invalid_import]" in refused.output
    wrong_date = cli(shop, "cards", "import", str(good), *common_args, "--start-date", "1.3.26")
    assert wrong_date.exit_code == 2 and "invalid_import" in wrong_date.output
    shop.assert_clean()


def wait(engine: Engine, tenant_id: int, job_id: int) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = get_job(engine, tenant_id, job_id)
        if job.finished:
            return job
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def test_the_job_imports_with_progress_and_reports_rejections(shop: Shop) -> None:
    params = {
        "program_id": shop.program.id,
        "start_date": "2026-03-01",
        "data_base64": base64.b64encode(GOOD).decode(),
        "user_id": 1,
        "user_login": "owner",
    }
    job_id = start_job(
        shop.engine,
        tenant_id=shop.tenant.id,
        kind=imports.JOB_KIND,
        params=params,
        actor=shop.actor,
    )
    job = wait(shop.engine, shop.tenant.id, job_id)
    assert job.status == "done", job.message
    assert job.result["outcome"] == "imported" and job.result["cards_issued"] == 2
    assert job.done == job.total == 2
    params["data_base64"] = base64.b64encode(BAD).decode()
    job = wait(
        shop.engine,
        shop.tenant.id,
        start_job(
            shop.engine,
            tenant_id=shop.tenant.id,
            kind=imports.JOB_KIND,
            params=params,
            actor=shop.actor,
        ),
    )
    assert job.status == "done"
    assert job.result["outcome"] == "rejected" and job.result["error_count"] == 2
    shop.assert_clean()
