"""A tenant's cash registers: added with checked settings, renamed, re-configured and
switched off, each change audited; the password kept for the adapter and shown nowhere."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from kopilka.core.actor import Actor
from kopilka.core.errors import Conflict, InvalidInput, NotFound
from kopilka.fiscal import registers as rg
from kopilka.fiscal.atol import DEFAULT_BASE_URL
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import Tenant, create_tenant
from tests.fiscal.atol_server import AtolStandIn
from tests.fiscal.conftest import Desk


def create(engine: Engine, tenant: Tenant, actor: Actor, name: str, **settings: Any) -> Any:
    base: dict[str, Any] = {
        "login": "v5-hotel",
        "password": "pa55word",
        "group_code": "hotel_1",
        "inn": "7707083893",
        "payment_address": "Сочи, Курортный проспект, 1",
        "sno": "osn",
        "company_email": "hotel@example.ru",
    }
    base.update(settings)
    return run_transaction(
        engine,
        lambda conn: rg.create_register(
            conn, tenant_id=tenant.id, name=name, settings=base, actor=actor
        ),
    )


def test_a_register_is_added_with_defaults_and_its_password_kept_secret(
    engine: Engine, tenant: Tenant, actor: Actor
) -> None:
    made = create(engine, tenant, actor, "  Ресепшен ")
    assert made.name == "Ресепшен" and made.enabled and made.adapter == "atol_online_v5"
    assert made.settings["password"] == "pa55word"  # for the adapter
    assert made.settings["base_url"] == DEFAULT_BASE_URL
    assert made.settings["timeout_ms"] == 15_000
    shown = made.public_settings
    assert "password" not in shown and shown["password_set"] is True
    assert "pa55word" not in repr(made)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("base_url", "ftp://online.atol.ru"),
        ("base_url", "online.atol.ru"),
        ("base_url", "https://online.atol.ru/?x=1"),
        ("login", ""),
        ("password", ""),
        ("group_code", "group/../other"),
        ("inn", "123456789"),
        ("inn", "7707083890"),  # a wrong check digit
        ("inn", "50084735041"),  # 11 digits
        ("payment_address", " "),
        ("sno", "envd"),
        ("company_email", "hotel@localhost"),
        ("timeout_ms", 50),
        ("colour", "red"),
    ],
)
def test_every_setting_is_checked_and_named_when_wrong(
    engine: Engine, tenant: Tenant, actor: Actor, field: str, value: Any
) -> None:
    with pytest.raises(InvalidInput) as refused:
        create(engine, tenant, actor, "Ресепшен", **{field: value})
    assert refused.value.code == "invalid_register_setting"
    assert refused.value.params["field"] == field
    assert run_transaction(engine, lambda c: rg.list_registers(c, tenant.id)) == []


def test_inns_of_organisations_and_entrepreneurs(
    engine: Engine, tenant: Tenant, actor: Actor
) -> None:
    create(engine, tenant, actor, "ООО", inn="7707083893")
    create(engine, tenant, actor, "ИП", inn="500100732259")
    names = [r.name for r in run_transaction(engine, lambda c: rg.list_registers(c, tenant.id))]
    assert names == ["ИП", "ООО"]


def test_names_are_unique_whatever_the_letters_case(
    engine: Engine, tenant: Tenant, actor: Actor
) -> None:
    create(engine, tenant, actor, "Ресепшен")
    with pytest.raises(Conflict) as taken:
        create(engine, tenant, actor, "РЕСЕПШЕН")
    assert taken.value.code == "cash_register_exists"
    with pytest.raises(InvalidInput) as empty:
        create(engine, tenant, actor, "   ")
    assert empty.value.code == "invalid_cash_register"


def test_changes_keep_the_password_unless_a_new_one_is_given_and_are_audited(desk: Desk) -> None:
    register_id = desk.register.id

    def update(**fields: Any) -> rg.CashRegister:
        return desk.tx(
            lambda c: rg.update_register(
                c, tenant_id=desk.tenant.id, register_id=register_id, actor=desk.actor, **fields
            )
        )

    renamed = update(name="Ресепшен, корпус 2", settings={"password": "", "sno": "osn"})
    assert renamed.name == "Ресепшен, корпус 2"
    assert renamed.settings["password"] == desk.atol.password  # kept
    assert renamed.settings["sno"] == "osn"
    update(settings={"password": "n3w-secret"})
    off = update(enabled=False)
    assert off.enabled is False and off.settings["password"] == "n3w-secret"
    unchanged = update(name="Ресепшен, корпус 2", settings={"sno": "osn"})
    assert unchanged == off

    audits = desk.audits("cash_register.")
    assert [a.action for a in audits] == [
        "cash_register.create",
        "cash_register.update",
        "cash_register.update",
        "cash_register.update",
    ]
    assert audits[1].details["name_was"] == "Ресепшен" and audits[1].details["sno"] == "osn"
    assert audits[1].details["sno_was"] == "usn_income"
    assert "password_changed" not in audits[1].details
    assert audits[2].details == {"password_changed": True}
    assert audits[3].details == {"enabled": False, "enabled_was": True}
    for audit in audits:
        text = repr(audit.details)
        assert desk.atol.password not in text and "n3w-secret" not in text


def test_a_register_of_another_tenant_does_not_exist(desk: Desk) -> None:
    other = desk.tx(
        lambda c: create_tenant(c, slug=f"x-{desk.tenant.id}", name="Other", actor=desk.actor)
    )
    with pytest.raises(NotFound):
        desk.read(lambda c: rg.get_register(c, other.id, desk.register.id))
    with pytest.raises(NotFound):
        desk.tx(
            lambda c: rg.set_register_enabled(
                c, tenant_id=other.id, register_id=desk.register.id, enabled=False, actor=desk.actor
            )
        )
    assert desk.read(lambda c: rg.get_register(c, desk.tenant.id, desk.register.id)).enabled


def test_the_full_api_address_is_cut_to_the_service(
    engine: Engine, tenant: Tenant, actor: Actor, atol: AtolStandIn
) -> None:
    made = create(engine, tenant, actor, "Test", base_url=atol.base_url + "/possystem/v5/")
    assert made.settings["base_url"] == atol.base_url
