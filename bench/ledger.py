"""Ledger posting throughput, with pgbench on the same PostgreSQL as the baseline.

    .venv/bin/python bench/ledger.py [--seconds 15] [--clients 8] [--batch 200]

What is measured: simple two-entry transfers (the tenant's hot issuance account to one of
many customer wallets, as accruals are), each with its own idempotency key, posted
in-process through ``kopilka.ledger.posting.post_transfers``:

* SQLite: one writer (SQLite has one), batches of ``--batch`` transfers per transaction.
* PostgreSQL: ``--clients`` worker processes, each posting batches in its own transactions.
* pgbench: the built-in TPC-B-like script, the same number of clients, the same seconds,
  on the same PostgreSQL server (``pgbench_*`` tables in the same database), run in the
  same invocation right before or after the ledger figures.

Batching is how Kopilka serves high rates (offline uploads, group commit); every transfer
in a batch is still judged alone (limits, idempotency). The last line printed is one JSON
object with ``sqlite_tps``, ``pg_tps``, ``pgbench_tps`` and ``ratio_vs_pgbench``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from kopilka.core.actor import Actor
from kopilka.core.db import make_engine
from kopilka.core.errors import KopilkaError
from kopilka.core.migrate import upgrade
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_account, create_unit, system_account
from kopilka.ledger.posting import TransferSpec, post_transfers, run_transaction, simple_transfer
from kopilka.tenancy.actions import create_tenant

PG_URL = os.environ.get(
    "KOPILKA_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/kopilka_bench"
)
WALLETS = 2000
ACTOR = Actor.job("bench")


def ensure_pg_database(url: str) -> None:
    """Create the benchmark's PostgreSQL database if the server does not have it yet."""
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


def prepare(url: str) -> tuple[int, int, list[int]]:
    """A fresh schema with one tenant, its hot issuance account and many wallets."""
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)

    def setup(conn: Connection) -> tuple[int, int, list[int]]:
        tenant = create_tenant(
            conn, slug=f"bench-{uuid.uuid4().hex[:8]}", name="Bench", actor=ACTOR
        )
        create_unit(conn, tenant_id=tenant.id, code="BONUS", kind=UnitKind.POINTS, actor=ACTOR)
        issuance = system_account(
            conn, tenant_id=tenant.id, unit_code="BONUS", purpose="issuance", actor=ACTOR
        )
        wallets = [
            create_account(
                conn, tenant_id=tenant.id, unit_code="BONUS", kind="wallet", actor=ACTOR
            ).id
            for _ in range(WALLETS)
        ]
        return tenant.id, issuance.id, wallets

    result = run_transaction(engine, setup)
    # Fresh tables have no planner statistics; pgbench -i analyses its tables too.
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    engine.dispose()
    return result


def _specs(
    prefix: str, start: int, count: int, issuance: int, wallets: list[int]
) -> list[TransferSpec]:
    return [
        simple_transfer(
            f"{prefix}-{n}",
            debit_account_id=issuance,
            credit_account_id=wallets[(n * 7919) % len(wallets)],
            amount_minor=1 + n % 97,
            kind="accrual",
        )
        for n in range(start, start + count)
    ]


def post_for(
    url: str,
    tenant_id: int,
    issuance: int,
    wallets: list[int],
    seconds: float,
    batch: int,
    prefix: str,
) -> int:
    """Post batches until ``seconds`` pass; returns how many transfers were posted."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    posted = 0
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        specs = _specs(prefix, n, batch, issuance, wallets)
        n += batch
        outcomes = run_transaction(
            engine,
            partial(post_transfers, tenant_id=tenant_id, specs=specs, actor=ACTOR),
        )
        failed = [o for o in outcomes if isinstance(o, KopilkaError)]
        assert not failed, failed[:3]
        posted += len(outcomes)
    engine.dispose()
    return posted


def _worker(
    url: str,
    tenant_id: int,
    issuance: int,
    wallets: list[int],
    seconds: float,
    batch: int,
    prefix: str,
    barrier: Any,
    results: Any,
) -> None:
    barrier.wait()
    results.put(post_for(url, tenant_id, issuance, wallets, seconds, batch, prefix))


def bench_sqlite(seconds: float, batch: int) -> float:
    folder = tempfile.mkdtemp(prefix="kopilka-bench-")
    try:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        tenant_id, issuance, wallets = prepare(url)
        started = time.perf_counter()
        posted = post_for(url, tenant_id, issuance, wallets, seconds, batch, "s")
        elapsed = time.perf_counter() - started
        _verify(url, tenant_id)
        return posted / elapsed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_pg(seconds: float, batch: int, clients: int) -> float:
    ensure_pg_database(PG_URL)
    tenant_id, issuance, wallets = prepare(PG_URL)
    # A ledger in service has history and fresh planner statistics (autovacuum analyses
    # growing tables). Without them the planner, judging from empty tables, scans by
    # tenant instead of probing the idempotency-key index. So: some history, then ANALYZE.
    post_for(PG_URL, tenant_id, issuance, wallets, min(seconds, 3), batch, "warm")
    engine = make_engine(PG_URL)
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    engine.dispose()
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    results = ctx.Queue()
    workers = [
        ctx.Process(
            target=_worker,
            args=(PG_URL, tenant_id, issuance, wallets, seconds, batch, f"p{c}", barrier, results),
        )
        for c in range(clients)
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    counts = [results.get(timeout=seconds + 120) for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    _verify(PG_URL, tenant_id)
    return sum(counts) / elapsed


def _verify(url: str, tenant_id: int) -> None:
    from kopilka.ledger.verify import verify

    engine = make_engine(url)
    with engine.connect() as conn:
        problems = verify(conn, tenant_id=tenant_id)
    engine.dispose()
    assert not problems, problems[:5]


def bench_pgbench(seconds: float, clients: int) -> float:
    if shutil.which("pgbench") is None:
        raise SystemExit("pgbench is not installed (Debian: postgresql-contrib / postgresql)")
    url = make_url(PG_URL)
    conn_args = [
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
        url.database or "postgres",
    ]
    env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", "10", *conn_args], check=True, env=env, capture_output=True
    )
    out = subprocess.run(
        [
            "pgbench",
            "-n",
            "-c",
            str(clients),
            "-j",
            str(min(clients, os.cpu_count() or 1)),
            "-T",
            str(int(seconds)),
            *conn_args,
        ],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"tps = ([0-9.]+) \((?:without initial connection time|excluding)", out)
    if match is None:
        raise SystemExit(f"could not read pgbench's tps from:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--skip-pg", action="store_true", help="SQLite only")
    args = parser.parse_args()

    sqlite_tps = bench_sqlite(args.seconds, args.batch)
    print(f"sqlite: {sqlite_tps:,.0f} transfers/s (1 writer, batch {args.batch})", flush=True)
    result: dict[str, float | int | None] = {"sqlite_tps": round(sqlite_tps, 1)}
    if args.skip_pg:
        result.update(pg_tps=None, pgbench_tps=None, ratio_vs_pgbench=None)
    else:
        pg_tps = bench_pg(args.seconds, args.batch, args.clients)
        print(
            f"postgresql: {pg_tps:,.0f} transfers/s ({args.clients} clients, batch {args.batch})",
            flush=True,
        )
        pgbench_tps = bench_pgbench(args.seconds, args.clients)
        print(f"pgbench TPC-B-like: {pgbench_tps:,.0f} tps ({args.clients} clients)", flush=True)
        result.update(
            pg_tps=round(pg_tps, 1),
            pgbench_tps=round(pgbench_tps, 1),
            ratio_vs_pgbench=round(pg_tps / pgbench_tps, 2),
        )
    result.update(clients=args.clients, batch=args.batch, seconds=args.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
