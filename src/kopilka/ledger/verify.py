"""``kopilka ledger verify``: the ledger's invariants, checked from the append-only rows.

Each check is one set-based query, so it runs in the database at its speed, and names
the rows that break it. An empty result means: every transfer balances per unit, every
stored figure (balances, running balances, shards, held amounts, lot remainders,
snapshots) equals what its entries say, and no limit was ever broken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, text


@dataclass(frozen=True, slots=True)
class Problem:
    check: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class _Check:
    name: str
    sql: str
    describe: Callable[..., tuple[str, str]]


def _tenant(alias: str) -> str:
    return f"(CAST(:tenant_id AS BIGINT) IS NULL OR {alias}.tenant_id = CAST(:tenant_id AS BIGINT))"


CHECKS: tuple[_Check, ...] = (
    _Check(
        "transfer_balances",
        f"""SELECT e.transfer_id, u.code, SUM(e.amount_minor) AS total
            FROM entries e JOIN units u ON u.id = e.unit_id
            WHERE {_tenant("e")}
            GROUP BY e.transfer_id, u.code HAVING SUM(e.amount_minor) <> 0""",
        lambda r: (f"transfer {r[0]}", f"entries in {r[1]} sum to {r[2]}, not 0"),
    ),
    _Check(
        "transfer_has_entries",
        f"""SELECT t.id, COUNT(e.id) FROM transfers t LEFT JOIN entries e ON e.transfer_id = t.id
            WHERE {_tenant("t")} GROUP BY t.id HAVING COUNT(e.id) < 2""",
        lambda r: (f"transfer {r[0]}", f"has {r[1]} entries; at least 2 are needed"),
    ),
    _Check(
        "entry_matches_account",
        f"""SELECT e.id, e.account_id FROM entries e JOIN accounts a ON a.id = e.account_id
            WHERE {_tenant("e")} AND (e.unit_id <> a.unit_id OR e.tenant_id <> a.tenant_id)""",
        lambda r: (f"entry {r[0]}", f"its unit or tenant differs from account {r[1]}'s"),
    ),
    _Check(
        "stored_balance",
        f"""SELECT a.id, a.balance_minor, COALESCE(s.total, 0), a.debit_total_minor,
                   COALESCE(s.debits, 0), a.entry_count, COALESCE(s.n, 0)
            FROM accounts a LEFT JOIN (
                SELECT account_id, SUM(amount_minor) AS total, COUNT(*) AS n,
                       SUM(CASE WHEN amount_minor < 0 THEN -amount_minor ELSE 0 END) AS debits
                FROM entries GROUP BY account_id) s ON s.account_id = a.id
            WHERE {_tenant("a")} AND NOT a.is_hot AND (
                a.balance_minor <> COALESCE(s.total, 0)
                OR a.debit_total_minor <> COALESCE(s.debits, 0)
                OR a.entry_count <> COALESCE(s.n, 0))""",
        lambda r: (
            f"account {r[0]}",
            f"stores balance {r[1]}, debits {r[3]}, {r[5]} entries; "
            f"its entries say {r[2]}, {r[4]}, {r[6]}",
        ),
    ),
    _Check(
        "running_balance",
        f"""SELECT id, account_id, account_seq, balance_after_minor, run, rn FROM (
                SELECT e.id, e.account_id, e.account_seq, e.balance_after_minor,
                       e.debit_total_after_minor,
                       SUM(e.amount_minor) OVER w AS run,
                       SUM(CASE WHEN e.amount_minor < 0 THEN -e.amount_minor ELSE 0 END)
                           OVER w AS debits,
                       ROW_NUMBER() OVER w AS rn
                FROM entries e JOIN accounts a ON a.id = e.account_id
                WHERE {_tenant("e")} AND NOT a.is_hot
                WINDOW w AS (PARTITION BY e.account_id ORDER BY e.account_seq
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) x
            WHERE account_seq IS NULL OR run <> balance_after_minor
               OR debits <> debit_total_after_minor OR rn <> account_seq""",
        lambda r: (
            f"entry {r[0]} of account {r[1]}",
            f"seq {r[2]} stores balance {r[3]}; the entries up to it sum to {r[4]} "
            f"(position {r[5]})",
        ),
    ),
    _Check(
        "hot_shards",
        f"""SELECT a.id, COALESCE(sh.total, 0), COALESCE(s.total, 0)
            FROM accounts a
            LEFT JOIN (SELECT account_id, SUM(balance_minor) AS total, SUM(entry_count) AS n
                       FROM balance_shards GROUP BY account_id) sh ON sh.account_id = a.id
            LEFT JOIN (SELECT account_id, SUM(amount_minor) AS total, COUNT(*) AS n
                       FROM entries GROUP BY account_id) s ON s.account_id = a.id
            WHERE {_tenant("a")} AND a.is_hot AND (COALESCE(sh.total, 0) <> COALESCE(s.total, 0)
                  OR COALESCE(sh.n, 0) <> COALESCE(s.n, 0))""",
        lambda r: (f"account {r[0]}", f"shards hold {r[1]}; its entries sum to {r[2]}"),
    ),
    _Check(
        "never_below_zero",
        f"""SELECT e.id, e.account_id, e.balance_after_minor FROM entries e
            JOIN accounts a ON a.id = e.account_id
            WHERE {_tenant("e")} AND a.policy = 'non_negative' AND e.balance_after_minor < 0""",
        lambda r: (f"entry {r[0]} of account {r[1]}", f"left the balance at {r[2]}"),
    ),
    _Check(
        "credit_limit",
        f"""SELECT e.id, e.account_id, e.balance_after_minor, lim FROM (
                SELECT e.id, e.account_id, e.balance_after_minor,
                       (SELECT l.credit_limit_minor FROM account_limits l
                        WHERE l.account_id = e.account_id AND l.effective_at <= e.posted_at
                        ORDER BY l.effective_at DESC, l.id DESC LIMIT 1) AS lim
                FROM entries e JOIN accounts a ON a.id = e.account_id
                WHERE {_tenant("e")} AND a.policy = 'credit_limit' AND e.amount_minor < 0) e
            WHERE e.balance_after_minor < -COALESCE(lim, 0)""",
        lambda r: (
            f"entry {r[0]} of account {r[1]}",
            f"took the balance to {r[2]}, below the limit of -{r[3]}",
        ),
    ),
    _Check(
        "held_amount",
        f"""SELECT a.id, a.held_minor, COALESCE(h.total, 0) FROM accounts a LEFT JOIN (
                SELECT h.debit_account_id AS account_id, SUM(h.amount_minor) AS total
                FROM holds h LEFT JOIN hold_resolutions r ON r.hold_id = h.id
                WHERE r.hold_id IS NULL GROUP BY h.debit_account_id) h ON h.account_id = a.id
            WHERE {_tenant("a")} AND a.held_minor <> COALESCE(h.total, 0)""",
        lambda r: (f"account {r[0]}", f"stores {r[1]} held; its open holds sum to {r[2]}"),
    ),
    _Check(
        "held_covered",
        f"""SELECT a.id, a.balance_minor, a.held_minor FROM accounts a
            WHERE {_tenant("a")} AND a.policy = 'non_negative' AND NOT a.uses_lots
              AND a.balance_minor < a.held_minor""",
        lambda r: (f"account {r[0]}", f"holds {r[2]} but has only {r[1]}"),
    ),
    _Check(
        "lots_cover_balance",
        f"""SELECT a.id, a.balance_minor, COALESCE(l.total, 0) FROM accounts a LEFT JOIN (
                SELECT account_id, SUM(remaining_minor) AS total FROM lots GROUP BY account_id
            ) l ON l.account_id = a.id
            WHERE {_tenant("a")} AND a.uses_lots AND a.balance_minor <> COALESCE(l.total, 0)""",
        lambda r: (f"account {r[0]}", f"balance {r[1]}, but its lots hold {r[2]}"),
    ),
    _Check(
        "lot_remaining",
        f"""SELECT l.id, l.amount_minor, l.remaining_minor, COALESCE(c.total, 0) FROM lots l
            LEFT JOIN (SELECT lot_id, SUM(amount_minor) AS total FROM lot_consumptions
                       GROUP BY lot_id) c ON c.lot_id = l.id
            WHERE {_tenant("l")} AND l.remaining_minor <> l.amount_minor - COALESCE(c.total, 0)""",
        lambda r: (f"lot {r[0]}", f"of {r[1]} keeps {r[2]}, but {r[3]} was taken from it"),
    ),
    _Check(
        "snapshots",
        f"""SELECT s.id, s.account_id, s.balance_minor, COALESCE(SUM(e.amount_minor), 0)
            FROM account_snapshots s
            LEFT JOIN entries e ON e.account_id = s.account_id AND e.posted_at <= s.as_of
            WHERE {_tenant("s")}
            GROUP BY s.id, s.account_id, s.balance_minor, s.entry_count
            HAVING s.balance_minor <> COALESCE(SUM(e.amount_minor), 0)
                OR s.entry_count <> COUNT(e.id)""",
        lambda r: (
            f"snapshot {r[0]} of account {r[1]}",
            f"says {r[2]}; the entries up to it sum to {r[3]}",
        ),
    ),
)


# Called after each check with (checks done, checks in all).
ProgressCallback = Callable[[int, int], None]


def verify(
    conn: Connection,
    *,
    tenant_id: int | None = None,
    limit: int = 100,
    on_progress: ProgressCallback | None = None,
) -> list[Problem]:
    """Every broken invariant (at most ``limit`` per check), for one tenant or all.

    ``on_progress``, when given, is called after each check, so long runs can show how far
    they have got.
    """
    return list(_problems(conn, tenant_id, limit, on_progress))


def _problems(
    conn: Connection, tenant_id: int | None, limit: int, on_progress: ProgressCallback | None
) -> Iterator[Problem]:
    for done, check in enumerate(CHECKS, start=1):
        rows = conn.execute(
            text(check.sql + f" LIMIT {int(limit)}"), {"tenant_id": tenant_id}
        ).all()
        for row in rows:
            where, detail = check.describe(row)
            yield Problem(check.name, where, detail)
        if on_progress is not None:
            on_progress(done, len(CHECKS))
