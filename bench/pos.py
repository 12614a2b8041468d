"""POS gateway over HTTP on PostgreSQL, with pgbench's TPC-B as the baseline (issue 4).

    .venv/bin/python bench/pos.py [--quick] [--seconds 15] [--workers 2,3] [--connections 8,16]

What is measured, against the real server (``kopilka serve`` on a free loopback port, the
nightly scheduler off) driven by wrk with the Lua scripts in ``bench/lua/``:

* commits: ``POST /api/v1/pos/checks``, each a new check (unique check id) of a random
  card, every other one paying 1.00 point; per second, with p50/p99 latency;
* lookups: ``GET /api/v1/pos/cards/lookup`` of a random card; per second, p50/p99;
* ``GET /healthz`` (no database, no auth): what the HTTP stack alone answers, the ceiling
  of any request on this machine;
* pgbench's TPC-B-like script with as many clients as wrk has connections, on the same
  PostgreSQL server, in the same run, right after the commits;
* an offline batch of 100,000 checks: ``POST /api/v1/pos/batches`` in sequential chunks of
  the most items a request may carry, timed end to end;
* the nightly routine (``kopilka.loyalty.nightly.run_nightly``) of a tenant with 1,000,000
  cards and 3,000,000 point lots, seeded by bulk SQL as a ledger in service looks the day
  after its previous nightly run: some lots lapsed since, their purchases leaving the
  accumulation window, tiers to move down, a few cards past their date.

Every terminal request carries its own terminal key (``Authorization: Bearer kpt_…``).
Any reply that is not 2xx is an error; a run with errors is reported and is not a valid
result. Each (worker count, connection count) setting given is tried; the JSON reports
the best valid one and lists them all. ``--quick`` shrinks every size for a smoke run and
says so. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from kopilka.api.routes.pos import BatchIn
from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import make_engine
from kopilka.core.errors import KopilkaError
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_unit, system_account
from kopilka.ledger.posting import post_transfers, run_transaction, simple_transfer
from kopilka.loyalty.cards import issue_range
from kopilka.loyalty.nightly import STEPS, run_nightly
from kopilka.loyalty.programs import add_tier, create_program
from kopilka.tenancy.actions import create_tenant, create_terminal

PG_URL = os.environ.get(
    "KOPILKA_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/kopilka_bench"
)
PGBENCH_URL = os.environ.get(
    "KOPILKA_BENCH_PGBENCH_URL", "postgresql://postgres@127.0.0.1:5432/bench_pgbench"
)
BENCH_DIR = Path(__file__).resolve().parent
LUA_DIR = BENCH_DIR / "lua"
KOPILKA = Path(sys.executable).with_name("kopilka")
ACTOR = Actor.job("bench-pos")
CARD_PREFIX = "77"
CARD_WIDTH = 8
# Tiers by accumulation (RUB minor units): name, threshold, discount and accrual (bp).
TIERS = (
    ("Silver", 300_000, 300, 500),
    ("Gold", 600_000, 500, 700),
    ("Platinum", 900_000, 700, 1000),
)
OPENING_POINTS_MINOR = 100_000  # 1,000.00 points on every POS card


def _max_batch_items() -> int:
    """The most items one ``POST /pos/batches`` takes (``BatchIn.items``'s max_length)."""
    for rule in BatchIn.model_fields["items"].metadata:
        limit = getattr(rule, "max_length", None)
        if limit:
            return int(limit)
    return 1_000


# --------------------------------------------------------------------------- tools


def ensure_wrk() -> str:
    """wrk's path; installed with apt-get (Debian package ``wrk``) when missing and possible."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise SystemExit(
            "wrk is not installed and cannot be installed here (needs apt-get as root): "
            "install it (Debian/Ubuntu: apt-get install wrk) and run again"
        )
    print("wrk is missing: installing it with `apt-get install -y wrk`", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run([apt, "install", "-y", "wrk"], env=env, capture_output=True)
    if done.returncode != 0:
        subprocess.run([apt, "update"], env=env, capture_output=True)
        subprocess.run([apt, "install", "-y", "wrk"], env=env, capture_output=True)
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("apt-get could not install wrk; install it and run again")
    return found


def pgbench_path() -> str:
    found = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
    if not Path(found).exists():
        raise SystemExit("pgbench is not installed (Debian: postgresql-contrib / postgresql)")
    return found


def ensure_pg_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` if the server does not have it yet."""
    target = make_url(url)
    admin = make_engine(target.set(database="postgres").render_as_string(hide_password=False))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            ).first()
            if exists is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    finally:
        admin.dispose()


def analyze(url: str) -> None:
    """Fresh planner statistics, as autovacuum keeps them on a database in service."""
    engine = make_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def fresh_schema(url: str) -> None:
    """An empty database, migrated by ``kopilka db upgrade`` as an operator would."""
    ensure_pg_database(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    subprocess.run(
        [str(KOPILKA), "db", "upgrade"],
        env={**os.environ, "KOPILKA_DATABASE_URL": url},
        check=True,
        capture_output=True,
    )


# --------------------------------------------------------------------------- POS data


@dataclass(frozen=True, slots=True)
class PosSetup:
    tenant_id: int
    cards: int
    keys: list[str]


def _new_tenant(conn: Any, slug: str) -> tuple[int, int, int]:
    """A tenant with a BONUS unit and a program (5 %, tiers, 365-day lots and window)."""
    tenant = create_tenant(conn, slug=slug, name="Bench POS", actor=ACTOR)
    unit = create_unit(
        conn, tenant_id=tenant.id, code="BONUS", kind=UnitKind.POINTS, exponent=2, actor=ACTOR
    )
    program = create_program(
        conn,
        tenant_id=tenant.id,
        name="Bench",
        unit_code="BONUS",
        actor=ACTOR,
        accrual_bp=500,
        lifetime_days=365,
        max_share_bp=5_000,
        accumulation_window_days=365,
    )
    for name, threshold, discount, accrual in TIERS:
        add_tier(
            conn,
            tenant_id=tenant.id,
            program_id=program.id,
            name=name,
            threshold_minor=threshold,
            discount_bp=discount,
            accrual_bp=accrual,
            actor=ACTOR,
        )
    system_account(conn, tenant_id=tenant.id, unit_code="BONUS", purpose="expired", actor=ACTOR)
    return tenant.id, program.id, unit.id


def seed_pos(url: str, cards: int, terminals: int) -> PosSetup:
    """A tenant, its terminals and ``cards`` cards (issued in ranges), each with points."""
    engine = make_engine(url)

    def setup(conn: Any) -> tuple[int, list[str]]:
        tenant_id, program_id, _ = _new_tenant(conn, f"bench-pos-{uuid.uuid4().hex[:8]}")
        keys = [
            create_terminal(conn, tenant_id=tenant_id, name=f"POS {n}", actor=ACTOR)[1]
            for n in range(1, terminals + 1)
        ]
        for first in range(1, cards + 1, 100_000):
            issue_range(
                conn,
                tenant_id=tenant_id,
                program_id=program_id,
                prefix=CARD_PREFIX,
                first=first,
                last=min(first + 99_999, cards),
                width=CARD_WIDTH,
                check_digit=False,
                actor=ACTOR,
            )
        return tenant_id, keys

    tenant_id, keys = run_transaction(engine, setup)
    # Opening balances through the ledger: one accrual a card, in batches.
    with engine.connect() as conn:
        wallets = list(
            conn.execute(
                text("SELECT account_id FROM cards WHERE tenant_id = :t ORDER BY id"),
                {"t": tenant_id},
            ).scalars()
        )
        issuance = system_account(
            conn, tenant_id=tenant_id, unit_code="BONUS", purpose="issuance", actor=ACTOR
        ).id
    expires = utcnow() + timedelta(days=365)
    for start in range(0, len(wallets), 1_000):
        specs = [
            simple_transfer(
                f"bench-open:{wallet}",
                debit_account_id=issuance,
                credit_account_id=wallet,
                amount_minor=OPENING_POINTS_MINOR,
                kind="accrual",
                expires_at=expires,
            )
            for wallet in wallets[start : start + 1_000]
        ]
        outcomes = run_transaction(
            engine,
            lambda conn, specs=specs: post_transfers(
                conn, tenant_id=tenant_id, specs=specs, actor=ACTOR
            ),
        )
        failed = [o for o in outcomes if isinstance(o, KopilkaError)]
        assert not failed, failed[:3]
    engine.dispose()
    return PosSetup(tenant_id, cards, keys)


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``kopilka serve`` as a subprocess on a free loopback port."""

    def __init__(self, url: str, workers: int, log_dir: Path, log_level: str) -> None:
        self.workers = workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = (log_dir / f"serve-{workers}w-{self.port}.log").open("w")
        env = {
            **os.environ,
            "KOPILKA_DATABASE_URL": url,
            "KOPILKA_NIGHTLY_SCHEDULER": "false",
            "KOPILKA_LOG_LEVEL": log_level,
        }
        self.process = subprocess.Popen(
            [
                str(KOPILKA),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--no-nightly",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server stopped at start; see {self.log.name}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise SystemExit(f"the server did not become ready; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# --------------------------------------------------------------------------- wrk, pgbench


@dataclass(frozen=True, slots=True)
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    first_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "requests": self.requests,
            "errors": self.errors,
        }


def run_wrk(
    wrk: str,
    script: str,
    server: Server,
    setup: PosSetup,
    keys_file: Path,
    *,
    seconds: float,
    threads: int,
    connections: int,
) -> Load:
    env = {
        **os.environ,
        "BENCH_LUA_DIR": str(LUA_DIR),
        "BENCH_KEYS": str(keys_file),
        "BENCH_CARD_PREFIX": CARD_PREFIX,
        "BENCH_CARD_FIRST": "1",
        "BENCH_CARD_COUNT": str(setup.cards),
        "BENCH_CARD_WIDTH": str(CARD_WIDTH),
        "BENCH_RUN_ID": uuid.uuid4().hex[:10],
    }
    out = subprocess.run(
        [
            wrk,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA_DIR / script),
            server.base,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"^WRK_RESULT (\{.*\})$", out, re.MULTILINE)
    if match is None:
        raise SystemExit(f"could not read wrk's result from:\n{out}")
    r = json.loads(match.group(1))
    first = re.search(r"^WRK_FIRST_ERROR (.*)$", out, re.MULTILINE)
    errors = (
        r["non2xx"]
        + r["connect_errors"]
        + r["read_errors"]
        + r["write_errors"]
        + r["timeouts"]
        + max(0, r["requests"] - r["replies"])
    )
    return Load(
        rps=r["requests"] / (r["duration_us"] / 1e6),
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        requests=r["requests"],
        errors=errors,
        first_error=first.group(1) if first else None,
    )


def _pg_args(url: str) -> tuple[list[str], dict[str, str]]:
    parsed = make_url(url)
    args = [
        "-h",
        parsed.host or "127.0.0.1",
        "-p",
        str(parsed.port or 5432),
        "-U",
        parsed.username or "postgres",
        parsed.database or "postgres",
    ]
    env = {**os.environ, **({"PGPASSWORD": parsed.password} if parsed.password else {})}
    return args, env


def pgbench_init(pgbench: str) -> None:
    ensure_pg_database(PGBENCH_URL)
    args, env = _pg_args(PGBENCH_URL)
    subprocess.run(
        [pgbench, "-i", "-q", "-s", "10", *args], check=True, env=env, capture_output=True
    )


def run_pgbench(pgbench: str, clients: int, seconds: float) -> tuple[float, float]:
    """TPC-B-like tps and average latency (ms) with ``clients`` clients."""
    args, env = _pg_args(PGBENCH_URL)
    out = subprocess.run(
        [
            pgbench,
            "-n",
            "-c",
            str(clients),
            "-j",
            str(min(clients, os.cpu_count() or 1)),
            "-T",
            str(max(1, round(seconds))),
            *args,
        ],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    tps = re.search(r"tps = ([0-9.]+) \((?:without initial connection time|excluding)", out)
    latency = re.search(r"latency average = ([0-9.]+) ms", out)
    if tps is None:
        raise SystemExit(f"could not read pgbench's tps from:\n{out}")
    return float(tps.group(1)), float(latency.group(1)) if latency else 0.0


# --------------------------------------------------------------------------- offline batch


def run_batch(server: Server, setup: PosSetup, checks: int) -> tuple[float, int]:
    """``checks`` offline checks in sequential requests of the most items one may carry;
    returns (seconds end to end, items per request)."""
    per_request = _max_batch_items()
    run = uuid.uuid4().hex[:8]
    closed = (utcnow() - timedelta(hours=2)).isoformat()
    state = 12345
    bodies = []
    for start in range(0, checks, per_request):
        items = []
        for n in range(start, min(start + per_request, checks)):
            state = (state * 1103515245 + 12345) % 2**31
            card = f"{CARD_PREFIX}{1 + state % setup.cards:0{CARD_WIDTH}d}"
            items.append(
                {
                    "check_id": f"off-{run}-{n}",
                    "card": card,
                    "lines": [f"{100 + state % 2900}.{state % 100:02d}", "45.60"],
                    "points": "1.00" if n % 5 == 0 else "0",
                    "closed_at": closed,
                }
            )
        bodies.append(json.dumps({"items": items}))
    headers = {
        "Authorization": f"Bearer {setup.keys[0]}",
        "Content-Type": "application/json",
    }
    applied = 0
    with httpx.Client(base_url=server.base, timeout=900) as client:
        started = time.perf_counter()
        for body in bodies:
            reply = client.post("/api/v1/pos/batches", content=body, headers=headers)
            if reply.status_code != 200:
                raise SystemExit(f"batch upload failed: {reply.status_code} {reply.text[:500]}")
            result = reply.json()
            if result["refused"] or result["duplicates"]:
                bad = [i for i in result["items"] if i["status"] != "applied"][:3]
                raise SystemExit(f"batch items not applied: {bad}")
            applied += result["applied"]
            print(
                f"  batch: {applied:,} of {checks:,} applied, "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
        elapsed = time.perf_counter() - started
    assert applied == checks, (applied, checks)
    return elapsed, per_request


# --------------------------------------------------------------------------- nightly


NIGHTLY_SEED_SQL = (
    # Cards with their wallets: ids drawn from the tables' own sequences.
    """CREATE TEMP TABLE seed_card ON COMMIT DROP AS
       SELECT g AS n,
              nextval(pg_get_serial_sequence('accounts', 'id')) AS account_id,
              nextval(pg_get_serial_sequence('cards', 'id')) AS card_id,
              :prefix || lpad(g::text, :width, '0') AS number,
              CASE WHEN random() < :expired_share THEN CAST(:now AS timestamptz)
                   - interval '1 hour' END AS expires_at
       FROM generate_series(:first, :last) g""",
    # Lots, one per purchase; a share lapsed since the previous nightly run (yesterday),
    # the others bought within the last 364 days. Points are 5 % of the purchase.
    """CREATE TEMP TABLE seed_lot0 ON COMMIT DROP AS
       SELECT c.account_id, c.card_id,
              nextval(pg_get_serial_sequence('transfers', 'id')) AS transfer_id,
              (100 + floor(random() * 19900))::bigint AS amount,
              CASE WHEN random() < :lapsed_share
                   THEN CAST(:now AS timestamptz) - interval '365 days'
                        - random() * interval '23 hours'
                   ELSE CAST(:now AS timestamptz) - interval '1 day'
                        - random() * interval '363 days'
              END AS at
       FROM seed_card c CROSS JOIN generate_series(1, :lots_per_card) k""",
    """CREATE TEMP TABLE seed_lot ON COMMIT DROP AS
       SELECT l.*,
              ROW_NUMBER() OVER w AS seq,
              SUM(amount) OVER w AS balance_after
       FROM seed_lot0 l
       WINDOW w AS (PARTITION BY account_id ORDER BY at, transfer_id
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)""",
    """CREATE TEMP TABLE seed_sum ON COMMIT DROP AS
       SELECT account_id, card_id, SUM(amount) AS balance, COUNT(*) AS n,
              MIN(at) AS first_at, MAX(at) AS last_at
       FROM seed_lot GROUP BY account_id, card_id""",
    """INSERT INTO accounts (id, tenant_id, unit_id, code, name, kind, owner_type, owner_id,
                             policy, credit_limit_minor, uses_lots, is_hot, balance_minor,
                             held_minor, debit_total_minor, entry_count, last_posted_at,
                             created_at)
       SELECT c.account_id, :tenant, :unit, NULL, 'Card ' || c.number, 'wallet', 'card',
              c.number, 'non_negative', 0, true, false, s.balance, 0, 0, s.n, s.last_at,
              s.first_at - interval '1 day'
       FROM seed_card c JOIN seed_sum s ON s.account_id = c.account_id""",
    # Accumulation as the previous nightly run left it: all purchases then in the window
    # (20 x the points); the tier it reached.
    """INSERT INTO cards (id, tenant_id, program_id, number, status, issued_at, expires_at,
                          account_id, accumulation_minor, checks_count, tier_id, debt_minor,
                          created_at)
       SELECT c.card_id, :tenant, :program, c.number, 'active', s.first_at - interval '1 day',
              c.expires_at, c.account_id, 20 * s.balance, s.n,
              (SELECT t.id FROM loyalty_tiers t WHERE t.program_id = :program
                 AND t.threshold_minor <= 20 * s.balance
               ORDER BY t.threshold_minor DESC LIMIT 1),
              0, s.first_at - interval '1 day'
       FROM seed_card c JOIN seed_sum s ON s.account_id = c.account_id""",
    """INSERT INTO transfers (id, tenant_id, idempotency_key, request_hash, kind, description,
                              posted_at, actor_type, actor_id)
       SELECT transfer_id, :tenant, 'bench-seed:' || transfer_id,
              md5(transfer_id::text) || md5(amount::text), 'accrual', '5 % of a purchase',
              at, 'job', 'bench-pos'
       FROM seed_lot""",
    """INSERT INTO entries (tenant_id, transfer_id, account_id, unit_id, amount_minor,
                            posted_at, account_seq, balance_after_minor, debit_total_after_minor)
       SELECT :tenant, transfer_id, :issuance, :unit, -amount, at, NULL, NULL, NULL
       FROM seed_lot
       UNION ALL
       SELECT :tenant, transfer_id, account_id, :unit, amount, at, seq, balance_after, 0
       FROM seed_lot""",
    """INSERT INTO lots (tenant_id, account_id, transfer_id, amount_minor, remaining_minor,
                         available_at, expires_at, created_at)
       SELECT :tenant, account_id, transfer_id, amount, amount, at, at + interval '365 days', at
       FROM seed_lot""",
    """INSERT INTO card_purchases (tenant_id, card_id, pos_check_id, amount_minor, checks, at)
       SELECT :tenant, card_id, NULL, 20 * amount, 1, at FROM seed_lot""",
    """UPDATE balance_shards
       SET balance_minor = balance_minor - t.total,
           debit_total_minor = debit_total_minor + t.total,
           entry_count = entry_count + t.n
       FROM (SELECT SUM(amount) AS total, COUNT(*) AS n FROM seed_lot) t
       WHERE account_id = :issuance AND shard = 0""",
)


@dataclass(frozen=True, slots=True)
class NightlyResult:
    seconds: float
    seed_seconds: float
    steps: dict[str, float]
    report: dict[str, int]
    verify_seconds: float | None
    lots: int


def seed_nightly(
    engine: Engine, cards: int, lots_per_card: int, lapsed_share: float, now: datetime
) -> int:
    """A tenant with ``cards`` cards and ``lots_per_card`` lots each, by bulk SQL."""

    def setup(conn: Any) -> tuple[int, int, int, int]:
        tenant_id, program_id, unit_id = _new_tenant(conn, f"bench-night-{uuid.uuid4().hex[:8]}")
        issuance = system_account(
            conn, tenant_id=tenant_id, unit_code="BONUS", purpose="issuance", actor=ACTOR
        ).id
        return tenant_id, program_id, unit_id, issuance

    tenant_id, program_id, unit_id, issuance = run_transaction(engine, setup)
    chunk = 200_000
    for first in range(1, cards + 1, chunk):
        params = {
            "tenant": tenant_id,
            "program": program_id,
            "unit": unit_id,
            "issuance": issuance,
            "prefix": "55",
            "width": 9,
            "first": first,
            "last": min(first + chunk - 1, cards),
            "lots_per_card": lots_per_card,
            "lapsed_share": lapsed_share,
            "expired_share": 0.002,
            "now": now,
        }
        with engine.begin() as conn:
            # Seeding only: rows are consistent by construction (`kopilka ledger verify`
            # checks them in the quick run), so skip per-row FK and trigger work.
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
            conn.execute(text("SELECT setseed(:s)"), {"s": (first % 1000) / 1000})
            for sql in NIGHTLY_SEED_SQL:
                conn.execute(text(sql), params)
        print(f"  seeded {min(first + chunk - 1, cards):,} cards", flush=True)
    return tenant_id


def bench_nightly(
    url: str, cards: int, lots_per_card: int, lapsed_share: float, verify: bool
) -> NightlyResult:
    engine = make_engine(url)
    now = utcnow()
    started = time.perf_counter()
    tenant_id = seed_nightly(engine, cards, lots_per_card, lapsed_share, now)
    engine.dispose()
    analyze(url)
    seed_seconds = time.perf_counter() - started
    print(f"nightly data seeded in {seed_seconds:.0f} s", flush=True)

    engine = make_engine(url)
    marks: dict[str, float] = {}
    last = [time.perf_counter()]

    def progress(done: int, total: int, what: str) -> None:
        moment = time.perf_counter()
        if done > 0:
            marks[STEPS[done - 1]] = round(moment - last[0], 2)
        last[0] = moment

    started = time.perf_counter()
    report = run_nightly(engine, tenant_id=tenant_id, actor=ACTOR, now=now, progress=progress)
    seconds = time.perf_counter() - started
    verify_seconds = None
    if verify:
        from kopilka.ledger.verify import verify as verify_ledger

        began = time.perf_counter()
        with engine.connect() as conn:
            problems = verify_ledger(conn, tenant_id=tenant_id)
        verify_seconds = time.perf_counter() - began
        assert not problems, [str(p) for p in problems[:5]]
        print(f"ledger verify of the nightly tenant: ok in {verify_seconds:.0f} s", flush=True)
    engine.dispose()
    return NightlyResult(
        seconds,
        seed_seconds,
        marks,
        {
            "lots_expired": report.lots_expired,
            "holds_expired": report.holds_expired,
            "cards_aged": report.cards_aged,
            "tiers_moved": report.tiers_moved,
            "cards_expired": report.cards_expired,
        },
        verify_seconds,
        cards * lots_per_card,
    )


# --------------------------------------------------------------------------- main


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--seconds", type=float, help="per wrk run (default 15, quick 4)")
    parser.add_argument("--workers", type=_ints, help="uvicorn workers to try (default 2,3)")
    parser.add_argument(
        "--connections", type=_ints, help="wrk connections = pgbench clients to try (8,16)"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--cards", type=int, help="cards the terminals use (100,000)")
    parser.add_argument("--terminals", type=int, default=16)
    parser.add_argument("--batch-checks", type=int, help="offline checks (100,000)")
    parser.add_argument("--nightly-cards", type=int, help="cards of the nightly (1,000,000)")
    parser.add_argument("--lots-per-card", type=int, default=3)
    parser.add_argument(
        "--lapsed-share",
        type=float,
        default=0.01,
        help="share of lots lapsed since the previous nightly run",
    )
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--log-level", default="INFO", help="the server's KOPILKA_LOG_LEVEL")
    parser.add_argument("--skip-nightly", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    seconds = args.seconds or (4 if quick else 15)
    workers_list = args.workers or ([2] if quick else [2, 3])
    connections_list = args.connections or ([8] if quick else [8, 16])
    cards = args.cards or (5_000 if quick else 100_000)
    batch_checks = args.batch_checks or (10_000 if quick else 100_000)
    nightly_cards = args.nightly_cards or (50_000 if quick else 1_000_000)
    verify = quick if args.verify is None else args.verify

    wrk = ensure_wrk()
    pgbench = pgbench_path()
    log_dir = Path(tempfile.mkdtemp(prefix="kopilka-bench-pos-"))
    print(f"cpus: {os.cpu_count()}; server logs in {log_dir}", flush=True)

    started = time.perf_counter()
    fresh_schema(PG_URL)
    setup = seed_pos(PG_URL, cards, args.terminals)
    keys_file = log_dir / "keys.txt"
    keys_file.write_text("\n".join(setup.keys) + "\n")
    print(
        f"seeded {cards:,} cards with points and {args.terminals} terminals "
        f"in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    pgbench_init(pgbench)

    tried: list[dict[str, Any]] = []
    server: Server | None = None
    warmed = False
    try:
        for workers in workers_list:
            server = Server(PG_URL, workers, log_dir, args.log_level)
            if not warmed:
                # History and fresh statistics first, as in a database in service.
                run_wrk(
                    wrk, "commit.lua", server, setup, keys_file, seconds=3, threads=1, connections=4
                )
                analyze(PG_URL)
                warmed = True
            run_wrk(
                wrk, "lookup.lua", server, setup, keys_file, seconds=1, threads=1, connections=4
            )
            for connections in connections_list:
                threads = min(args.threads, connections)
                kw = {"seconds": seconds, "threads": threads, "connections": connections}
                commits = run_wrk(wrk, "commit.lua", server, setup, keys_file, **kw)
                pg_tps, pg_latency = run_pgbench(pgbench, connections, seconds)
                lookups = run_wrk(wrk, "lookup.lua", server, setup, keys_file, **kw)
                ceiling = run_wrk(wrk, "healthz.lua", server, setup, keys_file, **kw)
                one = {
                    "workers": workers,
                    "connections": connections,
                    "wrk_threads": threads,
                    "commit": commits.as_dict(),
                    "lookup": lookups.as_dict(),
                    "healthz": ceiling.as_dict(),
                    "pgbench_tps": round(pg_tps, 1),
                    "pgbench_latency_ms": pg_latency,
                    "commit_ratio_vs_pgbench": round(commits.rps / pg_tps, 3),
                    "valid": commits.errors == 0 and lookups.errors == 0,
                }
                tried.append(one)
                print(
                    f"{workers} workers, {connections} connections: "
                    f"commits {commits.rps:,.0f}/s p50 {commits.p50_ms:.1f} ms "
                    f"p99 {commits.p99_ms:.1f} ms ({commits.errors} errors); "
                    f"lookups {lookups.rps:,.0f}/s p50 {lookups.p50_ms:.1f} ms "
                    f"p99 {lookups.p99_ms:.1f} ms ({lookups.errors} errors); "
                    f"pgbench {pg_tps:,.0f} tps; /healthz {ceiling.rps:,.0f}/s",
                    flush=True,
                )
                for load in (commits, lookups):
                    if load.first_error:
                        print(f"  first error: {load.first_error}", flush=True)
            if workers != workers_list[-1]:
                server.stop()
                server = None
        assert server is not None
        batch_s, per_request = run_batch(server, setup, batch_checks)
        print(
            f"offline batch: {batch_checks:,} checks in {batch_s:.1f} s "
            f"({batch_checks / batch_s:,.0f}/s, {per_request:,} a request)",
            flush=True,
        )
        batch_workers = server.workers
    finally:
        if server is not None:
            server.stop()

    nightly = None
    if not args.skip_nightly:
        nightly = bench_nightly(
            PG_URL, nightly_cards, args.lots_per_card, args.lapsed_share, verify
        )
        print(
            f"nightly: {nightly_cards:,} cards, {nightly.lots:,} lots in "
            f"{nightly.seconds:.1f} s; steps {nightly.steps}; {nightly.report}",
            flush=True,
        )

    valid = [t for t in tried if t["valid"]]
    best = max(valid or tried, key=lambda t: t["commit_ratio_vs_pgbench"])
    result: dict[str, Any] = {
        "quick": quick,
        "valid": bool(valid),
        "commit_tps": best["commit"]["rps"],
        "commit_p50_ms": best["commit"]["p50_ms"],
        "commit_p99_ms": best["commit"]["p99_ms"],
        "commit_errors": best["commit"]["errors"],
        "pgbench_tps": best["pgbench_tps"],
        "commit_ratio_vs_pgbench": best["commit_ratio_vs_pgbench"],
        "lookup_rps": best["lookup"]["rps"],
        "lookup_p50_ms": best["lookup"]["p50_ms"],
        "lookup_p99_ms": best["lookup"]["p99_ms"],
        "lookup_errors": best["lookup"]["errors"],
        # The HTTP stack alone (no database, no auth), same workers and connections.
        "healthz_rps": best["healthz"]["rps"],
        "healthz_p99_ms": best["healthz"]["p99_ms"],
        "batch_checks": batch_checks,
        "batch_100k_s": round(batch_s * 100_000 / batch_checks, 1),
        "batch_s": round(batch_s, 1),
        "batch_items_per_request": per_request,
        "batch_workers": batch_workers,
        "nightly_cards": nightly_cards if nightly else None,
        "nightly_lots": nightly.lots if nightly else None,
        "nightly_s": round(nightly.seconds, 1) if nightly else None,
        "nightly_1m_s": round(nightly.seconds * 1_000_000 / nightly_cards, 1) if nightly else None,
        "nightly_steps_s": nightly.steps if nightly else None,
        "nightly_report": nightly.report if nightly else None,
        "nightly_seed_s": round(nightly.seed_seconds) if nightly else None,
        "nightly_verify_s": round(nightly.verify_seconds, 1)
        if nightly and nightly.verify_seconds is not None
        else None,
        "workers": best["workers"],
        "connections": best["connections"],
        "pgbench_clients": best["connections"],
        "wrk_threads": best["wrk_threads"],
        "seconds": seconds,
        "cards": cards,
        "terminals": args.terminals,
        "cpus": os.cpu_count(),
        "settings_tried": tried,
    }
    if quick:
        result["note"] = "quick: sizes shrunk; batch_100k_s and nightly_1m_s are scaled linearly"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
