"""The payment types directory (SPEC H-3) and the terminals' payment codes (SPEC P-8), as
the seeds tell them: a hotel pays by cash, card, deposit and room charge, and with bonus
points at most N % of what a guest owes (seed 000); the bar's r_keeper sends the code of
the "currency" pressed, 12 for "room charge" (seed 001)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, insert, text
from sqlalchemy.exc import IntegrityError

from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import UnitView, create_unit
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.billing import (
    PurgeConfirmation,
    loyalty_status,
    purge_loyalty,
    request_purge,
    set_loyalty_enabled,
)
from kopilka.loyalty.programs import create_program
from kopilka.payments import codes as pc
from kopilka.payments import types as pt
from kopilka.payments.schema import payment_codes, payment_types
from kopilka.payments.types import PaymentKind, PaymentType
from kopilka.tenancy.actions import create_tenant, create_terminal, revoke_terminal
from tests.core.test_hot_path import counting

from .conftest import Hotel


def refused(code: str, work: Callable[[], Any], kind: type[KopilkaError] = KopilkaError) -> Any:
    with pytest.raises(kind) as caught:
        work()
    assert caught.value.code == code, caught.value
    assert caught.value.detail, "every refusal says what is wrong"
    return caught.value


def new_type(hotel: Hotel, name: str, kind: PaymentKind, **fields: Any) -> PaymentType:
    return hotel.tx(
        lambda c: pt.create_payment_type(
            c, tenant_id=hotel.tenant.id, name=name, kind=kind, actor=hotel.actor, **fields
        )
    )


def points_type(hotel: Hotel, **fields: Any) -> PaymentType:
    return new_type(hotel, "Бонусы", PaymentKind.POINTS, unit_code="BONUS", **fields)


def change(hotel: Hotel, type_id: int, **fields: Any) -> PaymentType:
    return hotel.tx(
        lambda c: pt.update_payment_type(
            c, tenant_id=hotel.tenant.id, payment_type_id=type_id, actor=hotel.actor, **fields
        )
    )


def map_code(hotel: Hotel, code: str, type_id: int, terminal_id: int | None = None) -> Any:
    return hotel.tx(
        lambda c: pc.add_payment_code(
            c,
            tenant_id=hotel.tenant.id,
            code=code,
            payment_type_id=type_id,
            terminal_id=terminal_id,
            actor=hotel.actor,
        )
    )


def resolve(hotel: Hotel, terminal_id: int, code: str) -> PaymentType:
    return hotel.read(
        lambda c: pc.resolve_payment_code(
            c, tenant_id=hotel.tenant.id, terminal_id=terminal_id, code=code
        )
    )


# --------------------------------------------------------------------------- the directory


def test_a_hotels_directory_as_the_seed_sets_it_up(hotel: Hotel) -> None:
    for name, kind in (
        ("Наличные", PaymentKind.CASH),
        ("Банковская карта", PaymentKind.CARD),
        ("Закрытие на номер", PaymentKind.ROOM_CHARGE),
        ("Депозит", PaymentKind.DEPOSIT),
    ):
        cash_like = new_type(hotel, name, kind)
        assert cash_like.enabled and cash_like.unit is None
        assert cash_like.rate_micro is None and cash_like.max_share_bp is None
    bonuses = points_type(hotel, max_share_bp=3000)
    assert bonuses.unit is not None and bonuses.unit.code == "BONUS"
    assert bonuses.exchange_rate == Decimal(1) and bonuses.max_share_bp == 3000

    listed = hotel.read(lambda c: pt.list_payment_types(c, hotel.tenant.id))
    assert [t.name for t in listed] == sorted(t.name for t in listed)
    assert len(listed) == 5
    only_points = hotel.read(
        lambda c: pt.list_payment_types(c, hotel.tenant.id, kind=PaymentKind.POINTS)
    )
    assert only_points == [bonuses]
    assert [a.action for a in hotel.audits("payment_type.")] == ["payment_type.create"] * 5


def test_a_points_type_starts_at_rate_one_and_pays_nothing(hotel: Hotel) -> None:
    """Seed 000: "по умолчанию там стоит 0%"."""
    bonuses = points_type(hotel)
    assert bonuses.rate_micro == 1_000_000 and bonuses.max_share_bp == 0
    assert bonuses.points_cap(owed_minor=5_000_00, balance_minor=900_00, currency_exponent=2) == 0


@pytest.mark.parametrize(("share_bp", "cap"), [(0, 0), (3000, 300_00), (10_000, 900_00)])
def test_the_share_is_0_to_100_percent_inclusive(hotel: Hotel, share_bp: int, cap: int) -> None:
    bonuses = points_type(hotel, max_share_bp=share_bp)
    assert bonuses.max_share_bp == share_bp
    # A guest owes 1,000.00 RUB and has 900.00 bonus points worth a rouble each.
    assert bonuses.points_cap(owed_minor=1000_00, balance_minor=900_00, currency_exponent=2) == cap
    assert bonuses.points_cap(owed_minor=0, balance_minor=900_00, currency_exponent=2) == 0


@pytest.mark.parametrize("share_bp", [10_001, -1, 100_000])
def test_a_share_outside_0_to_100_percent_is_refused(hotel: Hotel, share_bp: int) -> None:
    refused("invalid_percent", lambda: points_type(hotel, max_share_bp=share_bp), InvalidInput)
    bonuses = points_type(hotel, max_share_bp=10_000)
    refused(
        "invalid_percent", lambda: change(hotel, bonuses.id, max_share_bp=share_bp), InvalidInput
    )
    assert hotel.read(lambda c: pt.get_payment_type(c, hotel.tenant.id, bonuses.id)) == bonuses


@pytest.mark.parametrize(
    ("typed", "bp"), [("0", 0), ("100", 10_000), ("100.00", 10_000), ("12.5", 1250), ("30", 3000)]
)
def test_percent_text_reads_exactly(typed: str, bp: int) -> None:
    assert pt.parse_percent(typed) == bp
    assert pt.parse_percent(pt.format_percent(bp)) == bp


@pytest.mark.parametrize("typed", ["100.01", "100.001", "-0.01", "101", "", "abc", "1e2", "30%"])
def test_bad_percent_text_is_refused(typed: str) -> None:
    refused("invalid_percent", lambda: pt.parse_percent(typed), InvalidInput)


@pytest.mark.parametrize(
    ("rate", "micro"),
    [
        ("1", 1_000_000),
        ("0.5", 500_000),
        ("0.333333", 333_333),
        ("27.5", 27_500_000),
        ("0.000001", 1),
        ("1000000", 10**12),
        ("2.500000000", 2_500_000),
        (Decimal("0.1"), 100_000),
        (Decimal("1E+2"), 100_000_000),
    ],
)
def test_the_exchange_rate_is_kept_exactly(hotel: Hotel, rate: str | Decimal, micro: int) -> None:
    bonuses = points_type(hotel, exchange_rate=rate)
    assert bonuses.rate_micro == micro
    assert bonuses.exchange_rate == Decimal(str(rate))
    assert pt.rate_micro_of(pt.format_rate(micro)) == micro
    again = hotel.read(lambda c: pt.get_payment_type(c, hotel.tenant.id, bonuses.id))
    assert again.rate_micro == micro and isinstance(again.rate_micro, int)


@pytest.mark.parametrize(
    "rate",
    [
        "0",
        "0.0000001",
        "1.0000001",
        "1000000.000001",
        "10000000",
        "-1",
        "1e3",
        "NaN",
        "Infinity",
        " ",
        "1,5",
        Decimal("0"),
        Decimal("-0.5"),
        Decimal("NaN"),
        Decimal("Infinity"),
        # 29 significant digits: a product in Decimal's default context would round this
        # to a whole number of millionths and let it pass.
        Decimal("1.0000000000000000000000000001"),
        Decimal("1E+100000"),
        Decimal("1E-999999999"),
    ],
)
def test_an_inexact_or_out_of_range_rate_is_refused(hotel: Hotel, rate: str | Decimal) -> None:
    refused("invalid_exchange_rate", lambda: points_type(hotel, exchange_rate=rate), InvalidInput)
    assert hotel.count(payment_types) == 0


def test_a_float_rate_is_refused(hotel: Hotel) -> None:
    refused("invalid_exchange_rate", lambda: pt.rate_micro_of(0.5), InvalidInput)  # type: ignore[arg-type]


def _bonuses(rate_micro: int, unit_exponent: int) -> PaymentType:
    unit = UnitView(1, "PTS", UnitKind.POINTS, unit_exponent, "points")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return PaymentType(1, 1, "P", PaymentKind.POINTS, True, unit, rate_micro, 10_000, now)


@given(
    rate_micro=st.integers(1, pt.MAX_RATE_MICRO),
    unit_exponent=st.integers(0, 6),
    currency_exponent=st.integers(0, 3),
    money_minor=st.integers(0, 10**15),
)
def test_points_for_money_is_the_most_that_money_is_worth(
    rate_micro: int, unit_exponent: int, currency_exponent: int, money_minor: int
) -> None:
    bonuses = _bonuses(rate_micro, unit_exponent)
    points = bonuses.points_for_money(money_minor, currency_exponent)
    # What a minor unit of points is worth in minor units of the currency, exactly.
    worth = Fraction(rate_micro, 10**6) * Fraction(10**currency_exponent, 10**unit_exponent)
    assert points * worth <= money_minor < (points + 1) * worth
    paid = bonuses.money_for_points(points, currency_exponent)
    assert paid <= money_minor and paid == int(points * worth)


def test_conversions_with_a_rate_of_a_third(hotel: Hotel) -> None:
    """BYN-like points worth 0.333333 of a rouble: 100.00 points pay 33.33 RUB."""
    bonuses = points_type(hotel, exchange_rate="0.333333", max_share_bp=5000)
    assert bonuses.money_for_points(100_00, 2) == 33_33
    assert bonuses.points_for_money(33_33, 2) == 99_99  # 99.99 points are worth 33.329...
    # Owes 300.00; half is 150.00, worth 450.00045 points: 450.00 of them at most.
    assert bonuses.points_cap(owed_minor=300_00, balance_minor=10**9, currency_exponent=2) == (
        450_00
    )
    assert bonuses.points_cap(owed_minor=300_00, balance_minor=17_00, currency_exponent=2) == 17_00


# --------------------------------------------------------------------------- refusals


def test_one_points_type_per_point_unit(hotel: Hotel) -> None:
    points_type(hotel)
    error = refused(
        "points_type_exists",
        lambda: new_type(hotel, "Ещё бонусы", PaymentKind.POINTS, unit_code="bonus"),
        Conflict,
    )
    assert error.params["unit"] == "BONUS"

    def byn(c: Connection) -> None:
        create_unit(
            c,
            tenant_id=hotel.tenant.id,
            code="BYN_PTS",
            kind=UnitKind.POINTS,
            exponent=2,
            actor=hotel.actor,
        )

    hotel.tx(byn)
    rubles = new_type(hotel, "Белорусские рубли", PaymentKind.POINTS, unit_code="BYN_PTS")
    assert rubles.unit is not None and rubles.unit.code == "BYN_PTS"
    # The database keeps the rule too, whoever writes.
    with pytest.raises(IntegrityError):
        hotel.tx(
            lambda c: c.execute(
                insert(payment_types).values(
                    tenant_id=hotel.tenant.id,
                    name="В обход",
                    kind="points",
                    unit_id=rubles.unit.id if rubles.unit else 0,
                    rate_micro=1,
                    max_share_bp=0,
                    created_at=rubles.created_at,
                )
            )
        )


def test_points_need_a_point_unit_and_other_kinds_take_none(hotel: Hotel) -> None:
    def points(**fields: Any) -> Callable[[], PaymentType]:
        return lambda: new_type(hotel, "Баллы", PaymentKind.POINTS, **fields)

    refused("invalid_payment_type", points(), InvalidInput)
    refused("invalid_payment_type", points(unit_code="  "), InvalidInput)
    refused("unit_not_points", points(unit_code="RUB"), InvalidInput)
    refused("unknown_unit", points(unit_code="NOPE"), InvalidInput)
    for fields in ({"unit_code": "BONUS"}, {"exchange_rate": "1"}, {"max_share_bp": 0}):
        refused(
            "invalid_payment_type",
            lambda f=fields: new_type(hotel, "Наличные", PaymentKind.CASH, **f),  # type: ignore[misc]
            InvalidInput,
        )
    cash = new_type(hotel, "Наличные", PaymentKind.CASH)
    refused("invalid_payment_type", lambda: change(hotel, cash.id, exchange_rate="2"), InvalidInput)
    refused("invalid_payment_type", lambda: change(hotel, cash.id, max_share_bp=0), InvalidInput)
    # The database refuses a cash type with points' fields too.
    with pytest.raises(IntegrityError):
        hotel.tx(
            lambda c: c.execute(
                text("UPDATE payment_types SET rate_micro = 1 WHERE id = :id"), {"id": cash.id}
            )
        )


def test_names_are_unique_in_any_letters_case_and_1_to_100_characters(hotel: Hotel) -> None:
    cash = new_type(hotel, "  Наличные ", PaymentKind.CASH)
    assert cash.name == "Наличные"
    refused("payment_type_exists", lambda: new_type(hotel, "НАЛИЧНЫЕ", PaymentKind.CARD), Conflict)
    for name in ("", "   ", "я" * 101):
        refused("invalid_payment_type", lambda n=name: new_type(hotel, n, PaymentKind.CARD))  # type: ignore[misc]
    assert new_type(hotel, "я" * 100, PaymentKind.CARD).name == "я" * 100
    refused("invalid_payment_type", lambda: new_type(hotel, "Чек", "cheque"), InvalidInput)  # type: ignore[arg-type]
    card = new_type(hotel, "Карта", "card")  # type: ignore[arg-type]
    assert card.kind == PaymentKind.CARD
    refused("payment_type_exists", lambda: change(hotel, card.id, name="наличные"), Conflict)
    assert change(hotel, card.id, name="КАРТА").name == "КАРТА"  # its own name, recased
    # Another tenant may use the same names.
    other = hotel.tx(
        lambda c: create_tenant(c, slug=f"x-{hotel.tenant.slug}", name="X", actor=hotel.actor)
    )
    hotel.tx(
        lambda c: pt.create_payment_type(
            c, tenant_id=other.id, name="Наличные", kind="cash", actor=hotel.actor
        )
    )


def test_changes_are_audited_with_what_they_were(hotel: Hotel) -> None:
    bonuses = points_type(hotel, max_share_bp=3000)
    changed = change(
        hotel,
        bonuses.id,
        name="Бонусные баллы",
        enabled=False,
        exchange_rate=Decimal("0.5"),
        max_share_bp=10_000,
    )
    assert (changed.name, changed.enabled) == ("Бонусные баллы", False)
    assert (changed.rate_micro, changed.max_share_bp) == (500_000, 10_000)
    assert change(hotel, bonuses.id, enabled=False, max_share_bp=10_000) == changed  # no change
    updates = [a for a in hotel.audits("payment_type.") if a.action == "payment_type.update"]
    assert len(updates) == 1
    details = updates[0].details
    assert details["name_was"] == "Бонусы" and details["enabled"] is False
    assert details["rate_micro"] == 500_000 and details["rate_micro_was"] == 1_000_000
    assert details["max_share_bp_was"] == 3000
    refused("payment_type_not_found", lambda: change(hotel, 10**12, enabled=True), NotFound)


# --------------------------------------------------------------------------- codes


def test_a_terminals_own_code_wins_over_the_tenants(hotel: Hotel) -> None:
    room = new_type(hotel, "Закрытие на номер", PaymentKind.ROOM_CHARGE)
    deposit = new_type(hotel, "Депозит", PaymentKind.DEPOSIT)
    cash = new_type(hotel, "Наличные", PaymentKind.CASH)
    map_code(hotel, "12", room.id)
    map_code(hotel, "1", cash.id)
    mine = map_code(hotel, "12", deposit.id, hotel.bar)
    assert mine.terminal_id == hotel.bar and mine.payment_type == deposit

    assert resolve(hotel, hotel.bar, "12") == deposit
    assert resolve(hotel, hotel.restaurant, "12") == room
    assert resolve(hotel, hotel.bar, " 1 ") == cash

    def codes(terminal_id: int | None) -> list[tuple[str, int | None, str]]:
        found = hotel.read(lambda c: pc.list_payment_codes(c, hotel.tenant.id, terminal_id))
        return [(c.code, c.terminal_id, c.payment_type.name) for c in found]

    assert codes(hotel.bar) == [("1", None, "Наличные"), ("12", hotel.bar, "Депозит")]
    assert codes(hotel.restaurant) == [("1", None, "Наличные"), ("12", None, "Закрытие на номер")]
    assert codes(None) == [
        ("1", None, "Наличные"),
        ("12", None, "Закрытие на номер"),
        ("12", hotel.bar, "Депозит"),
    ]


def test_codes_ignore_case_and_spaces_around(hotel: Hotel) -> None:
    room = new_type(hotel, "Закрытие на номер", PaymentKind.ROOM_CHARGE)
    added = map_code(hotel, " room ", room.id)
    assert added.code == "ROOM"
    assert resolve(hotel, hotel.bar, "Room") == room
    refused("payment_code_exists", lambda: map_code(hotel, "ROOM", room.id), Conflict)
    for bad in ("", "   ", "RO OM", "x" * 33, "a\tb", "\x00"):
        refused("invalid_payment_code", lambda b=bad: map_code(hotel, b, room.id), InvalidInput)  # type: ignore[misc]
    assert map_code(hotel, "x" * 32, room.id).code == "X" * 32


def test_a_switched_off_type_is_refused_and_an_unknown_code_is_bad_input(hotel: Hotel) -> None:
    deposit = new_type(hotel, "Депозит", PaymentKind.DEPOSIT)
    map_code(hotel, "13", deposit.id)
    change(hotel, deposit.id, enabled=False)
    error = refused("payment_type_disabled", lambda: resolve(hotel, hotel.bar, "13"), Refused)
    assert "Депозит" in error.detail and error.params["payment_type_id"] == deposit.id
    change(hotel, deposit.id, enabled=True)
    assert resolve(hotel, hotel.bar, "13") == change(hotel, deposit.id)

    for unknown in ("14", "", "x" * 100, "1 3"):
        error = refused(
            "unknown_payment_code", lambda u=unknown: resolve(hotel, hotel.bar, u), InvalidInput
        )
        assert "not mapped" in error.detail


def test_another_tenants_codes_and_types_do_not_exist(hotel: Hotel) -> None:
    cash = new_type(hotel, "Наличные", PaymentKind.CASH)
    code = map_code(hotel, "1", cash.id)

    def elsewhere(c: Connection) -> tuple[int, int]:
        other = create_tenant(c, slug=f"y-{hotel.tenant.slug}", name="Y", actor=hotel.actor)
        terminal, _ = create_terminal(c, tenant_id=other.id, name="Касса", actor=hotel.actor)
        return other.id, terminal.id

    other, their_terminal = hotel.tx(elsewhere)
    refused(
        "unknown_payment_code",
        lambda: hotel.read(
            lambda c: pc.resolve_payment_code(
                c, tenant_id=other, terminal_id=their_terminal, code="1"
            )
        ),
    )
    refused(
        "payment_type_not_found",
        lambda: hotel.tx(
            lambda c: pc.add_payment_code(
                c, tenant_id=other, code="1", payment_type_id=cash.id, actor=hotel.actor
            )
        ),
        NotFound,
    )
    refused(
        "payment_code_not_found",
        lambda: hotel.tx(
            lambda c: pc.remove_payment_code(
                c, tenant_id=other, payment_code_id=code.id, actor=hotel.actor
            )
        ),
        NotFound,
    )
    refused("terminal_not_found", lambda: map_code(hotel, "2", cash.id, their_terminal), NotFound)


def test_codes_map_to_live_terminals_only(hotel: Hotel) -> None:
    cash = new_type(hotel, "Наличные", PaymentKind.CASH)
    hotel.tx(
        lambda c: revoke_terminal(
            c, tenant_id=hotel.tenant.id, terminal_id=hotel.restaurant, actor=hotel.actor
        )
    )
    refused("invalid_payment_code", lambda: map_code(hotel, "1", cash.id, hotel.restaurant))


def test_resolving_a_code_is_one_query(hotel: Hotel) -> None:
    room = new_type(hotel, "Закрытие на номер", PaymentKind.ROOM_CHARGE)
    map_code(hotel, "12", room.id)
    map_code(hotel, "12", points_type(hotel).id, hotel.bar)
    for terminal in (hotel.bar, hotel.restaurant):
        with counting(hotel.engine) as seen:
            resolve(hotel, terminal, "12")
        assert [s for s in seen if s not in ("BEGIN", "COMMIT", "ROLLBACK")] == ["SELECT"]


def test_removing_a_code_keeps_its_type_and_is_audited(hotel: Hotel) -> None:
    cash = new_type(hotel, "Наличные", PaymentKind.CASH)
    code = map_code(hotel, "1", cash.id)
    removed = hotel.tx(
        lambda c: pc.remove_payment_code(
            c, tenant_id=hotel.tenant.id, payment_code_id=code.id, actor=hotel.actor
        )
    )
    assert removed.code == "1"
    refused("unknown_payment_code", lambda: resolve(hotel, hotel.bar, "1"))
    assert hotel.read(lambda c: pt.get_payment_type(c, hotel.tenant.id, cash.id)) == cash
    assert [a.action for a in hotel.audits("payment_code.")] == [
        "payment_code.create",
        "payment_code.delete",
    ]
    refused(
        "payment_code_not_found",
        lambda: hotel.tx(
            lambda c: pc.remove_payment_code(
                c, tenant_id=hotel.tenant.id, payment_code_id=code.id, actor=hotel.actor
            )
        ),
        NotFound,
    )


def test_one_tenant_wide_mapping_per_code_even_past_the_checks(hotel: Hotel) -> None:
    """The partial unique index stands behind the check in code (a NULL terminal would
    slip through a plain unique key)."""
    cash = new_type(hotel, "Наличные", PaymentKind.CASH)
    first = map_code(hotel, "1", cash.id)
    with pytest.raises(IntegrityError):
        hotel.tx(
            lambda c: c.execute(
                insert(payment_codes).values(
                    tenant_id=hotel.tenant.id,
                    code="1",
                    terminal_id=None,
                    payment_type_id=cash.id,
                    created_at=first.created_at,
                )
            )
        )


def test_nothing_is_half_written_when_a_step_is_refused(hotel: Hotel) -> None:
    cash = new_type(hotel, "Наличные", PaymentKind.CASH)
    map_code(hotel, "1", cash.id)
    before = (hotel.count(payment_types), hotel.count(payment_codes), len(hotel.audits("pay")))

    def two_steps(c: Connection) -> None:
        card = pt.create_payment_type(
            c, tenant_id=hotel.tenant.id, name="Карта", kind="card", actor=hotel.actor
        )
        pc.add_payment_code(
            c, tenant_id=hotel.tenant.id, code="1", payment_type_id=card.id, actor=hotel.actor
        )

    refused("payment_code_exists", lambda: run_transaction(hotel.engine, two_steps), Conflict)
    refused(
        "invalid_exchange_rate",
        lambda: points_type(hotel, exchange_rate="0.0000001"),
        InvalidInput,
    )
    after = (hotel.count(payment_types), hotel.count(payment_codes), len(hotel.audits("pay")))
    assert after == before


# --------------------------------------------------------------------------- loyalty purge


def test_a_loyalty_purge_takes_the_points_type_of_its_unit_and_nothing_else(hotel: Hotel) -> None:
    """SPEC C-7: the bonus points go, so does the type paying with them and its codes;
    cash stays, and so does a points type of a unit no program uses."""
    t, actor = hotel.tenant.id, hotel.actor

    def setup(c: Connection) -> None:
        create_program(c, tenant_id=t, name="Бонусы", unit_code="BONUS", actor=actor)
        create_unit(c, tenant_id=t, code="KONTUR", kind=UnitKind.POINTS, actor=actor)

    hotel.tx(setup)
    cash = new_type(hotel, "Наличные", PaymentKind.CASH)
    bonuses = points_type(hotel, max_share_bp=3000)
    kontur = new_type(hotel, "Баллы Контура", PaymentKind.POINTS, unit_code="KONTUR")
    map_code(hotel, "1", cash.id)
    map_code(hotel, "20", bonuses.id)
    map_code(hotel, "20", bonuses.id, hotel.bar)
    map_code(hotel, "21", kontur.id)

    hotel.tx(lambda c: set_loyalty_enabled(c, tenant_id=t, enabled=False, actor=actor))
    rows = hotel.read(lambda c: loyalty_status(c, t)).rows
    assert rows["payment_types"] == 1 and rows["payment_codes"] == 2
    token = hotel.tx(lambda c: request_purge(c, tenant_id=t, actor=actor)).token
    report = hotel.tx(
        lambda c: purge_loyalty(
            c,
            tenant_id=t,
            confirmation=PurgeConfirmation(token, hotel.tenant.slug),
            actor=actor,
        )
    )
    assert report.removed["payment_types"] == 1 and report.removed["payment_codes"] == 2
    left = hotel.read(lambda c: pt.list_payment_types(c, t))
    assert [p.name for p in left] == ["Баллы Контура", "Наличные"]
    assert [c.code for c in hotel.read(lambda c: pc.list_payment_codes(c, t))] == ["1", "21"]
    refused("unknown_payment_code", lambda: resolve(hotel, hotel.bar, "20"))
