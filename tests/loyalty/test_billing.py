"""Billing of discount cards switched off, exported and purged (SPEC P-9, C-7; seed 002
"Выключение механизма биллинга дисконтных карт": the data are destroyed after a threefold
confirmation, and nothing else of the business is touched)."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner, Result

from kopilka.cli import common as cli_common
from kopilka.cli.main import app as cli_app
from kopilka.core.actor import Actor, ActorType
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import Policy, create_account, create_unit, get_account
from kopilka.ledger.accounts import set_credit_limit as set_limit
from kopilka.ledger.balances import take_snapshots
from kopilka.ledger.holds import capture_hold, place_hold
from kopilka.ledger.posting import post_transfers, run_transaction, simple_transfer
from kopilka.ledger.schema import transfers
from kopilka.ledger.verify import verify
from kopilka.loyalty import certificates as gc
from kopilka.loyalty import pos
from kopilka.loyalty.billing import (
    PurgeConfirmation,
    PurgeReport,
    export_loyalty,
    loyalty_status,
    purge_loyalty,
    request_purge,
    set_loyalty_enabled,
    snapshot,
)
from kopilka.loyalty.billing_scope import DOMAIN_TABLES, LEDGER_TABLES, NOT_LOYALTY_TABLES
from kopilka.loyalty.cards import issue_card
from kopilka.loyalty.documents import accrue_points
from kopilka.loyalty.programs import create_program
from kopilka.schema import metadata
from kopilka.tenancy.actions import create_tenant, create_terminal
from kopilka.tenancy.schema import purge_permits, purge_requests

from .conftest import Shop

_ids = iter(range(1, 1_000_000))


def _id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


@dataclass
class Money:
    """The tenant's own money, which a purge of loyalty must leave as it was."""

    source: int
    wallet: int


def commit(shop: Shop, number: str, check_id: str, total: int, points: int = 0) -> int:
    """Commits a one-line check at the shop's terminal; the points it accrued."""
    check = shop.tx(
        lambda c: pos.commit_check(
            c,
            tenant_id=shop.tenant.id,
            terminal_id=shop.terminal_id,
            check_id=check_id,
            card_number=number,
            lines=[total],
            points_minor=points,
            actor=shop.actor,
        )
    )
    return check.accrued_minor


def fill(shop: Shop) -> Money:
    """A shop with every kind of loyalty data, and money accounts beside it."""
    t, actor = shop.tenant.id, shop.actor
    first, second = shop.card(holder_name="Ирина"), shop.card()
    commit(shop, first.number, "1001", 1000_00)
    commit(shop, second.number, "1002", 1000_00)
    commit(shop, first.number, "1003", 200_00, points=10_00)  # points spent consume a lot
    shop.tx(
        lambda c: pos.refund_check(
            c,
            tenant_id=t,
            terminal_id=shop.terminal_id,
            check_id="1001",
            refund_id="R1",
            amount_minor=500_00,
            actor=actor,
        )
    )
    shop.tx(
        lambda c: accrue_points(
            c,
            tenant_id=t,
            card_numbers=[second.number],
            amount_minor=5_00,
            reason="birthday",
            actor=actor,
            document_id=_id("doc"),
        )
    )

    def holds_and_money(c: Connection) -> Money:
        redeemed = c.execute(
            text("SELECT id FROM accounts WHERE tenant_id = :t AND code = 'redeemed:BONUS'"),
            {"t": t},
        ).scalar_one()
        for n in range(2):
            hold = place_hold(
                c,
                tenant_id=t,
                idempotency_key=_id("hold"),
                debit_account_id=second.account_id,
                credit_account_id=redeemed,
                amount_minor=1_00,
                actor=actor,
            )
            if n == 0:
                capture_hold(
                    c, tenant_id=t, hold_id=hold.id, idempotency_key=_id("cap"), actor=actor
                )
        source = create_account(
            c, tenant_id=t, unit_code="RUB", kind="system", policy=Policy.UNLIMITED, actor=actor
        ).id
        wallet = create_account(
            c, tenant_id=t, unit_code="RUB", kind="wallet", policy=Policy.CREDIT_LIMIT, actor=actor
        ).id
        set_limit(
            c, tenant_id=t, account_id=wallet, credit_limit_minor=100_00, reason="", actor=actor
        )
        post_transfers(
            c,
            tenant_id=t,
            specs=[
                simple_transfer(
                    _id("money"),
                    debit_account_id=source,
                    credit_account_id=wallet,
                    amount_minor=70_00,
                )
            ],
            actor=actor,
        )
        take_snapshots(c, t)
        return Money(source, wallet)

    money = shop.tx(holds_and_money)
    desk_number = f"50{uuid.uuid4().int % 10**8:08d}"
    shop.tx(lambda c: gc.issue_certificate(c, tenant_id=t, number=desk_number, actor=actor))
    shop.tx(
        lambda c: gc.sell_certificate(
            c,
            tenant_id=t,
            number=desk_number,
            nominal_minor=3000_00,
            operation_id=_id("sale"),
            actor=actor,
        )
    )
    shop.tx(
        lambda c: gc.pay_with_certificate(
            c,
            tenant_id=t,
            number=desk_number,
            amount_minor=1200_00,
            operation_id="pay-1",
            terminal_id=shop.terminal_id,
            actor=actor,
        )
    )
    shop.tx(
        lambda c: gc.refund_payment(
            c,
            tenant_id=t,
            number=desk_number,
            operation_id="pay-1",
            refund_id="RF1",
            amount_minor=200_00,
            terminal_id=shop.terminal_id,
            actor=actor,
        )
    )
    shop.assert_clean()
    return money


def other_shop(engine: Engine, actor: Actor) -> Shop:
    """A second tenant with the same program and data, which a purge must not touch."""

    def setup(c: Connection) -> Shop:
        tenant = create_tenant(c, slug=f"o-{uuid.uuid4().hex[:12]}", name="Other", actor=actor)
        create_unit(
            c, tenant_id=tenant.id, code="BONUS", kind=UnitKind.POINTS, exponent=2, actor=actor
        )
        program = create_program(
            c, tenant_id=tenant.id, name="Бонусы", unit_code="BONUS", accrual_bp=300, actor=actor
        )
        terminal, key = create_terminal(c, tenant_id=tenant.id, name="Касса 1", actor=actor)
        return Shop(engine, tenant, actor, program, terminal.id, key)

    return run_transaction(engine, setup)


def rows_of(engine: Engine, tenant_id: int) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of the tenant, by table, as (primary key, full row)."""
    found: dict[str, set[tuple[Any, ...]]] = {}
    with read_only(engine) as conn:
        for table in metadata.sorted_tables:
            if "tenant_id" not in table.c:
                continue
            rows = conn.execute(select(table).where(table.c.tenant_id == tenant_id)).all()
            found[table.name] = {tuple(str(v) for v in row) for row in rows}
    return found


def refused(code: str, work: Callable[[], Any]) -> KopilkaError:
    with pytest.raises(KopilkaError) as caught:
        work()
    assert caught.value.code == code, caught.value
    return caught.value


def ask(shop: Shop) -> str:
    return shop.tx(lambda c: request_purge(c, tenant_id=shop.tenant.id, actor=shop.actor)).token


def purge(shop: Shop, token: str, slug: str | None = None) -> PurgeReport:
    confirmation = PurgeConfirmation(token, shop.tenant.slug if slug is None else slug)
    return shop.tx(
        lambda c: purge_loyalty(
            c, tenant_id=shop.tenant.id, confirmation=confirmation, actor=shop.actor
        )
    )


def switch(shop: Shop, enabled: bool) -> bool:
    return shop.tx(
        lambda c: set_loyalty_enabled(
            c, tenant_id=shop.tenant.id, enabled=enabled, actor=shop.actor
        )
    )


def export(shop: Shop) -> zipfile.ZipFile:
    out = io.BytesIO()
    with snapshot(shop.engine) as conn:
        export_loyalty(conn, shop.tenant.id, out)
    return zipfile.ZipFile(io.BytesIO(out.getvalue()))


def read_export(archive: zipfile.ZipFile) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    manifest = json.loads(archive.read("manifest.json"))
    tables: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["files"]:
        data = archive.read(entry["name"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        tables[entry["table"]] = [json.loads(line) for line in data.decode().splitlines()]
        assert len(tables[entry["table"]]) == entry["rows"]
    lines = "".join(f"{f['name']} {f['sha256']}\n" for f in manifest["files"])
    assert manifest["checksum"] == hashlib.sha256(lines.encode()).hexdigest()
    return manifest, tables


# --------------------------------------------------------------------------- the switch


def test_the_switch_is_on_by_default_and_audited(shop: Shop) -> None:
    assert switch(shop, True) is False  # on already: nothing to record
    assert switch(shop, False) is True
    assert switch(shop, False) is False
    with read_only(shop.engine) as conn:
        assert loyalty_status(conn, shop.tenant.id).enabled is False
        actions = (
            conn.execute(
                text(
                    "SELECT action FROM audit_events "
                    "WHERE tenant_id = :t AND action LIKE 'loyalty.%'"
                ),
                {"t": shop.tenant.id},
            )
            .scalars()
            .all()
        )
    assert actions == ["loyalty.disable"]


# --------------------------------------------------------------------------- export


def test_the_export_holds_every_loyalty_row_and_checks_out(shop: Shop) -> None:
    fill(shop)
    with read_only(shop.engine) as conn:
        status = loyalty_status(conn, shop.tenant.id)
    manifest, tables = read_export(export(shop))
    assert manifest["tenant"]["slug"] == shop.tenant.slug
    assert {f["table"]: f["rows"] for f in manifest["files"]} == status.rows
    assert manifest["rows"] == status.total_rows > 0
    assert [t.name for t in (*LEDGER_TABLES, *DOMAIN_TABLES)] == list(tables)
    assert len(tables["cards"]) == 2 and tables["cards"][0]["holder_name"] == "Ирина"
    assert {r["check_id"] for r in tables["pos_checks"]} == {"1001", "1002", "1003"}
    assert len(tables["pos_refunds"]) == 1 and len(tables["certificates"]) == 1
    assert len(tables["certificate_payments"]) == 1 and len(tables["certificate_refunds"]) == 1
    assert len(tables["holds"]) == 2 and len(tables["hold_resolutions"]) == 1
    assert tables["lot_consumptions"] and tables["account_snapshots"]
    assert [u["code"] for u in tables["units"]] == ["BONUS"]
    codes = {a["code"] for a in tables["accounts"]}
    assert {"issuance:BONUS", "redeemed:BONUS", "certificate_sales:RUB"} <= codes
    # Every entry of every exported transfer is there: the export balances by itself.
    exported = {t["id"] for t in tables["transfers"]}
    assert {e["transfer_id"] for e in tables["entries"]} == exported
    for transfer_id in exported:
        legs = [e["amount_minor"] for e in tables["entries"] if e["transfer_id"] == transfer_id]
        assert sum(legs) == 0 and len(legs) >= 2
    assert isinstance(tables["pos_checks"][0]["closed_at"], str)  # ISO 8601


def test_an_empty_export(shop: Shop, engine: Engine, actor: Actor) -> None:
    bare = run_transaction(
        engine,
        lambda c: create_tenant(c, slug=f"e-{uuid.uuid4().hex[:12]}", name="Bare", actor=actor),
    )
    out = io.BytesIO()
    with snapshot(engine) as conn:
        report = export_loyalty(conn, bare.id, out)
    assert report.total_rows == 0
    manifest, tables = read_export(zipfile.ZipFile(io.BytesIO(out.getvalue())))
    assert manifest["rows"] == 0 and all(rows == [] for rows in tables.values())


# --------------------------------------------------------------------------- purge


def test_purge_is_refused_while_loyalty_is_on(shop: Shop) -> None:
    fill(shop)
    refused("loyalty_still_enabled", lambda: ask(shop))
    switch(shop, False)
    token = ask(shop)
    switch(shop, True)
    refused("loyalty_still_enabled", lambda: purge(shop, token))


def test_purge_needs_its_request_and_the_short_name(shop: Shop, engine: Engine) -> None:
    fill(shop)
    switch(shop, False)
    before = rows_of(engine, shop.tenant.id)
    token = ask(shop)
    refused("purge_not_confirmed", lambda: purge(shop, token, slug="someone-else"))
    refused("purge_request_invalid", lambda: purge(shop, "kpp_made-up"))
    someone = Actor(ActorType.USER, "999999", "someone else")
    stranger = Shop(engine, shop.tenant, someone, shop.program, 0, "")
    refused("purge_request_invalid", lambda: purge(stranger, token))
    other = other_shop(engine, shop.actor)
    switch(other, False)
    refused("purge_request_invalid", lambda: purge(other, token, slug=other.tenant.slug))
    expired = ask(shop)
    shop.tx(
        lambda c: c.execute(
            update(purge_requests)
            .where(purge_requests.c.token_hash == hashlib.sha256(expired.encode()).hexdigest())
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    )
    refused("purge_request_invalid", lambda: purge(shop, expired))
    after = rows_of(engine, shop.tenant.id)
    for name in before:
        if name not in ("audit_events", "purge_requests"):
            assert after[name] == before[name], name
    # The refusals left the request good: it works once, then never again.
    assert purge(shop, token, slug=shop.tenant.slug.upper()).total_rows > 0
    refused("purge_request_invalid", lambda: purge(shop, token))


def test_purge_removes_loyalty_data_and_nothing_else(shop: Shop, engine: Engine) -> None:
    money = fill(shop)
    other = other_shop(engine, shop.actor)
    fill(other)
    switch(shop, False)
    _, exported = read_export(export(shop))
    with read_only(engine) as conn:
        money_before = [get_account(conn, shop.tenant.id, a) for a in (money.source, money.wallet)]
    before, theirs_before = rows_of(engine, shop.tenant.id), rows_of(engine, other.tenant.id)

    report = purge(shop, ask(shop))

    after = rows_of(engine, shop.tenant.id)
    assert report.removed == {name: len(rows) for name, rows in exported.items()}
    for name, rows in before.items():
        gone = before[name] - after[name]
        if name in ("audit_events", "purge_requests"):  # appended to; one request used
            assert len(after[name]) > len(rows) or name == "purge_requests"
            continue
        assert len(gone) == len(exported.get(name, [])), name
        assert after[name] <= rows, f"{name} gained rows"
        exported_ids = {str(row.get("id", row.get("hold_id"))) for row in exported.get(name, [])}
        assert {row[0] for row in gone} <= exported_ids or name == "balance_shards", name
    assert all(not after[t.name] for t in DOMAIN_TABLES)
    assert rows_of(engine, other.tenant.id) == theirs_before
    with read_only(engine) as conn:
        assert [
            get_account(conn, shop.tenant.id, a) for a in (money.source, money.wallet)
        ] == money_before
        assert verify(conn, tenant_id=shop.tenant.id) == []
        assert verify(conn, tenant_id=other.tenant.id) == []
        assert conn.execute(select(purge_permits)).all() == []
        status = loyalty_status(conn, shop.tenant.id)
        purged = conn.execute(
            text(
                "SELECT details FROM audit_events WHERE tenant_id = :t AND action = 'loyalty.purge'"
            ),
            {"t": shop.tenant.id},
        ).scalar_one()
    assert status.total_rows == 0
    details = purged if isinstance(purged, dict) else json.loads(purged)
    assert details["rows"] == report.total_rows and details["cards"] == 2
    # A second purge finds nothing to do.
    assert purge(shop, ask(shop)).total_rows == 0


def test_loyalty_starts_again_from_nothing(shop: Shop) -> None:
    fill(shop)
    number = shop.card().number
    switch(shop, False)
    purge(shop, ask(shop))
    switch(shop, True)
    t, actor = shop.tenant.id, shop.actor

    def again(c: Connection) -> None:
        create_unit(c, tenant_id=t, code="BONUS", kind=UnitKind.POINTS, exponent=2, actor=actor)
        program = create_program(
            c, tenant_id=t, name="Бонусы", unit_code="BONUS", accrual_bp=500, actor=actor
        )
        issue_card(c, tenant_id=t, program_id=program.id, number=number, actor=actor)

    shop.tx(again)
    # The same check id as before the purge, on the same card number.
    assert commit(shop, number, "1001", 100_00) == 5_00
    shop.assert_clean()


def test_purge_refuses_when_loyalty_moved_money_that_stays(shop: Shop) -> None:
    money = fill(shop)
    t, actor = shop.tenant.id, shop.actor
    number = f"50{uuid.uuid4().int % 10**8:08d}"
    certificate = shop.tx(
        lambda c: gc.issue_certificate(c, tenant_id=t, number=number, actor=actor)
    )
    # Money put straight from the tenant's own account on a certificate: that account has
    # a history of its own, which a purge may not rewrite.
    odd = simple_transfer(
        _id("odd"),
        debit_account_id=money.source,
        credit_account_id=certificate.account_id,
        amount_minor=1_00,
    )
    shop.tx(lambda c: post_transfers(c, tenant_id=t, specs=[odd], actor=actor))
    switch(shop, False)
    with read_only(shop.engine) as conn:
        assert loyalty_status(conn, t).crossing_accounts == (money.source,)
    error = refused("purge_crosses_ledger", lambda: purge(shop, ask(shop)))
    assert error.params["accounts"] == [money.source]


def test_the_ledger_stays_append_only_outside_a_purge(shop: Shop) -> None:
    fill(shop)
    t = shop.tenant.id
    with read_only(shop.engine) as conn:
        transfer_id = conn.execute(
            select(transfers.c.id).where(transfers.c.tenant_id == t).limit(1)
        ).scalar_one()

    def delete_without_permit(c: Connection) -> None:
        c.execute(text("DELETE FROM transfers WHERE id = :i"), {"i": transfer_id})

    def update_under_permit(c: Connection) -> None:
        if c.dialect.name == "postgresql":
            c.execute(text("SELECT set_config('kopilka.purge_tenant', :t, true)"), {"t": str(t)})
        else:
            c.execute(purge_permits.insert(), {"tenant_id": t, "created_at": utcnow()})
        c.execute(text("UPDATE transfers SET description = 'x' WHERE id = :i"), {"i": transfer_id})

    for work in (delete_without_permit, update_under_permit):
        with pytest.raises(DBAPIError, match="append-only"):
            shop.tx(work)
    with read_only(shop.engine) as conn:
        assert conn.execute(select(transfers.c.id).where(transfers.c.id == transfer_id)).first()


def test_every_table_pointing_at_loyalty_rows_is_in_the_scope() -> None:
    """A new table referring to cards, accounts or transfers must join the scope (or a
    purge would stop on its foreign key); this names the one that was forgotten."""
    covered = {t.name for t in (*LEDGER_TABLES, *DOMAIN_TABLES)}
    for table in metadata.sorted_tables:
        if table.name in covered or table.name in NOT_LOYALTY_TABLES:
            continue
        for key in table.foreign_keys:
            assert key.column.table.name not in covered, (
                f"{table.name}.{key.parent.name} refers to {key.column.table.name}: "
                "add it to kopilka.loyalty.billing_scope"
            )


# --------------------------------------------------------------------------- the CLI


def kopilka(shop: Shop, *args: str, input: str | None = None) -> Result:
    url = shop.engine.url.render_as_string(hide_password=False)
    saved = cli_common.console.width, cli_common.err_console.width
    cli_common.console.width = cli_common.err_console.width = 200  # no wrapping
    try:
        return CliRunner().invoke(cli_app, ["--database-url", url, *args], input=input)
    finally:
        cli_common.console.width, cli_common.err_console.width = saved


def test_the_cli_switches_exports_and_purges_after_three_confirmations(
    shop: Shop, tmp_path: Path
) -> None:
    fill(shop)
    slug = shop.tenant.slug
    tenant = ("--tenant", slug)
    assert "switched off" in kopilka(shop, "loyalty", "disable", *tenant).output
    assert "off already" in kopilka(shop, "loyalty", "disable", *tenant).output
    status = kopilka(shop, "loyalty", "status", *tenant)
    assert status.exit_code == 0 and "cards" in status.output

    out = tmp_path / "loyalty.zip"
    exported = kopilka(shop, "loyalty", "export", *tenant, "-o", str(out))
    assert exported.exit_code == 0, exported.output
    manifest, tables = read_export(zipfile.ZipFile(out))
    assert manifest["rows"] > 0 and len(tables["cards"]) == 2

    for answers in ("n\n", f"y\n{slug}x\n", f"y\n{slug}\npurge\n"):
        declined = kopilka(shop, "loyalty", "purge", *tenant, input=answers)
        assert declined.exit_code == 2, declined.output
        assert "purge_not_confirmed" in declined.output
    with read_only(shop.engine) as conn:
        assert loyalty_status(conn, shop.tenant.id).rows["cards"] == 2

    purged = kopilka(shop, "loyalty", "purge", *tenant, input=f"y\n{slug}\npurge {slug}\n")
    assert purged.exit_code == 0, purged.output
    assert f"purged: {manifest['rows']} rows" in purged.output
    assert kopilka(shop, "ledger", "verify", *tenant).exit_code == 0
    assert "switched on" in kopilka(shop, "loyalty", "enable", *tenant).output
    refused_now = kopilka(shop, "loyalty", "purge", *tenant)
    assert refused_now.exit_code == 2 and "loyalty_still_enabled" in refused_now.output
