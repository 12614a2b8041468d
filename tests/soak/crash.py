"""Crash safety (issue 9a): the server is SIGKILLed and restarted at random under a POS load.

    .venv/bin/python -m tests.soak.crash                  # 25 kills, 8 terminals, 1 worker
    .venv/bin/python -m tests.soak.crash --kills 40 --workers 2 --clients 12

Against ``kopilka serve`` (a subprocess, in a process group of its own) on PostgreSQL
(``--database-url``, default ``KOPILKA_SOAK_DATABASE_URL`` or the local ``kopilka_soak``,
whose schema is dropped and migrated afresh): one client thread per terminal commits
checks on a few shared cards (earning points, often spending them) and refunds some of
its acknowledged checks, whole or half. Each operation has its own key (the check id, the
refund id; also sent as ``Idempotency-Key``) and is retried with the same key and body on
no answer or 5xx until acknowledged or ``--give-up`` seconds pass. A killer thread waits
``--min-gap``..``--max-gap`` seconds, SIGKILLs the whole process group, starts the server
again and waits for ``/healthz``, ``--kills`` times.

Afterwards: ``kopilka ledger verify`` exits 0; every acknowledged operation is in the
database exactly once, as its reply said, with all its transfers and entries; nothing
refused is; nothing never acknowledged is there half; no row or transfer is made by no
operation; every card's balance is its opening plus what the operations moved (and the sum
of its entries). Prints the figures; exits 1 when a rule is broken.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kopilka.core.db import make_engine

from .common import (
    SOAK_URL,
    Audit,
    KopilkaServer,
    PosLoad,
    audit_pos,
    audit_rows,
    fresh_schema,
    ledger_verify,
    make_pos_world,
    report,
    seconds_summary,
)


@dataclass
class CrashResult:
    audit: Audit
    kills: int
    verify_code: int
    verify_output: str
    elapsed: float
    restarts: list[float] = field(default_factory=list)
    server_errors: int = 0  # 5xx other than 503: a bug, whatever the crash

    @property
    def ok(self) -> bool:
        return self.audit.broken == 0 and self.verify_code == 0 and self.server_errors == 0

    def rows(self) -> list[tuple[str, object]]:
        return [
            ("kills survived", self.kills),
            ("restart to /healthz", seconds_summary(self.restarts)),
            *audit_rows(self.audit),
            ("5xx other than 503", self.server_errors),
            ("ledger verify", f"exit {self.verify_code}: {self.verify_output}"),
            ("elapsed", f"{self.elapsed:.1f} s"),
            ("result", "OK" if self.ok else "BROKEN"),
        ]


def run(
    url: str,
    *,
    kills: int = 25,
    clients: int = 8,
    cards: int = 4,
    workers: int = 1,
    min_gap: float = 0.5,
    max_gap: float = 3.0,
    give_up: float = 90.0,
    seed: int | None = None,
    log_dir: Path | None = None,
    settle: float = 2.0,
) -> CrashResult:
    """Load, kill ``kills`` times, settle, stop the clients, audit. The database at ``url``
    must be migrated; the run makes a tenant of its own."""
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="kopilka-crash-"))
    began = time.monotonic()
    engine = make_engine(url, pool_size=2, max_overflow=2)
    try:
        world = make_pos_world(engine, terminals=clients, cards_count=cards, opening_minor=5_000_00)
        server = KopilkaServer(url, workers=workers, log_path=log_dir / "serve.log")
        server.start()
        load = PosLoad(server.base, world, clients=clients, seed=seed, give_up_after=give_up)
        done = 0
        restarts: list[float] = []
        killer_error: list[BaseException] = []

        def killer() -> None:
            nonlocal done
            try:
                for _ in range(kills):
                    time.sleep(rng.uniform(min_gap, max_gap))
                    server.kill()
                    done += 1
                    time.sleep(rng.uniform(0.0, 0.3))  # down a moment, sometimes
                    restarts.append(server.start())
            except BaseException as error:
                killer_error.append(error)

        try:
            load.start()
            thread = threading.Thread(target=killer, name="killer", daemon=True)
            thread.start()
            thread.join()
            time.sleep(settle)  # everything in flight gets its answer
            load.stop()
        finally:
            server.stop()
        if killer_error:
            raise killer_error[0]
        audit = audit_pos(engine, world, load.ops)
    finally:
        engine.dispose()
    code, output = ledger_verify(url, world.slug)
    server_errors = sum(
        1
        for op in load.ops
        for a in op.attempts
        if a.status is not None and a.status >= 500 and a.status != 503
    )
    result = CrashResult(
        audit=audit,
        kills=done,
        verify_code=code,
        verify_output=output,
        elapsed=time.monotonic() - began,
        restarts=restarts,
        server_errors=server_errors,
    )
    result.audit.problems.append(f"seed {seed}; server log {server.log_path}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak.crash", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--database-url", default=SOAK_URL, help="dropped and migrated afresh")
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--clients", type=int, default=8, help="terminals, one thread each")
    parser.add_argument("--cards", type=int, default=4, help="cards the terminals share")
    parser.add_argument("--workers", type=int, default=1, help="kopilka serve --workers")
    parser.add_argument("--min-gap", type=float, default=0.5, help="seconds between kills, least")
    parser.add_argument("--max-gap", type=float, default=3.0, help="seconds between kills, most")
    parser.add_argument("--give-up", type=float, default=90.0, help="seconds an op is retried")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep-schema", action="store_true", help="do not drop and migrate")
    args = parser.parse_args(argv)
    if not args.keep_schema:
        fresh_schema(args.database_url)
    result = run(
        args.database_url,
        kills=args.kills,
        clients=args.clients,
        cards=args.cards,
        workers=args.workers,
        min_gap=args.min_gap,
        max_gap=args.max_gap,
        give_up=args.give_up,
        seed=args.seed,
    )
    return report(
        f"crash safety: {args.kills} SIGKILLs, {args.clients} terminals, {args.workers} worker(s)",
        result.rows(),
        result.audit.problems,
        result.ok,
    )


if __name__ == "__main__":
    sys.exit(main())
