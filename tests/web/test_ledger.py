"""The ledger's screens (SPEC L-6): accounts, one account's figures, history and chart,
turnovers; worked numbers, shown the way Russian writes money (the tenants' locale)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, update

from kopilka.core.actor import Actor
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import Policy, create_account, create_unit
from kopilka.ledger.posting import post_one, simple_transfer
from kopilka.ledger.schema import accounts
from kopilka.tenancy.actions import create_tenant
from tests.web.conftest import Web, text_of

MSK = ZoneInfo("Europe/Moscow")
NBSP = "\u00a0"
ACTOR = Actor.cli("tests")


def rub(text: str) -> str:
    """``"1 234,56"`` → ``"1 234,56 ₽"`` as ru writes it (no-break spaces)."""
    return text.replace(" ", NBSP) + NBSP + "₽"


def cells(html: str, testid: str) -> list[str]:
    """The visible text of every element marked ``data-testid=testid``."""
    found = re.findall(rf'data-testid="{testid}"[^>]*>(.*?)</(?:td|p|dd|span)>', html, re.S)
    return [visible(cell) for cell in found]


def visible(html: str) -> str:
    """Text without tags; runs of ASCII white space made one (no-break spaces kept)."""
    return re.sub(r"[ \t\r\n]+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


@dataclass
class Wallet:
    wallet: int
    source: int


def make_wallet(web: Web, *, owner_id: str = "2000000000017", name: str = "Card") -> Wallet:
    with web.engine.begin() as conn:
        source = create_account(
            conn,
            tenant_id=web.tenant.id,
            unit_code="RUB",
            kind="cashdesk",
            policy=Policy.UNLIMITED,
            name="Cash desk",
            code=f"cash:{uuid.uuid4().hex[:6]}",
            actor=ACTOR,
        )
        wallet = create_account(
            conn,
            tenant_id=web.tenant.id,
            unit_code="RUB",
            kind="wallet",
            name=name,
            owner_type="card",
            owner_id=owner_id,
            actor=ACTOR,
        )
        backdate(conn, source.id, wallet.id)
    return Wallet(wallet.id, source.id)


def backdate(conn: Connection, *account_ids: int) -> None:
    """Open the accounts before the worked example's postings (posting never goes back
    before an account was opened)."""
    conn.execute(
        update(accounts)
        .where(accounts.c.id.in_(account_ids))
        .values(created_at=datetime(2026, 1, 1, tzinfo=UTC))
    )


def post(web: Web, debit: int, credit: int, minor: int, at: datetime, what: str) -> int:
    with web.engine.begin() as conn:
        posted = post_one(
            conn,
            tenant_id=web.tenant.id,
            spec=simple_transfer(
                uuid.uuid4().hex,
                debit_account_id=debit,
                credit_account_id=credit,
                amount_minor=minor,
                kind="payment",
                description=what,
            ),
            actor=ACTOR,
            now=at,
        )
    return posted.id


def march(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=MSK)


def worked_example(web: Web) -> Wallet:
    """1 234,56 in, 234,56 out, 500,00 in, 1 000,00 out: 500,00 left."""
    w = make_wallet(web)
    post(web, w.source, w.wallet, 123456, march(2, 10), "top-up")
    post(web, w.wallet, w.source, 23456, march(5, 12), "purchase 1")
    post(web, w.source, w.wallet, 50000, march(10, 9, 30), "top-up 2")
    post(web, w.wallet, w.source, 100000, march(15, 18), "purchase 2")
    return w


# --------------------------------------------------------------------------- one account


def test_history_shows_each_entry_with_the_running_balance(web: Web) -> None:
    w = worked_example(web)
    owner = web.sign_in("owner")
    page = owner.get(f"/ledger/accounts/{w.wallet}?from=2026-03-01&to=2026-03-31")
    assert page.status_code == 200
    assert cells(page.text, "account-balance") == [rub("500,00")]
    table = page.text[page.text.index('data-testid="history-table"') :]
    # Newest first: each balance is the one before it plus the line's amount.
    assert cells(table, "amount") == [
        "-" + rub("1 000,00"),
        "+" + rub("500,00"),
        "-" + rub("234,56"),
        "+" + rub("1 234,56"),
    ]
    assert cells(table, "balance-after") == [
        rub("500,00"),
        rub("1 500,00"),
        rub("1 000,00"),
        rub("1 234,56"),
    ]
    text = text_of(table)
    assert "purchase 2" in text and "top-up" in text
    assert "15 мар. 2026 г., 18:00:00" in text  # in the tenant's zone (Moscow)


def test_balance_at_a_moment_in_between_is_the_balance_then(web: Web) -> None:
    w = worked_example(web)
    owner = web.sign_in("owner")
    url = f"/ledger/accounts/{w.wallet}"
    # A date alone: the end of that day (after the purchase of 5 March).
    page = owner.get(url, params={"at": "2026-03-07"})
    assert page.status_code == 200
    (shown,) = cells(page.text, "balance-at")
    assert shown.endswith(rub("1 000,00")), shown
    assert "7 мар. 2026\u202fг., 23:59:59" in shown
    # The top-up of 10 March at 09:30 counts at 09:30, not at 09:29.
    assert cells(owner.get(url, params={"at": "2026-03-10T09:29"}).text, "balance-at")[0].endswith(
        rub("1 000,00")
    )
    assert cells(owner.get(url, params={"at": "2026-03-10T09:30"}).text, "balance-at")[0].endswith(
        rub("1 500,00")
    )
    # Before anything was posted, and after everything.
    assert cells(owner.get(url, params={"at": "2026-03-01"}).text, "balance-at")[0].endswith(
        rub("0,00")
    )
    assert cells(owner.get(url, params={"at": "2026-04-01T00:00"}).text, "balance-at")[0].endswith(
        rub("500,00")
    )


def test_turnovers_of_a_period_add_up(web: Web) -> None:
    w = worked_example(web)
    owner = web.sign_in("owner")
    page = owner.get(
        f"/ledger/accounts/{w.wallet}", params={"from": "2026-03-03", "to": "2026-03-12"}
    )
    assert page.status_code == 200
    block = page.text[page.text.index('data-testid="turnovers"') :]
    # Opening 1 234,56 (before 3 March) + credit 500,00 − debit 234,56 = closing 1 500,00.
    assert cells(block, "opening")[0] == rub("1 234,56")
    assert cells(block, "debit")[0] == rub("234,56")
    assert cells(block, "credit")[0] == rub("500,00")
    assert cells(block, "closing")[0] == rub("1 500,00")
    assert "С 3 мар. 2026 г. по 12 мар. 2026 г. включительно." in text_of(page.text)


def _chart(html: str) -> str:
    match = re.search(r'<svg[^>]*data-testid="balance-chart".*?</svg>', html, re.S)
    assert match, "the page has the balance chart"
    return match.group(0)


def test_the_chart_draws_one_step_per_entry_of_the_period(web: Web) -> None:
    w = worked_example(web)
    owner = web.sign_in("owner")
    url = f"/ledger/accounts/{w.wallet}"
    svg = _chart(owner.get(url, params={"from": "2026-03-01", "to": "2026-03-31"}).text)
    assert 'viewBox="0 0 ' in svg and "<title" in svg
    (line,) = re.findall(r'class="balance-line" d="([^"]+)"', svg)
    assert line.count("V") == 4, line
    # Amount ticks are money as ru writes it; date ticks are days of March.
    assert rub("1 500,00") in svg or rub("1 000,00") in svg
    assert "мар." in svg
    title = re.search(r"<title[^>]*>(.*?)</title>", svg, re.S)
    assert title and rub("500,00") in title.group(1)
    # A period with two of the entries in it: two steps, starting from 1 234,56.
    svg = _chart(owner.get(url, params={"from": "2026-03-03", "to": "2026-03-12"}).text)
    (line,) = re.findall(r'class="balance-line" d="([^"]+)"', svg)
    assert line.count("V") == 2, line
    assert "в начале " + rub("1 234,56") in svg


def test_the_default_period_starts_at_the_first_entry_of_a_young_account(web: Web) -> None:
    w = make_wallet(web)
    now = datetime.now(MSK)
    post(web, w.source, w.wallet, 10000, now, "today")
    page = web.sign_in("owner").get(f"/ledger/accounts/{w.wallet}")
    assert page.status_code == 200
    today = now.date().isoformat()
    assert f'name="from" type="date" value="{today}"' in page.text
    (line,) = re.findall(r'class="balance-line" d="([^"]+)"', _chart(page.text))
    assert line.count("V") == 1


def test_bad_dates_are_shown_by_their_fields(web: Web) -> None:
    w = worked_example(web)
    owner = web.sign_in("owner")
    url = f"/ledger/accounts/{w.wallet}"
    page = owner.get(url, params={"at": "the day after"})
    assert page.status_code == 422
    assert "Введите дату или дату и время" in cells(page.text, "error-at")[0]
    page = owner.get(url, params={"from": "2026-02-30", "to": "2026-03-05"})
    assert page.status_code == 422
    assert cells(page.text, "error-from")
    assert 'data-testid="turnovers"' not in page.text
    page = owner.get(url, params={"from": "2026-03-10", "to": "2026-03-05"})
    assert page.status_code == 422
    assert cells(page.text, "error-to") == ["Период не может закончиться раньше, чем начался."]
    # The history is still there.
    assert 'data-testid="history-table"' in page.text


def test_history_is_paged(web: Web) -> None:
    w = make_wallet(web)
    for n in range(55):
        post(web, w.source, w.wallet, 100 + n, march(1, 10, n), f"line {n}")
    owner = web.sign_in("owner")
    first = owner.get(f"/ledger/accounts/{w.wallet}")
    assert len(re.findall(r"data-entry-id=", first.text)) == 50
    assert "1–50 из 55" in text_of(first.text)
    second = owner.get(f"/ledger/accounts/{w.wallet}?page=2")
    assert len(re.findall(r"data-entry-id=", second.text)) == 5
    # The oldest line comes last, with the first balance.
    assert cells(second.text, "balance-after")[-1] == rub("1,00")


def test_another_tenants_account_is_not_found(web: Web) -> None:
    with web.engine.begin() as conn:
        other = create_tenant(conn, slug=f"o-{uuid.uuid4().hex[:10]}", name="Other", actor=ACTOR)
        theirs = create_account(
            conn, tenant_id=other.id, unit_code="RUB", kind="wallet", actor=ACTOR
        )
    owner = web.sign_in("owner")
    page = owner.get(f"/ledger/accounts/{theirs.id}")
    assert page.status_code == 404
    assert 'data-testid="error-page"' in page.text
    assert owner.get("/ledger/accounts/999999999").status_code == 404


@pytest.mark.parametrize("url", ["/ledger/accounts", "/ledger/accounts/1", "/ledger/turnovers"])
def test_cashiers_do_not_see_the_ledger(web: Web, url: str) -> None:
    page = web.sign_in("cashier").get(url)
    assert page.status_code == 403
    assert 'data-testid="error-page"' in page.text


def test_the_administrator_sees_the_ledger(web: Web) -> None:
    w = worked_example(web)
    page = web.sign_in("administrator").get(f"/ledger/accounts/{w.wallet}")
    assert page.status_code == 200


# --------------------------------------------------------------------------- accounts


def test_accounts_table_is_searched_filtered_and_paged(web: Web) -> None:
    with web.engine.begin() as conn:
        create_unit(conn, tenant_id=web.tenant.id, code="BONUS", kind=UnitKind.POINTS, actor=ACTOR)
        ids = [
            create_account(
                conn,
                tenant_id=web.tenant.id,
                unit_code="BONUS" if n % 4 == 0 else "RUB",
                kind="wallet",
                name=f"Wallet {n:02d}",
                owner_type="card",
                owner_id=f"20000000000{n:02d}",
                actor=ACTOR,
            ).id
            for n in range(1, 13)
        ]
        system = create_account(
            conn,
            tenant_id=web.tenant.id,
            unit_code="RUB",
            kind="revenue",
            policy=Policy.UNLIMITED,
            name="Revenue",
            code="revenue:RUB",
            actor=ACTOR,
        ).id
    owner = web.sign_in("owner")

    def shown(**params: str) -> list[int]:
        page = owner.get("/ledger/accounts", params=params)
        assert page.status_code == 200
        return [int(i) for i in re.findall(r'data-account-id="(\d+)"', page.text)]

    everything = shown()
    assert everything == sorted(everything) and {*ids, system} <= set(everything)
    total = len(everything)
    page = owner.get("/ledger/accounts", params={"size": "10"})
    assert f"1–10 из {total}" in text_of(page.text)
    assert 'data-testid="accounts-table"' in page.text
    assert shown(size="10") == everything[:10]
    assert shown(size="10", page="2") == everything[10:20]

    assert shown(q="Wallet 07") == [ids[6]]
    assert shown(q="wallet 07") == [ids[6]]  # any case
    assert shown(q="2000000000011") == [ids[10]]  # the owner's id
    assert shown(q=str(system)) == [system]  # an exact account number
    assert shown(q="revenue:") == [system]  # a code
    assert shown(q="nobody like this") == []
    assert shown(unit="BONUS") == [ids[3], ids[7], ids[11]]
    assert shown(scope="system") == [system]
    assert system not in shown(scope="customer")
    assert shown(kind="revenue") == [system]
    assert shown(kind="wallet", unit="BONUS", q="Wallet 08") == [ids[7]]
    assert "Ни один счёт не подходит" in text_of(
        owner.get("/ledger/accounts", params={"q": "nobody"}).text
    )


def test_accounts_table_shows_money_by_locale(web: Web) -> None:
    w = worked_example(web)
    page = web.sign_in("owner").get("/ledger/accounts", params={"q": str(w.wallet)})
    row = page.text[page.text.index(f'data-account-id="{w.wallet}"') :]
    row = row[: row.index("</tr>")]
    assert rub("500,00") in row and "2000000000017" in row
    # The English page writes the same money the English way.
    english = web.sign_in("owner")
    english.post("/language", {"locale": "en", "next": "/"})
    page = english.get("/ledger/accounts", params={"q": str(w.wallet)})
    assert "₽500.00" in page.text and "Turnovers" in page.text


# --------------------------------------------------------------------------- turnovers


def test_turnovers_of_a_group_per_unit(web: Web) -> None:
    a = worked_example(web)  # its wallet ends March at 500,00
    b = make_wallet(web, owner_id="2000000000024")
    post(web, b.source, b.wallet, 70000, march(1, 9), "b in")  # before the period
    post(web, b.wallet, b.source, 20000, march(4, 9), "b out")
    owner = web.sign_in("owner")
    page = owner.get(
        "/ledger/turnovers",
        params={"unit": "RUB", "kind": "wallet", "from": "2026-03-03", "to": "2026-03-12"},
    )
    assert page.status_code == 200
    row = page.text[page.text.index('data-unit="RUB"') :]
    # Opening 1 234,56 + 700,00; debit 234,56 + 200,00; credit 500,00; closing 1 500 + 500.
    assert cells(row, "opening")[0] == rub("1 934,56")
    assert cells(row, "debit")[0] == rub("434,56")
    assert cells(row, "credit")[0] == rub("500,00")
    assert cells(row, "closing")[0] == rub("2 000,00")
    assert 193456 + 50000 - 43456 == 200000
    # The cash desks on the other side of every posting: the same money the other way.
    page = owner.get(
        "/ledger/turnovers",
        params={"kind": "cashdesk", "from": "2026-03-03", "to": "2026-03-12"},
    )
    row = page.text[page.text.index('data-unit="RUB"') :]
    assert cells(row, "opening")[0] == "-" + rub("1 934,56")
    assert cells(row, "debit")[0] == rub("500,00")
    assert cells(row, "credit")[0] == rub("434,56")
    assert cells(row, "closing")[0] == "-" + rub("2 000,00")
    assert a.wallet != b.wallet


def test_turnovers_refuse_a_period_ending_before_it_starts(web: Web) -> None:
    page = web.sign_in("owner").get(
        "/ledger/turnovers", params={"from": "2026-03-10", "to": "2026-03-01"}
    )
    assert page.status_code == 422
    assert cells(page.text, "error-to")
