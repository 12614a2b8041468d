"""Offline batches applied set by set (``kopilka.loyalty.pos_batch``) come out exactly as
item by item (``pos._apply_chunk``): the same answers, card figures, ledger and rows."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_unit, system_account
from kopilka.ledger.holds import place_hold
from kopilka.ledger.posting import post_one, run_transaction, simple_transfer
from kopilka.ledger.schema import accounts, entries, lots, transfers
from kopilka.ledger.verify import verify
from kopilka.loyalty import pos, pos_batch
from kopilka.loyalty.cards import block_cards, get_card, issue_card
from kopilka.loyalty.programs import add_tier, create_program
from kopilka.loyalty.schema import card_purchases, cards, loyalty_tiers, pos_checks
from kopilka.tenancy.actions import create_tenant, create_terminal

NUMBERS = ["5500000001", "5500000002", "5500000003", "5500000004", "5500000005"]
BLOCKED, EXPIRED = 3, 4  # indexes into NUMBERS
_APPLY_CHUNK = pos._apply_chunk
_ONE_MOMENT = pos_batch._Chunk._one_moment


def _setup(engine: Engine, actor: Actor, params: dict[str, Any]) -> tuple[int, int]:
    """A tenant like the others of the example: its id and its terminal's."""

    def work(conn: Connection) -> tuple[int, int]:
        tenant = create_tenant(conn, slug=f"t-{uuid.uuid4().hex[:12]}", name="T", actor=actor)
        create_unit(
            conn, tenant_id=tenant.id, code="BONUS", kind=UnitKind.POINTS, exponent=2, actor=actor
        )
        program = create_program(
            conn,
            tenant_id=tenant.id,
            name="Бонусы",
            unit_code="BONUS",
            actor=actor,
            accrual_bp=params["accrual_bp"],
            exclude_points_part=params["exclude"],
            activation_delay_days=params["delay"],
            lifetime_days=30,
            max_share_bp=5000,
            min_check_minor=params["min_check"],
        )
        add_tier(
            conn,
            tenant_id=tenant.id,
            program_id=program.id,
            name="Золото",
            threshold_minor=params["tier_at"],
            discount_bp=params["tier_discount"],
            accrual_bp=500,
            actor=actor,
        )
        soon = utcnow() + timedelta(seconds=120)
        ids = [
            issue_card(
                conn,
                tenant_id=tenant.id,
                program_id=program.id,
                number=number,
                actor=actor,
                expires_at=soon if n == EXPIRED else None,
            )
            for n, number in enumerate(NUMBERS)
        ]
        block_cards(
            conn, tenant_id=tenant.id, card_ids=[ids[BLOCKED].id], reason="lost", actor=actor
        )
        # Opening points, and holds: one live, one lapsed (held, not swept yet).
        issuance = system_account(
            conn, tenant_id=tenant.id, unit_code="BONUS", purpose="issuance", actor=actor
        ).id
        for n, amount in enumerate(params["opening"]):
            if not amount:
                continue
            post_one(
                conn,
                tenant_id=tenant.id,
                spec=simple_transfer(
                    f"open-{n}",
                    debit_account_id=issuance,
                    credit_account_id=ids[n].account_id,
                    amount_minor=amount,
                ),
                actor=actor,
            )
        for n, (amount, ttl) in enumerate(params["holds"]):
            if 0 < amount <= params["opening"][n]:
                place_hold(
                    conn,
                    tenant_id=tenant.id,
                    idempotency_key=f"hold-{n}",
                    debit_account_id=ids[n].account_id,
                    credit_account_id=issuance,
                    amount_minor=amount,
                    actor=actor,
                    ttl_seconds=ttl,
                )
        terminal, _ = create_terminal(conn, tenant_id=tenant.id, name="Касса", actor=actor)
        return tenant.id, terminal.id

    return run_transaction(engine, work)


def _items(ops: list[tuple[Any, ...]]) -> list[pos.BatchItem | KopilkaError]:
    items: list[pos.BatchItem | KopilkaError] = []
    for n, op in enumerate(ops):
        kind = op[0]
        if kind == "check":
            _, card, check_no, lines, points, stated = op
            total = sum(lines) + (1 if stated == "wrong" else 0) if stated else None
            items.append(pos.BatchItem(f" C-{check_no}", NUMBERS[card], lines, points, total))
        elif kind == "repeat" and items:
            items.append(items[op[1] % len(items)])
        elif kind == "error":
            items.append(NotFound("card_not_found", "no such card", check_id=f"E-{n}"))
        elif kind == "unknown_card":
            items.append(pos.BatchItem(f"U-{n}", "000042", [5_00]))
        elif kind == "bad_number":
            items.append(pos.BatchItem(f"N-{n}", "12ab", [5_00]))
        elif kind == "bad_check":
            items.append(pos.BatchItem("  ", NUMBERS[0], [5_00]))
        elif kind == "bad_points":
            items.append(pos.BatchItem(f"P-{n}", NUMBERS[0], [5_00], -1))
        elif kind == "bad_line":
            items.append(pos.BatchItem(f"L-{n}", NUMBERS[1], [5_00, 0]))
    return items


def _reference(
    engine: Engine,
    tenant_id: int,
    terminal_id: int,
    items: list[pos.BatchItem | KopilkaError],
    actor: Actor,
    now: Any,
) -> list[pos.BatchResult]:
    """The item-by-item path, chunked as ``upload_batch`` chunks."""
    results: list[pos.BatchResult] = []
    for start in range(0, len(items), pos.BATCH_CHUNK):
        chunk = items[start : start + pos.BATCH_CHUNK]
        results.extend(
            run_transaction(
                engine,
                lambda conn, chunk=chunk: pos._apply_chunk(  # type: ignore[misc]
                    conn, tenant_id, terminal_id, chunk, actor, now
                ),
            )
        )
    return results


def _answers(results: list[pos.BatchResult]) -> list[tuple[Any, ...]]:
    out = []
    for r in results:
        check = None
        if r.check is not None:
            c = r.check
            check = (
                c.check_id,
                c.card_number,
                c.status,
                c.total_minor,
                c.discount_minor,
                c.points_money_minor,
                c.money_minor,
                c.spent_minor,
                c.accrued_minor,
                c.refunded_minor,
                c.closed_at,
                c.replayed,
                c.debt_minor,
            )
        out.append((r.check_id, r.status, r.code, r.detail, r.debt_minor, check))
    return out


def _state(engine: Engine, tenant_id: int, terminal_id: int) -> dict[str, Any]:
    """Everything the batch may have changed, without ids that differ between tenants."""
    term = f":{terminal_id}:"
    with read_only(engine) as conn:
        names = {
            row.id: row.code or f"card {row.owner_id}"
            for row in conn.execute(
                select(accounts.c.id, accounts.c.code, accounts.c.owner_id).where(
                    accounts.c.tenant_id == tenant_id
                )
            )
        }
        tiers = {
            row.id: row.name
            for row in conn.execute(select(loyalty_tiers.c.id, loyalty_tiers.c.name))
        }
        figures = {}
        for row in conn.execute(
            select(cards.c.id, cards.c.number).where(cards.c.tenant_id == tenant_id)
        ):
            card = get_card(conn, tenant_id, row.id)
            figures[card.number] = (
                card.balance_minor,
                card.held_minor,
                card.available_minor,
                card.accumulation_minor,
                card.checks_count,
                tiers.get(card.tier_id) if card.tier_id else None,
                card.debt_minor,
            )
        keys = {
            row.id: row.idempotency_key.replace(term, ":T:")
            for row in conn.execute(
                select(transfers.c.id, transfers.c.idempotency_key).where(
                    transfers.c.tenant_id == tenant_id
                )
            )
        }
        moves = [
            (
                keys[row.transfer_id],
                row.kind,
                row.description,
                {**row.meta, "terminal": "T"} if row.meta and "terminal" in row.meta else row.meta,
                _ours(keys[row.transfer_id], row.posted_at),
                names[row.account_id],
                row.amount_minor,
                row.account_seq,
                row.balance_after_minor,
                row.debit_total_after_minor,
            )
            for row in conn.execute(
                select(entries, transfers.c.kind, transfers.c.description, transfers.c.meta)
                .join(transfers, transfers.c.id == entries.c.transfer_id)
                .where(entries.c.tenant_id == tenant_id)
                .order_by(entries.c.id)
            )
        ]
        per_account: dict[str, list[Any]] = {}
        for move in moves:
            per_account.setdefault(move[5], []).append(move)
        lot_rows = sorted(
            (
                names[row.account_id],
                keys[row.transfer_id],
                row.amount_minor,
                row.remaining_minor,
                _ours(keys[row.transfer_id], row.available_at),
                _ours(keys[row.transfer_id], row.expires_at),
            )
            for row in conn.execute(select(lots).where(lots.c.tenant_id == tenant_id))
        )
        check_rows = [
            (
                row.check_id,
                row.request_hash,
                row.number,
                row.status,
                row.total_minor,
                row.discount_minor,
                row.points_minor,
                row.money_minor,
                row.accrued_minor,
                row.spent_minor,
                row.refunded_minor,
                row.debt_minor,
                None if row.spend_transfer_id is None else keys[row.spend_transfer_id],
                None if row.accrual_transfer_id is None else keys[row.accrual_transfer_id],
                row.lines,
                row.closed_at,
                row.created_at,
            )
            for row in conn.execute(
                select(pos_checks, cards.c.number)
                .join(cards, cards.c.id == pos_checks.c.card_id)
                .where(pos_checks.c.tenant_id == tenant_id)
                .order_by(pos_checks.c.id)
            )
        ]
        purchases = [
            (row.number, row.check_id, row.amount_minor, row.checks, row.at)
            for row in conn.execute(
                select(card_purchases, cards.c.number, pos_checks.c.check_id)
                .join(cards, cards.c.id == card_purchases.c.card_id)
                .join(pos_checks, pos_checks.c.id == card_purchases.c.pos_check_id)
                .where(card_purchases.c.tenant_id == tenant_id)
                .order_by(card_purchases.c.id)
            )
        ]
        problems = verify(conn, tenant_id=tenant_id)
    return {
        "figures": figures,
        "ledger": per_account,
        "lots": lot_rows,
        "checks": check_rows,
        "purchases": purchases,
        "problems": problems,
    }


amounts = st.integers(min_value=1, max_value=3_000_00)
check_op = st.tuples(
    st.just("check"),
    st.sampled_from([0, 0, 1, 1, 2, 2, BLOCKED, EXPIRED]),
    st.integers(min_value=0, max_value=12),  # few check ids: duplicates and conflicts
    st.lists(amounts, min_size=1, max_size=3),
    st.one_of(st.just(0), st.integers(min_value=0, max_value=400_00)),
    st.sampled_from([None, None, None, None, "right", "wrong"]),
)
other_op = st.one_of(
    st.tuples(st.just("repeat"), st.integers(min_value=0, max_value=100)),
    st.tuples(
        st.sampled_from(
            ["error", "unknown_card", "bad_number", "bad_check", "bad_points", "bad_line"]
        )
    ),
)
ops_strategy = st.lists(st.one_of(*[check_op] * 6, other_op), min_size=1, max_size=40)
params_strategy = st.fixed_dictionaries(
    {
        "accrual_bp": st.sampled_from([0, 300, 1000]),
        "exclude": st.booleans(),
        "delay": st.sampled_from([0, 0, 1]),
        "min_check": st.sampled_from([0, 50_00]),
        "tier_at": st.sampled_from([500_00, 2_000_00]),
        "tier_discount": st.sampled_from([0, 500]),
        "opening": st.lists(
            st.integers(min_value=0, max_value=200_00), min_size=len(NUMBERS), max_size=len(NUMBERS)
        ),
        "holds": st.lists(
            st.tuples(st.sampled_from([0, 0, 10_00]), st.sampled_from([60, 3600])),
            min_size=len(NUMBERS),
            max_size=len(NUMBERS),
        ),
    }
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    params=params_strategy,
    ops=ops_strategy,
    chunk=st.sampled_from([3, 7, 200]),
    pass_now=st.booleans(),
    force=st.booleans(),
)
def test_set_by_set_is_item_by_item(
    engine: Engine,
    actor: Actor,
    monkeypatch: pytest.MonkeyPatch,
    params: dict[str, Any],
    ops: list[tuple[Any, ...]],
    chunk: int,
    pass_now: bool,
    force: bool,
) -> None:
    """Random batches (cards repeated, blocked, expired, unknown; points past the balance;
    duplicates and conflicting duplicates; bad items) on two tenants set up alike: set by
    set on one, item by item on the other."""
    compare(engine, actor, monkeypatch, params, ops, chunk, pass_now, force)


DENSE = {
    "accrual_bp": 1000,
    "exclude": True,
    "delay": 0,
    "min_check": 0,
    "tier_at": 500_00,
    "tier_discount": 500,
    "opening": [50_00, 10_00, 0, 0, 0],
    "holds": [(10_00, 60), (0, 60), (0, 60), (0, 60), (0, 60)],
}


@pytest.mark.parametrize(("chunk", "pass_now", "force"), [(200, True, False), (7, True, True)])
def test_one_card_many_times_in_a_chunk(
    engine: Engine,
    actor: Actor,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
    pass_now: bool,
    force: bool,
) -> None:
    """Three cards, each checked many times in one chunk, spending what earlier checks of
    the chunk accrued and more (debt), with duplicates of checks of the same chunk."""
    ops: list[tuple[Any, ...]] = []
    for n in range(60):
        ops.append(("check", n % 3, n % 25, [100_00 + n * 7_00, 3_00], (n % 4) * 15_00, None))
        if n % 9 == 0:
            ops.append(("repeat", n))
    compare(engine, actor, monkeypatch, DENSE, ops, chunk, pass_now, force)


def compare(
    engine: Engine,
    actor: Actor,
    monkeypatch: pytest.MonkeyPatch,
    params: dict[str, Any],
    ops: list[tuple[Any, ...]],
    chunk: int,
    pass_now: bool,
    force: bool,
) -> None:
    sets, reference = _setup(engine, actor, params), _setup(engine, actor, params)
    items = _items(ops)
    # Past the card that expires, after every account was opened (and lapsed holds).
    now = utcnow() + timedelta(minutes=5) if pass_now else None
    # Count the runs that fall back to item by item; with ``force`` every other one does.
    fallbacks: list[int] = []
    runs: list[int] = []

    def counted(*args: Any) -> list[pos.BatchResult]:
        fallbacks.append(len(args[3]))
        return _APPLY_CHUNK(*args)

    def sometimes(self: Any, *args: Any) -> bool:
        runs.append(1)
        return _ONE_MOMENT(self, *args) and not (force and len(runs) % 2 == 1)

    monkeypatch.setattr(pos, "_apply_chunk", counted)
    monkeypatch.setattr(pos_batch._Chunk, "_one_moment", sometimes)
    monkeypatch.setattr(pos, "BATCH_CHUNK", chunk)
    got = pos.upload_batch(
        engine, tenant_id=sets[0], terminal_id=sets[1], items=items, actor=actor, now=now
    )
    monkeypatch.setattr(pos, "_apply_chunk", _APPLY_CHUNK)
    if now is not None and not force:
        assert fallbacks == []
    want = _reference(engine, reference[0], reference[1], items, actor, now)
    # Without a moment given, each path reads its own clock: compare all but the moments.
    strip = _strip_moments if now is None else _same
    assert strip(_answers(got)) == strip(_answers(want))
    got_state = _state(engine, *sets)
    want_state = _state(engine, *reference)
    assert got_state["problems"] == [] and want_state["problems"] == []
    for key in ("figures", "ledger", "lots", "checks", "purchases"):
        assert strip(got_state[key]) == strip(want_state[key]), key


def _ours(key: str, moment: datetime | None) -> datetime | None:
    """A moment of the batch's postings; the setup's own differ between the tenants."""
    return moment if key.startswith("pos:") else None


def _same(value: Any) -> Any:
    return value


def _strip_moments(value: Any) -> Any:
    """The same value with every moment dropped."""
    if isinstance(value, datetime):
        return None
    if isinstance(value, dict):
        return {k: _strip_moments(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_strip_moments(v) for v in value)
    return value
