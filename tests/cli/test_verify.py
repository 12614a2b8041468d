"""``kopilka ledger verify``: exit 0 on a sound ledger, 1 naming what is broken."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import text

from kopilka.core.actor import Actor
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import Policy, create_account, create_unit, system_account
from kopilka.ledger.posting import post_one, simple_transfer
from kopilka.tenancy.actions import create_tenant
from tests.cli.conftest import Cli


def _wallet_with_points(cli: Cli) -> tuple[str, int]:
    """A tenant whose card wallet got 500 points: (slug, the wallet's account id)."""
    actor = Actor.cli("tests")
    slug = f"t-{uuid.uuid4().hex[:10]}"
    engine = cli.engine()
    with engine.begin() as conn:
        tenant = create_tenant(conn, slug=slug, name="Verify", actor=actor)
        create_unit(conn, tenant_id=tenant.id, code="BONUS", kind=UnitKind.POINTS, actor=actor)
        issuance = system_account(
            conn, tenant_id=tenant.id, unit_code="BONUS", purpose="issuance", actor=actor
        )
        wallet = create_account(
            conn,
            tenant_id=tenant.id,
            unit_code="BONUS",
            kind="wallet",
            policy=Policy.NON_NEGATIVE,
            owner_type="card",
            owner_id="1001",
            uses_lots=True,
            actor=actor,
        )
        post_one(
            conn,
            tenant_id=tenant.id,
            spec=simple_transfer(
                "accrual-1",
                debit_account_id=issuance.id,
                credit_account_id=wallet.id,
                amount_minor=500,
            ),
            actor=actor,
        )
    engine.dispose()
    return slug, wallet.id


def test_verify_passes_then_fails_on_a_corrupted_balance(
    fresh_database: Callable[[], Cli],
) -> None:
    cli = fresh_database()
    assert cli("db", "upgrade").exit_code == 0
    slug, wallet_id = _wallet_with_points(cli)

    clean = cli("ledger", "verify", "--tenant", slug)
    assert clean.exit_code == 0, clean.output
    assert "ledger is consistent: 1 transfers, 2 accounts checked" in clean.output

    engine = cli.engine()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE accounts SET balance_minor = balance_minor + 1 WHERE id = :id"),
            {"id": wallet_id},
        )
    engine.dispose()

    broken = cli("ledger", "verify", "--tenant", slug)
    assert broken.exit_code == 1, broken.output
    assert "stored_balance" in broken.output
    assert f"account {wallet_id}" in broken.output
    assert "stores balance 501" in broken.output

    everywhere = cli("ledger", "verify")
    assert everywhere.exit_code == 1
    assert f"account {wallet_id}" in everywhere.output


def test_verify_of_an_unknown_tenant_is_an_error(cli: Cli) -> None:
    result = cli("ledger", "verify", "--tenant", "nobody-here")
    assert result.exit_code == 2
    assert "error [tenant_not_found]" in result.stderr
