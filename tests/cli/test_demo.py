"""``kopilka demo``: a demo tenant with data on every ledger screen, loaded once."""

from __future__ import annotations

from sqlalchemy import func, select

from kopilka.core.db import read_only
from kopilka.demo import DEMO_TERMINAL, DEMO_USERS
from kopilka.ledger.accounts import find_accounts
from kopilka.ledger.schema import holds, lots, transfers
from kopilka.payments.codes import list_payment_codes, resolve_payment_code
from kopilka.payments.types import PaymentKind, list_payment_types
from kopilka.tenancy.actions import authenticate, get_tenant_by_slug, list_terminals
from kopilka.tenancy.schema import users
from tests.cli.conftest import Cli, one_line


def test_demo_twice_loads_once_and_prints_the_credentials_both_times(cli: Cli) -> None:
    first = cli("demo")
    assert first.exit_code == 0, first.output
    assert "demo tenant 'demo' (Kopilka Demo) loaded" in first.output
    assert "http://127.0.0.1:8000" in first.output
    assert "sign in to tenant demo as owner / demo-owner-1" in one_line(first)
    for user in DEMO_USERS:
        assert user.login in first.output and user.password in first.output
    assert "kpt_" in first.output
    assert "not shown again" in first.stderr

    second = cli("demo")
    assert second.exit_code == 0, second.output
    assert "exists already" in second.output
    assert "demo-owner-1" in second.output and "demo-desk-1" in second.output
    assert "kpt_" not in second.output

    engine = cli.engine()
    with read_only(engine) as conn:
        tenant = get_tenant_by_slug(conn, "demo")
        staff = conn.execute(
            select(func.count()).select_from(users).where(users.c.tenant_id == tenant.id)
        ).scalar_one()
        assert staff == len(DEMO_USERS)
        owner = authenticate(conn, tenant_slug="demo", login="owner", password="demo-owner-1")
        assert owner.role == "owner"
    engine.dispose()


def test_demo_data_covers_the_ledger_screens(cli: Cli) -> None:
    assert cli("demo").exit_code == 0
    engine = cli.engine()
    with read_only(engine) as conn:
        tenant = get_tenant_by_slug(conn, "demo")
        found = find_accounts(conn, tenant.id, limit=100)
        codes = {a.code for a in found if a.code}
        assert {"issuance:BONUS", "redeemed:BONUS", "revenue:RUB"} <= codes
        wallets = [a for a in found if a.owner_type == "card"]
        assert len(wallets) >= 3 and all(w.uses_lots for w in wallets)
        assert any(w.held_minor > 0 for w in wallets), "a pending hold"
        subscriber = next(a for a in found if a.policy == "credit_limit")
        assert subscriber.balance_minor < 0 < subscriber.credit_limit_minor
        kinds = set(
            conn.execute(
                select(transfers.c.kind).where(transfers.c.tenant_id == tenant.id)
            ).scalars()
        )
        assert {"accrual", "spend", "capture", "correction", "charge"} <= kinds
        assert (
            conn.execute(
                select(func.count()).select_from(holds).where(holds.c.tenant_id == tenant.id)
            ).scalar_one()
            == 2
        )
        future_lots = conn.execute(
            select(func.count())
            .select_from(lots)
            .where(lots.c.tenant_id == tenant.id, lots.c.expires_at.is_not(None))
        ).scalar_one()
        assert future_lots >= 3
    engine.dispose()


def test_the_demo_ledger_verifies_and_its_lapsed_lot_expires(cli: Cli) -> None:
    assert cli("demo").exit_code == 0

    verified = cli("ledger", "verify", "--tenant", "demo")
    assert verified.exit_code == 0, verified.output
    assert "ledger is consistent:" in verified.output

    expired = cli("ledger", "expire", "--tenant", "demo")
    assert expired.exit_code == 0, expired.output
    assert "demo" in expired.output

    again = cli("ledger", "expire", "--tenant", "demo")
    assert again.exit_code == 0
    assert cli("ledger", "snapshot").exit_code == 0
    assert cli("ledger", "verify").exit_code == 0


def test_demo_has_a_bonus_program_with_cards_checks_and_certificates(cli: Cli) -> None:
    from kopilka.demo import DEMO_LOYALTY_CARDS
    from kopilka.loyalty.cards import find_card
    from kopilka.loyalty.certificates import find_certificate

    assert cli("demo").exit_code == 0
    engine = cli.engine()
    with read_only(engine) as conn:
        tenant = get_tenant_by_slug(conn, "demo")
        anna = find_card(conn, tenant.id, number=DEMO_LOYALTY_CARDS[0])
        assert anna.holder_name == "Анна Петрова"
        assert anna.checks_count >= 2 and anna.accumulation_minor > 0
        assert anna.balance_minor > 500_00, "checks' accruals and the birthday gift"
        sold = find_certificate(conn, tenant.id, "900001")
        assert (sold.nominal_minor, sold.balance_minor) == (3_000_00, 1_800_00)
    engine.dispose()


def test_the_demo_hotel_has_its_payment_types_and_the_bars_codes(cli: Cli) -> None:
    """SPEC H-3, P-8: cash, card, room charge, deposit and bonuses at most 30 %; the bar's
    r_keeper sends 1, 2, 12, 13."""
    assert cli("demo").exit_code == 0
    assert cli("demo").exit_code == 0  # twice: still once each
    engine = cli.engine()
    with read_only(engine) as conn:
        tenant = get_tenant_by_slug(conn, "demo")
        types = {t.name: t for t in list_payment_types(conn, tenant.id)}
        bar = next(t for t in list_terminals(conn, tenant.id) if t.name == DEMO_TERMINAL)
        room = resolve_payment_code(conn, tenant_id=tenant.id, terminal_id=bar.id, code="12")
        codes = [c.code for c in list_payment_codes(conn, tenant.id)]
    engine.dispose()
    assert set(types) == {"Наличные", "Банковская карта", "Закрытие на номер", "Депозит", "Бонусы"}
    bonuses = types["Бонусы"]
    assert bonuses.kind == PaymentKind.POINTS and bonuses.max_share_bp == 3000
    assert bonuses.unit is not None and bonuses.unit.code == "BONUS"
    assert room.kind == PaymentKind.ROOM_CHARGE and codes == ["1", "2", "12", "13"]


def test_demo_has_an_internet_providers_subscribers(cli: Cli) -> None:
    from kopilka.demo import DEMO_CABINET_PASSWORD
    from kopilka.ledger.verify import verify
    from kopilka.subscribers.registry import authenticate as sign_in
    from kopilka.subscribers.registry import find_by_account_no

    result = cli("demo")
    assert result.exit_code == 0, result.output
    assert "/cabinet/demo/" in result.output
    engine = cli.engine()
    with read_only(engine) as conn:
        tenant = get_tenant_by_slug(conn, "demo")
        paying = find_by_account_no(conn, tenant.id, "100001")
        assert paying.status == "active" and paying.balance_minor > 0
        blocked = sign_in(
            conn, tenant_id=tenant.id, account_no="100002", password=DEMO_CABINET_PASSWORD
        )
        assert blocked.status == "blocked"
        assert find_by_account_no(conn, tenant.id, "100003").status == "new"
        assert verify(conn, tenant_id=tenant.id) == []
    engine.dispose()


def test_demo_has_a_studio_selling_memberships_online(cli: Cli) -> None:
    from kopilka.memberships import catalogue

    assert cli("demo").exit_code == 0
    engine = cli.engine()
    with read_only(engine) as conn:
        tenant = get_tenant_by_slug(conn, "demo")
        settings = catalogue.get_settings(conn, tenant.id)
        assert settings.online_enabled and settings.provider == "sandbox"
        assert settings.provider_config.get("secret")
        online = catalogue.list_types(conn, tenant.id, online_only=True)
        assert {t.name for t in online} == {"8 занятий в месяц", "Безлимит на месяц"}
        assert len(catalogue.list_classes(conn, tenant.id)) == 14
    engine.dispose()
