"""The "Payment types" tab of the settings (SPEC H-3, P-8; seeds 000, 001): an owner adds a
hotel's payment types, bonus points paying at most 30 % of what a guest owes, edits them,
maps the bar's r_keeper currency codes; mistakes are shown by their fields in Russian;
only owners and administrators come in."""

from __future__ import annotations

import re

from kopilka.core.db import read_only
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_unit
from kopilka.payments.codes import list_payment_codes, resolve_payment_code
from kopilka.payments.schema import payment_types
from kopilka.payments.types import PaymentKind, PaymentType, list_payment_types
from kopilka.tenancy.actions import create_terminal
from tests.web.conftest import Visitor, Web, text_of
from tests.web.test_cards import ACTOR, field_error

HOME = "/settings/payment-types"


def bonus_unit(web: Web) -> None:
    with web.engine.begin() as conn:
        create_unit(
            conn,
            tenant_id=web.tenant.id,
            code="BONUS",
            kind=UnitKind.POINTS,
            name="бонусов",
            exponent=2,
            actor=ACTOR,
        )


def terminal(web: Web, name: str) -> int:
    with web.engine.begin() as conn:
        made, _ = create_terminal(conn, tenant_id=web.tenant.id, name=name, actor=ACTOR)
    return made.id


def types_of(web: Web) -> dict[str, PaymentType]:
    with read_only(web.engine) as conn:
        return {t.name: t for t in list_payment_types(conn, web.tenant.id)}


def add_type(visitor: Visitor, name: str, kind: str, **fields: str) -> object:
    data = {"type-name": name, "type-kind": kind, "type-enabled": "y"}
    data.update({f"type-{key}": value for key, value in fields.items()})
    return visitor.post(HOME, data)


def flash_of(visitor: Visitor, reply: object) -> str:
    return text_of(visitor.follow(reply).text)  # type: ignore[arg-type]


def test_an_owner_sets_up_a_hotels_payment_types(web: Web) -> None:
    bonus_unit(web)
    owner = web.sign_in("owner")
    home = owner.get(HOME)
    assert home.status_code == 200
    assert 'data-testid="tab-payment-types" aria-current="page"' in home.text
    assert "Типов платежей пока нет" in text_of(home.text)
    assert 'data-testid="points-fields"' not in home.text  # cash is chosen first

    reply = add_type(owner, "Наличные", "cash")
    assert "Тип платежа «Наличные» добавлен" in flash_of(owner, reply)
    add_type(owner, "Закрытие на номер", "room_charge")
    reply = add_type(owner, "Бонусы", "points", unit_code="BONUS", rate="1", max_share="30")
    assert reply.status_code == 303  # type: ignore[attr-defined]

    found = types_of(web)
    assert found["Наличные"].kind == PaymentKind.CASH and found["Наличные"].enabled
    bonuses = found["Бонусы"]
    assert bonuses.unit is not None and bonuses.unit.code == "BONUS"
    assert (bonuses.rate_micro, bonuses.max_share_bp) == (1_000_000, 3000)
    page = text_of(owner.get(HOME).text)
    assert "Бонусные баллы" in page and "30,00 %" in page
    assert "Закрытие на номер" in page and "Наличные" in page


def test_choosing_points_brings_the_points_fields(web: Web) -> None:
    bonus_unit(web)
    owner = web.sign_in("owner")
    fragment = owner.get(
        f"{HOME}/form",
        params={"type-name": "Бонусы", "type-kind": "points", "type-enabled": "y"},
        headers={"HX-Request": "true"},
    )
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith("<form") and "<html" not in fragment.text
    assert 'data-testid="points-fields"' in fragment.text
    assert 'value="Бонусы"' in fragment.text and "бонусов (BONUS)" in fragment.text
    back = owner.get(f"{HOME}/form", params={"type-kind": "card"}, headers={"HX-Request": "true"})
    assert 'data-testid="points-fields"' not in back.text
    # Outside htmx the address is the tab itself.
    assert owner.get(f"{HOME}/form", follow_redirects=False).status_code == 303


def test_mistakes_are_shown_by_their_fields_and_nothing_is_written(web: Web) -> None:
    bonus_unit(web)
    owner = web.sign_in("owner")
    too_much = add_type(owner, "Бонусы", "points", unit_code="BONUS", rate="1", max_share="100,01")
    assert too_much.status_code == 422  # type: ignore[attr-defined]
    html = too_much.text  # type: ignore[attr-defined]
    assert field_error(html, "type-max_share") == "Введите процент от 0 до 100."
    assert 'data-testid="points-fields"' in html  # shown again with what was typed

    inexact = add_type(owner, "Бонусы", "points", unit_code="BONUS", rate="0,0000001")
    assert "не больше 6 знаков" in field_error(inexact.text, "type-rate")  # type: ignore[attr-defined]
    no_unit = add_type(owner, "Бонусы", "points", rate="1", max_share="0")
    assert field_error(no_unit.text, "type-unit_code") == (  # type: ignore[attr-defined]
        "Выберите баллы, которыми платят этим типом."
    )
    assert types_of(web) == {}

    full = add_type(owner, "Бонусы", "points", unit_code="BONUS", rate="0,5", max_share="100")
    assert full.status_code == 303  # type: ignore[attr-defined]
    assert types_of(web)["Бонусы"].max_share_bp == 10_000
    again = add_type(owner, "бонусы", "cash")
    assert field_error(again.text, "type-name") == "Тип платежа с таким названием уже есть."  # type: ignore[attr-defined]
    second = add_type(owner, "Ещё бонусы", "points", unit_code="BONUS", rate="1", max_share="0")
    assert field_error(second.text, "type-unit_code") == "Для этих баллов тип платежа уже есть."  # type: ignore[attr-defined]
    assert len(types_of(web)) == 1


def test_a_type_is_edited_and_switched_off(web: Web) -> None:
    bonus_unit(web)
    owner = web.sign_in("owner")
    add_type(owner, "Бонусы", "points", unit_code="BONUS", rate="1", max_share="30")
    bonuses = types_of(web)["Бонусы"]
    form = owner.get(f"{HOME}/{bonuses.id}")
    assert form.status_code == 200
    assert 'value="30,00"' in form.text and 'value="1"' in form.text
    assert "Бонусные баллы" in text_of(form.text)  # the kind, shown, not changeable

    bad = owner.post(f"{HOME}/{bonuses.id}", {"name": "Бонусы", "rate": "1", "max_share": "101"})
    assert bad.status_code == 422
    assert field_error(bad.text, "max_share") == "Введите процент от 0 до 100."

    saved = owner.post(
        f"{HOME}/{bonuses.id}", {"name": "Бонусные баллы", "rate": "0,25", "max_share": "12,5"}
    )
    assert "Тип платежа «Бонусные баллы» сохранён" in flash_of(owner, saved)
    changed = types_of(web)["Бонусные баллы"]
    assert (changed.rate_micro, changed.max_share_bp, changed.enabled) == (250_000, 1250, False)
    assert owner.get(f"{HOME}/{10**12}").status_code == 404
    assert owner.get(f"{HOME}/abc").status_code == 404


def test_codes_are_mapped_for_every_terminal_or_one_and_removed(web: Web) -> None:
    bar = terminal(web, "Бар")
    terminal(web, "Ресторан")
    owner = web.sign_in("owner")
    page = owner.get(HOME)
    assert "Сначала добавьте тип платежа" in text_of(page.text)
    add_type(owner, "Закрытие на номер", "room_charge")
    add_type(owner, "Депозит", "deposit")
    found = types_of(web)
    room, deposit = found["Закрытие на номер"], found["Депозит"]

    reply = owner.post(
        f"{HOME}/codes",
        {"map-code": "12", "map-payment_type_id": str(room.id), "map-terminal_id": ""},
    )
    assert "Код 12 теперь означает «Закрытие на номер»" in flash_of(owner, reply)
    owner.post(
        f"{HOME}/codes",
        {"map-code": "12", "map-payment_type_id": str(deposit.id), "map-terminal_id": str(bar)},
    )
    twice = owner.post(f"{HOME}/codes", {"map-code": "12", "map-payment_type_id": str(deposit.id)})
    assert twice.status_code == 422
    assert "уже привязан" in field_error(twice.text, "map-code")
    spaced = owner.post(f"{HOME}/codes", {"map-code": "1 2", "map-payment_type_id": str(room.id)})
    assert "без пробелов" in field_error(spaced.text, "map-code")

    with read_only(web.engine) as conn:
        assert resolve_payment_code(conn, tenant_id=web.tenant.id, terminal_id=bar, code="12") == (
            deposit
        )
        mapped = list_payment_codes(conn, web.tenant.id)
    table = owner.get(HOME).text
    rows = re.findall(r'data-testid="payment-code-(\d+)">(.*?)</tr>', table, re.S)
    assert [text_of(cells).split(" Удалить")[0] for _, cells in rows] == [
        "12 Все терминалы Закрытие на номер",
        "12 Бар Депозит",
    ]
    removed = owner.post(f"{HOME}/codes/{mapped[1].id}/delete")
    assert "Код 12 удалён" in flash_of(owner, removed)
    with read_only(web.engine) as conn:
        assert [c.terminal_id for c in list_payment_codes(conn, web.tenant.id)] == [None]
    assert owner.post(f"{HOME}/codes/{mapped[1].id}/delete").status_code == 404


def test_administrators_come_in_and_till_staff_do_not(web: Web) -> None:
    admin = web.sign_in("administrator")
    assert admin.get(HOME).status_code == 200
    assert add_type(admin, "Карта", "card").status_code == 303  # type: ignore[attr-defined]
    for role in ("cashier", "front_desk"):
        visitor = web.sign_in(role)
        assert visitor.get(HOME).status_code == 403
        assert add_type(visitor, "Наличные", "cash").status_code == 403  # type: ignore[attr-defined]
    with web.engine.connect() as conn:
        assert (
            conn.execute(payment_types.select().where(payment_types.c.tenant_id == web.tenant.id))
            .all()[0]
            .name
            == "Карта"
        )
    assert len(types_of(web)) == 1
