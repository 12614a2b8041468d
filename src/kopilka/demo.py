"""The demo tenant: enough data that every ledger screen has something to show.

``load_demo`` builds, in one transaction, a tenant ``demo`` with a branch, one staff user
per role (with known passwords), a terminal, a point unit ``BONUS``, the system accounts
the postings need, four discount-card wallets with lots (spendable, not yet spendable,
expiring soon, lapsed and waiting for ``kopilka ledger expire``, never expiring), a
spend, a captured and a pending hold, a corrected mistake, and a subscriber's RUB account
with a credit limit that a monthly fee has taken below zero. Besides, ninety days of
history of a regular guest's card and of a second subscriber, posted at the moments they
happened, so that balance charts and turnovers over a period have something to show.
Last, a bonus program with two tiers, fifty cards of which four have holders and checks
at the bar, and ten gift certificates, two of them sold and one partly spent. And the
payment types of a hotel with a bar (cash, card, room charge, deposit, and the program's
bonuses paying at most 30 % of what a guest owes), with the r_keeper currency codes the
bar's terminal sends for them (1, 2, 12, 13).

It is idempotent: when the tenant exists, nothing is written and the known credentials
are returned again (the terminal key is not: only its digest is stored).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, Table, func, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.errors import NotFound
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import Policy, create_account, create_unit, system_account
from kopilka.ledger.holds import capture_hold, place_hold
from kopilka.ledger.lots import account_lots
from kopilka.ledger.posting import (
    EntrySpec,
    TransferSpec,
    post_one,
    run_transaction,
    simple_transfer,
)
from kopilka.ledger.schema import accounts, holds, transfers
from kopilka.loyalty.cards import find_card, issue_range, update_holder
from kopilka.loyalty.certificates import (
    issue_certificate_range,
    pay_with_certificate,
    sell_certificate,
)
from kopilka.loyalty.documents import accrue_points
from kopilka.loyalty.pos import commit_check
from kopilka.loyalty.programs import add_tier, create_program
from kopilka.payments.codes import add_payment_code
from kopilka.payments.types import PaymentKind, create_payment_type, list_payment_types
from kopilka.tenancy.actions import (
    Tenant,
    create_branch,
    create_tenant,
    create_terminal,
    create_user,
    get_tenant_by_slug,
)

DEMO_SLUG = "demo"
DEMO_NAME = "Kopilka Demo"
DEMO_URL = "http://127.0.0.1:8000"
DEMO_TERMINAL = "Bar POS 1"
DEMO_CARDS = ("2000000000017", "2000000000024", "2000000000031", "2000000000048")
DEMO_PROGRAM = "Бонусы"
# Cards of the bonus program's range (2770 + serial + Luhn digit) that have holders.
DEMO_LOYALTY_CARDS = ("27700000014", "27700000022", "27700000030", "27700000048")
DEMO_HOLDERS = (
    ("Анна Петрова", "+7 912 345-67-89"),
    ("Игорь Волков", "+7 903 111-22-33"),
    ("Елена Соколова", "+7 926 555-44-11"),
    ("Сергей Морозов", "+7 915 700-80-90"),
)

# Called with (steps done, steps in all, what is being done).
ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True, slots=True)
class DemoUser:
    role: str
    login: str
    password: str
    full_name: str


DEMO_USERS = (
    DemoUser("owner", "owner", "demo-owner-1", "Ольга Смирнова"),
    DemoUser("administrator", "admin", "demo-admin-1", "Андрей Козлов"),
    DemoUser("cashier", "cashier", "demo-cashier-1", "Мария Иванова"),
    DemoUser("front_desk", "frontdesk", "demo-desk-1", "Дмитрий Петров"),
)


@dataclass(frozen=True, slots=True)
class DemoInfo:
    tenant: Tenant
    created: bool  # False when the demo was there already and nothing was written
    users: tuple[DemoUser, ...]
    terminal_name: str
    terminal_key: str | None  # only when the terminal was made just now
    url: str
    accounts: int
    transfers: int
    holds: int


@dataclass(slots=True)
class _Ctx:
    """The ids the building steps share."""

    conn: Connection
    tenant_id: int
    actor: Actor
    now: datetime
    system: dict[str, int] = field(default_factory=dict)  # by code, "issuance:BONUS"
    wallets: list[int] = field(default_factory=list)  # in the order of DEMO_CARDS
    subscriber: int = 0
    branch_id: int | None = None
    terminal_key: str | None = None
    terminal_id: int = 0

    @property
    def opened_at(self) -> datetime:
        """The demo business opened its books before its ninety days of history."""
        return self.now - timedelta(days=91)


def load_demo(
    engine: Engine, *, progress: ProgressCallback | None = None, actor: Actor | None = None
) -> DemoInfo:
    """Create the demo tenant unless it exists; either way say how to sign in."""
    actor = actor or Actor.cli("kopilka demo")

    def build(conn: Connection) -> DemoInfo:
        try:
            tenant = get_tenant_by_slug(conn, DEMO_SLUG)
        except NotFound:
            return _build(conn, actor, progress)
        return _info(conn, tenant, created=False, terminal_key=None)

    return run_transaction(engine, build)


def _build(conn: Connection, actor: Actor, progress: ProgressCallback | None) -> DemoInfo:
    tenant = create_tenant(
        conn,
        slug=DEMO_SLUG,
        name=DEMO_NAME,
        locale="ru",
        timezone="Europe/Moscow",
        currency="RUB",
        actor=actor,
    )
    ctx = _Ctx(conn, tenant.id, actor, utcnow())
    for done, (what, step) in enumerate(_STEPS):
        if progress:
            progress(done, len(_STEPS), what)
        step(ctx)
    if progress:
        progress(len(_STEPS), len(_STEPS), "done")
    assert ctx.terminal_key is not None, "the demo terminal was made"
    return _info(conn, tenant, created=True, terminal_key=ctx.terminal_key)


def _info(conn: Connection, tenant: Tenant, *, created: bool, terminal_key: str | None) -> DemoInfo:
    def count(table: Table) -> int:
        query = select(func.count()).select_from(table).where(table.c.tenant_id == tenant.id)
        return int(conn.execute(query).scalar_one())

    return DemoInfo(
        tenant=tenant,
        created=created,
        users=DEMO_USERS,
        terminal_name=DEMO_TERMINAL,
        terminal_key=terminal_key,
        url=DEMO_URL,
        accounts=count(accounts),
        transfers=count(transfers),
        holds=count(holds),
    )


# --------------------------------------------------------------------------- steps


def _staff(ctx: _Ctx) -> None:
    ctx.branch_id = create_branch(
        ctx.conn, tenant_id=ctx.tenant_id, name="Central office", actor=ctx.actor
    )
    for user in DEMO_USERS:
        create_user(
            ctx.conn,
            tenant_id=ctx.tenant_id,
            login=user.login,
            password=user.password,
            role=user.role,
            full_name=user.full_name,
            actor=ctx.actor,
        )
    terminal, ctx.terminal_key = create_terminal(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        name=DEMO_TERMINAL,
        branch_id=ctx.branch_id,
        actor=ctx.actor,
    )
    ctx.terminal_id = terminal.id


def _accounts(ctx: _Ctx) -> None:
    create_unit(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        code="BONUS",
        kind=UnitKind.POINTS,
        name="Bonus points",
        exponent=2,
        actor=ctx.actor,
    )
    for purpose, unit in (
        ("issuance", "BONUS"),
        ("redeemed", "BONUS"),
        ("revenue", "RUB"),
        ("payments", "RUB"),
    ):
        ctx.system[f"{purpose}:{unit}"] = system_account(
            ctx.conn,
            tenant_id=ctx.tenant_id,
            unit_code=unit,
            purpose=purpose,
            actor=ctx.actor,
            opened_at=ctx.opened_at,
        ).id
    for card in DEMO_CARDS:
        account = create_account(
            ctx.conn,
            tenant_id=ctx.tenant_id,
            unit_code="BONUS",
            kind="wallet",
            policy=Policy.NON_NEGATIVE,
            name=f"Card {card}",
            owner_type="card",
            owner_id=card,
            uses_lots=True,
            actor=ctx.actor,
        )
        ctx.wallets.append(account.id)
    ctx.subscriber = create_account(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        unit_code="RUB",
        kind="subscriber",
        policy=Policy.CREDIT_LIMIT,
        credit_limit_minor=50_000,
        name="Subscriber LS-100001",
        owner_type="subscriber",
        owner_id="LS-100001",
        actor=ctx.actor,
    ).id


def _accruals(ctx: _Ctx) -> None:
    now, day = ctx.now, timedelta(days=1)
    a, b, c, d = ctx.wallets
    # (key, card, amount, available_at, expires_at, description)
    plan: list[tuple[str, int, int, datetime | None, datetime | None, str]] = [
        ("a-welcome", a, 150_000, None, now + 365 * day, "welcome bonus"),
        ("a-purchase", a, 30_000, None, now + 20 * day, "purchase, check 1042"),
        ("b-pending", b, 80_000, now + 14 * day, now + 379 * day, "purchase, spendable in 14 days"),
        ("b-purchase", b, 20_000, None, now + 90 * day, "purchase, check 1051"),
        ("c-last-season", c, 5_000, now - 120 * day, now - day, "last season's bonus, lapsed"),
        ("c-birthday", c, 40_000, None, None, "birthday gift, never expires"),
        ("d-mistake", d, 10_000, None, now + 365 * day, "accrued to the wrong card"),
    ]
    for key, card, amount, available_at, expires_at, description in plan:
        _post(
            ctx,
            simple_transfer(
                f"demo:accrual:{key}",
                debit_account_id=ctx.system["issuance:BONUS"],
                credit_account_id=card,
                amount_minor=amount,
                kind="accrual",
                description=description,
                available_at=available_at,
                expires_at=expires_at,
            ),
        )


def _spending(ctx: _Ctx) -> None:
    a, b, _c, d = ctx.wallets
    redeemed = ctx.system["redeemed:BONUS"]
    # Spending takes the lot that expires first (the 300.00 one of card A).
    _post(
        ctx,
        simple_transfer(
            "demo:spend:a-1",
            debit_account_id=a,
            credit_account_id=redeemed,
            amount_minor=25_000,
            kind="spend",
            description="paid part of check 1077 with points",
        ),
    )
    # A mistaken accrual is taken back from its own lot by a correcting transfer.
    (lot,) = account_lots(ctx.conn, ctx.tenant_id, d)
    _post(
        ctx,
        TransferSpec(
            idempotency_key="demo:correction:d-mistake",
            entries=(
                EntrySpec(d, -lot.remaining_minor, from_lot_id=lot.id),
                EntrySpec(ctx.system["issuance:BONUS"], lot.remaining_minor),
            ),
            kind="correction",
            description="accrued to the wrong card",
            corrects_transfer_id=lot.transfer_id,
        ),
    )
    # A hold captured in part (the check came out smaller), and one still pending.
    hold = place_hold(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        idempotency_key="demo:hold:b-1",
        debit_account_id=b,
        credit_account_id=redeemed,
        amount_minor=15_000,
        description="check 1090 at the bar",
        actor=ctx.actor,
    )
    capture_hold(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        hold_id=hold.id,
        idempotency_key="demo:capture:b-1",
        amount_minor=12_000,
        actor=ctx.actor,
    )
    place_hold(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        idempotency_key="demo:hold:a-2",
        debit_account_id=a,
        credit_account_id=redeemed,
        amount_minor=10_000,
        description="check 1093, open at the bar",
        expires_at=utcnow() + timedelta(days=2),
        actor=ctx.actor,
    )


def _subscriber(ctx: _Ctx) -> None:
    account = ctx.subscriber
    _post(
        ctx,
        simple_transfer(
            "demo:payment:ls-100001-1",
            debit_account_id=ctx.system["payments:RUB"],
            credit_account_id=account,
            amount_minor=30_000,
            kind="payment",
            description="payment at the office",
        ),
    )
    # The monthly fee takes the account below zero, within its 500.00 credit limit.
    _post(
        ctx,
        simple_transfer(
            "demo:charge:ls-100001-1",
            debit_account_id=account,
            credit_account_id=ctx.system["revenue:RUB"],
            amount_minor=65_000,
            kind="charge",
            description="monthly fee, tariff Home 100",
        ),
    )


HISTORY_CARD = "2000000000055"
HISTORY_SUBSCRIBER = "LS-100002"


def _history(ctx: _Ctx) -> None:
    """Ninety days of a regular guest's card and of a subscriber's account, posted at the
    moments they happened, so the balance charts have a shape. It runs before any other
    posting: a posting never lands before the last one on its accounts."""
    rng = random.Random(20261123)  # noqa: S311 (the same demo every time, not a secret)
    start = ctx.now - timedelta(days=90)
    guest = create_account(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        unit_code="BONUS",
        kind="wallet",
        policy=Policy.NON_NEGATIVE,
        name=f"Card {HISTORY_CARD}",
        owner_type="card",
        owner_id=HISTORY_CARD,
        uses_lots=True,
        actor=ctx.actor,
        opened_at=ctx.opened_at,
    ).id
    subscriber = create_account(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        unit_code="RUB",
        kind="subscriber",
        policy=Policy.CREDIT_LIMIT,
        credit_limit_minor=100_000,
        name=f"Subscriber {HISTORY_SUBSCRIBER}",
        owner_type="subscriber",
        owner_id=HISTORY_SUBSCRIBER,
        actor=ctx.actor,
        opened_at=ctx.opened_at,
    ).id
    # (moment, key, debit, credit, amount, kind, description)
    events: list[tuple[datetime, str, int, int, int, str, str]] = []
    points = 0
    for day in range(90):
        moment = start + timedelta(days=day, hours=rng.randint(9, 21), minutes=rng.randint(0, 59))
        roll = rng.random()
        if roll < 0.3:
            check = rng.randint(800, 9_000)
            earned = check * 5  # 5 % of the check, in hundredths of a point
            points += earned
            events.append(
                (
                    moment,
                    f"g-accrual-{day}",
                    ctx.system["issuance:BONUS"],
                    guest,
                    earned,
                    "accrual",
                    f"5 % of check {check}.00 RUB",
                )
            )
        elif roll < 0.4 and points > 20_000:
            spent = rng.randint(10_000, points // 100 * 100)
            points -= spent
            events.append(
                (
                    moment,
                    f"g-spend-{day}",
                    guest,
                    ctx.system["redeemed:BONUS"],
                    spent,
                    "spend",
                    "paid part of a check with points",
                )
            )
    for day in (1, 31, 61, 88):
        moment = start + timedelta(days=day, hours=3)
        events.append(
            (
                moment,
                f"s-fee-{day}",
                subscriber,
                ctx.system["revenue:RUB"],
                65_000,
                "charge",
                "monthly fee, tariff Home 100",
            )
        )
    for day, amount in ((4, 100_000), (45, 50_000), (70, 100_000)):
        moment = start + timedelta(days=day, hours=12)
        events.append(
            (
                moment,
                f"s-payment-{day}",
                ctx.system["payments:RUB"],
                subscriber,
                amount,
                "payment",
                "payment by card",
            )
        )
    for moment, key, debit, credit, amount, kind, description in sorted(events):
        posted = post_one(
            ctx.conn,
            tenant_id=ctx.tenant_id,
            spec=simple_transfer(
                f"demo:history:{key}",
                debit_account_id=debit,
                credit_account_id=credit,
                amount_minor=amount,
                kind=kind,
                description=description,
                expires_at=moment + timedelta(days=365) if kind == "accrual" else None,
            ),
            actor=ctx.actor,
            now=moment,
        )
        assert posted.posted_at == moment, "history is posted in the order it happened"


def _post(ctx: _Ctx, spec: TransferSpec) -> None:
    # Posted at the moment of posting, after the accounts (and their limits) exist.
    posted = post_one(ctx.conn, tenant_id=ctx.tenant_id, spec=spec, actor=ctx.actor)
    assert not posted.replayed, "the demo is built once, in one transaction"


def _loyalty(ctx: _Ctx) -> None:
    """A bonus program with two tiers, card holders who bought at the bar over the last
    weeks (checks through the demo terminal), a gift, and sold gift certificates."""
    conn, tenant_id, actor = ctx.conn, ctx.tenant_id, ctx.actor
    program = create_program(
        conn,
        tenant_id=tenant_id,
        name=DEMO_PROGRAM,
        unit_code="BONUS",
        actor=actor,
        accrual_bp=300,
        lifetime_days=365,
        max_share_bp=5000,
        accumulation_window_days=365,
    )
    for name, threshold, discount, accrual in (
        ("Серебро", 10_000_00, 300, 500),
        ("Золото", 50_000_00, 500, 700),
    ):
        add_tier(
            conn,
            tenant_id=tenant_id,
            program_id=program.id,
            name=name,
            threshold_minor=threshold,
            discount_bp=discount,
            accrual_bp=accrual,
            actor=actor,
        )
    issue_range(
        conn,
        tenant_id=tenant_id,
        program_id=program.id,
        prefix="2770",
        first=1,
        last=50,
        width=6,
        check_digit=True,
        actor=actor,
    )
    rng = random.Random(7)  # noqa: S311 -- demo amounts, the same on every machine
    for number, (name, phone) in zip(DEMO_LOYALTY_CARDS, DEMO_HOLDERS, strict=True):
        card = find_card(conn, tenant_id, number=number)
        update_holder(
            conn,
            tenant_id=tenant_id,
            card_id=card.id,
            name=name,
            phone=phone,
            email=None,
            actor=actor,
        )
        for visit in range(rng.randint(2, 6)):
            lines = [rng.randint(3, 40) * 100_00 for _ in range(rng.randint(1, 3))]
            commit_check(
                conn,
                tenant_id=tenant_id,
                terminal_id=ctx.terminal_id,
                check_id=f"{number[-4:]}-{visit + 1}",
                card_number=number,
                lines=lines,
                points_minor=0,
                actor=actor,
            )
    accrue_points(
        conn,
        tenant_id=tenant_id,
        card_numbers=[DEMO_LOYALTY_CARDS[0]],
        amount_minor=500_00,
        reason="Подарок ко дню рождения",
        actor=actor,
        document_id="demo-birthday",
    )
    issue_certificate_range(
        conn,
        tenant_id=tenant_id,
        prefix="90",
        first=1,
        last=10,
        width=4,
        check_digit=False,
        validity_days=365,
        actor=actor,
    )
    for number, nominal in (("900001", 3_000_00), ("900002", 5_000_00)):
        sell_certificate(
            conn,
            tenant_id=tenant_id,
            number=number,
            nominal_minor=nominal,
            operation_id=f"demo-sale-{number}",
            actor=actor,
        )
    pay_with_certificate(
        conn,
        tenant_id=tenant_id,
        number="900001",
        amount_minor=1_200_00,
        operation_id="demo-pay-1",
        terminal_id=ctx.terminal_id,
        check_id="Бар-118",
        actor=actor,
    )


# (name, kind, r_keeper currency code or None); the points type is the program's BONUS.
DEMO_PAYMENT_TYPES = (
    ("Наличные", PaymentKind.CASH, "1"),
    ("Банковская карта", PaymentKind.CARD, "2"),
    ("Закрытие на номер", PaymentKind.ROOM_CHARGE, "12"),
    ("Депозит", PaymentKind.DEPOSIT, "13"),
    ("Бонусы", PaymentKind.POINTS, None),
)


def _payments(ctx: _Ctx) -> None:
    """The payment types directory (SPEC H-3) and the bar's currency codes (P-8)."""
    for name, kind, code in DEMO_PAYMENT_TYPES:
        points = kind == PaymentKind.POINTS
        payment_type = create_payment_type(
            ctx.conn,
            tenant_id=ctx.tenant_id,
            name=name,
            kind=kind,
            unit_code="BONUS" if points else None,
            max_share_bp=3000 if points else None,
            actor=ctx.actor,
        )
        if code is not None:
            add_payment_code(
                ctx.conn,
                tenant_id=ctx.tenant_id,
                code=code,
                payment_type_id=payment_type.id,
                actor=ctx.actor,
            )


def _hotel(ctx: _Ctx) -> None:
    """A hotel with rooms and two stays (SPEC H-1): Анна Петрова in room 90 with a night
    charged and part paid, and an order from the bar charged to her room (P-7)."""
    from kopilka.hotel import folios, room_charge, stays

    conn, t, actor = ctx.conn, ctx.tenant_id, ctx.actor
    prop = stays.create_property(conn, tenant_id=t, name="Гостиница «Берег»", actor=actor)
    rooms = {
        number: stays.create_room(
            conn, tenant_id=t, property_id=prop.id, number=number, description=kind, actor=actor
        )
        for number, kind in (
            ("90", "Стандарт"),
            ("91", "Стандарт"),
            ("12A", "Люкс"),
            ("12B", "Люкс"),
        )
    }
    anna = stays.create_guest(
        conn,
        tenant_id=t,
        full_name="Анна Петрова",
        phone="+7 916 123-45-67",
        email="anna.petrova@example.ru",
        actor=actor,
    )
    ivan = stays.create_guest(conn, tenant_id=t, full_name="Иван Петров", actor=actor)
    oleg = stays.create_guest(
        conn, tenant_id=t, full_name="Олег Смирнов", phone="+7 903 555-01-02", actor=actor
    )
    today = ctx.now.date()
    stay = stays.create_stay(
        conn,
        tenant_id=t,
        room_id=rooms["90"].id,
        arrival=today - timedelta(days=1),
        departure=today + timedelta(days=2),
        guest_ids=[anna.id, ivan.id],
        check_in=True,
        actor=actor,
    )
    stays.create_stay(
        conn,
        tenant_id=t,
        room_id=rooms["12A"].id,
        arrival=today + timedelta(days=3),
        departure=today + timedelta(days=6),
        guest_ids=[oleg.id],
        actor=actor,
    )
    folio_id = stay.folios[0].id
    night = folios.charge(
        conn,
        tenant_id=t,
        folio_id=folio_id,
        kind="accommodation",
        description="Проживание",
        lines=[folios.LineIn("Стандарт, 3 ночи", 10_500_00, 3000, 3_500_00)],
        operation_id="demo-night-1",
        actor=actor,
    )
    cash = next(p.id for p in list_payment_types(conn, t) if p.kind == PaymentKind.CASH)
    folios.pay(
        conn,
        tenant_id=t,
        folio_id=folio_id,
        payment_type_id=cash,
        amount_minor=3_500_00,
        invoice_id=night.id,
        operation_id="demo-pay-night-1",
        payer="Анна Петрова",
        actor=actor,
    )
    room_charge.post_room_charge(
        conn,
        tenant_id=t,
        terminal_id=ctx.terminal_id,
        room="90",
        guest_id=anna.id,
        check_id="Бар-121",
        lines=[
            folios.LineIn("Капучино", 640_00, 2000, 320_00),
            folios.LineIn("Чизкейк", 450_00),
        ],
        payment_code="12",
        actor=actor,
    )


DEMO_CABINET_PASSWORD = "demo-subscriber-1"  # noqa: S105 - the demo's published password
DEMO_SUBSCRIBERS = ("100001", "100002", "100003")


def _isp(ctx: _Ctx) -> None:
    """An internet provider's subscribers (seed 003): three tariffs, the seed's promised
    payment services, and three subscribers with a month of history: one paying its way
    (100001), one blocked for debt who may take a promised payment in the cabinet
    (100002), one not activated yet (100003). Cabinet password: DEMO_CABINET_PASSWORD."""
    from kopilka.subscribers import billing
    from kopilka.subscribers.common import open_system_accounts
    from kopilka.subscribers.registry import SubscriberIn, create_subscriber
    from kopilka.subscribers.tariffs import ServiceIn, TariffIn, create_service, create_tariff

    conn, t, actor = ctx.conn, ctx.tenant_id, ctx.actor
    start = ctx.now - timedelta(days=30)
    open_system_accounts(conn, t, actor, opened_at=start - timedelta(days=1))
    home = create_tariff(
        conn,
        tenant_id=t,
        data=TariffIn("Домашний", 2000, "daily", grace_days=3, pp_once_a_month=True),
        actor=actor,
    )
    optimal = create_tariff(
        conn,
        tenant_id=t,
        data=TariffIn("Оптимальный", 60000, "monthly", pp_requires_topup=True),
        actor=actor,
    )
    create_tariff(conn, tenant_id=t, data=TariffIn("Подключение", 150000, "one_time"), actor=actor)
    create_service(
        conn,
        tenant_id=t,
        data=ServiceIn(
            "Доверительный платёж 600 на 5 дней",
            60000,
            5,
            "monthly",
            connection_price_minor=20000,
            commission_bp=100,
            self_service=True,
        ),
        actor=actor,
    )
    create_service(
        conn,
        tenant_id=t,
        data=ServiceIn("Обещанный платёж (сколько нужно)", 0, 3, "daily", self_service=True),
        actor=actor,
    )
    people = (
        ("100001", "Ирина Соколова", "+7 916 200-10-01", home.id),
        ("100002", "Пётр Волков", "+7 916 200-10-02", optimal.id),
        ("100003", "Мария Орлова", "+7 916 200-10-03", home.id),
    )
    ids = []
    for number, name, phone, tariff_id in people:
        ids.append(
            create_subscriber(
                conn,
                tenant_id=t,
                data=SubscriberIn(
                    number, name, tariff_id, phone=phone, password=DEMO_CABINET_PASSWORD
                ),
                actor=actor,
                now=start,
            ).id
        )
    irina, petr, _maria = ids
    billing.top_up(
        conn,
        tenant_id=t,
        subscriber_id=irina,
        amount_minor=50000,
        operation_id="demo-topup-1",
        method="card",
        actor=actor,
        now=start + timedelta(hours=1),
    )
    for sid in (irina, petr):
        billing.activate(
            conn,
            tenant_id=t,
            subscriber_id=sid,
            actor=actor,
            by_session=True,
            now=start + timedelta(hours=2),
        )
    billing.top_up(
        conn,
        tenant_id=t,
        subscriber_id=irina,
        amount_minor=30000,
        operation_id="demo-topup-2",
        method="cash",
        actor=actor,
        now=start + timedelta(days=20),
    )
    for sid in (irina, petr):
        billing.settle(conn, t, sid, actor=actor, now=ctx.now)


def _studio(ctx: _Ctx) -> None:
    """A studio selling memberships online (seed 004) with the sandbox provider: two
    types sold online, a trial one that is not, groups with classes next week, a
    visitor. Its buy buttons: Settings -> Online sale."""
    from kopilka.memberships import catalogue
    from kopilka.memberships.catalogue import ButtonDesign, OnlineSettings, TypeIn
    from kopilka.memberships.providers.registry import default_config

    conn, t, actor = ctx.conn, ctx.tenant_id, ctx.actor
    catalogue.update_settings(
        conn,
        tenant_id=t,
        settings=OnlineSettings(
            online_enabled=True,
            commission_bp=300,
            provider="sandbox",
            provider_config=dict(default_config("sandbox")),
            button=ButtonDesign(bg_color="#7b3fe4", border_color="#5a2bb0", radius=24),
        ),
        actor=actor,
    )
    for data in (
        TypeIn(
            "8 занятий в месяц",
            400_000,
            30,
            classes=8,
            sell_online=True,
            button_text="Купить 8 занятий",
        ),
        TypeIn("Безлимит на месяц", 700_000, 30, sell_online=True, button_text="Купить безлимит"),
        TypeIn("Пробное занятие", 50_000, 7, classes=1, is_permanent=False),
    ):
        catalogue.create_type(conn, tenant_id=t, data=data, actor=actor)
    start = ctx.now.replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
    for name, hour in (("Йога", 9), ("Танцы", 19)):
        group = catalogue.create_group(conn, tenant_id=t, name=name, actor=actor)
        for day in range(7):
            catalogue.create_class(
                conn,
                tenant_id=t,
                group_id=group.id,
                starts_at=start + timedelta(days=day, hours=hour - 9),
                minutes=60,
                capacity=12,
                actor=actor,
            )
    catalogue.create_visitor(
        conn, tenant_id=t, full_name="Ольга Смирнова", phone="+7 916 300-40-50", actor=actor
    )


_STEPS = (
    ("staff users and a terminal", _staff),
    ("units and accounts", _accounts),
    ("ninety days of history", _history),
    ("accruals", _accruals),
    ("spends, holds and a correction", _spending),
    ("a subscriber's account", _subscriber),
    ("a bonus program, cards and gift certificates", _loyalty),
    ("payment types and the terminal's codes", _payments),
    ("a hotel with guests staying", _hotel),
    ("an internet provider's subscribers", _isp),
    ("a studio selling memberships online", _studio),
)
