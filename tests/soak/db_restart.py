"""Database faults (issue 9b): PostgreSQL stopped and started again under a POS load.

    .venv/bin/python -m tests.soak.db_restart                 # 4 restarts, fast and immediate
    .venv/bin/python -m tests.soak.db_restart --restarts 8 --down 10 --modes immediate

A private PostgreSQL 15 cluster (initdb into a temporary directory, a free loopback port;
as root its tools run as the ``postgres`` user) holds a fresh, migrated database, so the
machine's shared server is never touched. ``kopilka serve`` (a subprocess, started once)
serves it; one client thread per terminal commits checks and refunds, each operation
retried with its key on no answer or 5xx until acknowledged; a probe asks ``/readyz`` and
looks a card up. Each restart stops the cluster (``pg_ctl stop -m fast``: sessions
terminated, clean shutdown; or ``-m immediate``: every PostgreSQL process killed, crash
recovery at the start), keeps it down ``--down`` seconds, starts it again and waits
``--between`` seconds.

Rules: while PostgreSQL is down every request is answered (never a dropped connection)
with 503 problem+json ``service_unavailable`` and a ``Retry-After``, and fast (p99 under
``--fail-fast-limit`` seconds); once it is up, every client succeeds again within
``--recovery-limit`` seconds with the same server process (no restart of Kopilka); at the
end ``kopilka ledger verify`` exits 0 and the audit of ``tests.soak.crash`` holds (every
acknowledged operation exactly once, nothing half-written). Prints the figures; exits 1
when a rule is broken.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kopilka.core.db import make_engine

from .common import (
    Attempt,
    Audit,
    KopilkaServer,
    Op,
    PosLoad,
    PosWorld,
    audit_pos,
    audit_rows,
    fresh_schema,
    ledger_verify,
    make_pos_world,
    percentile,
    private_cluster,
    report,
    seconds_summary,
)


@dataclass
class Window:
    mode: str
    stopping: float  # pg_ctl stop began
    down: float  # pg_ctl stop returned: PostgreSQL is gone
    starting: float  # pg_ctl start began
    up: float  # pg_ctl start returned: it takes connections


class Probe:
    """Asks ``/readyz`` and looks a card up, turn about, every ``every`` seconds."""

    def __init__(self, base: str, world: PosWorld, every: float = 0.25) -> None:
        self.base = base
        self.world = world
        self.every = every
        self.attempts: list[tuple[str, Attempt]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        headers = {"Authorization": f"Bearer {self.world.keys[0]}"}
        paths = ("/readyz", f"/api/v1/pos/cards/lookup?number={self.world.cards[0]}")
        turn = 0
        with httpx.Client(base_url=self.base, timeout=httpx.Timeout(15.0, connect=3.0)) as http:
            while not self._stop.is_set():
                path = paths[turn % 2]
                turn += 1
                began = time.monotonic()
                try:
                    response = http.get(path, headers=headers)
                except httpx.TransportError as error:
                    attempt = Attempt(
                        began, time.monotonic() - began, None, error=type(error).__name__
                    )
                else:
                    problem = response.headers.get("content-type", "").startswith(
                        "application/problem+json"
                    )
                    body = response.json() if problem else {}
                    attempt = Attempt(
                        began,
                        time.monotonic() - began,
                        response.status_code,
                        code=body.get("code") if isinstance(body, dict) else None,
                        retry_after=response.headers.get("retry-after"),
                        problem_json=problem,
                    )
                self.attempts.append((path.split("?")[0], attempt))
                time.sleep(self.every)


@dataclass
class RestartResult:
    audit: Audit
    windows: list[Window]
    verify_code: int
    verify_output: str
    elapsed: float
    down_latencies: list[float] = field(default_factory=list)
    down_outcomes: Counter[str] = field(default_factory=Counter)
    down_bad: int = 0  # answered while down with anything but 503 service_unavailable
    no_retry_after: int = 0
    recovery_first: list[float] = field(default_factory=list)  # up -> first success
    recovery_all: list[float] = field(default_factory=list)  # up -> every client succeeded
    unrecovered: int = 0
    after_up_503: int = 0
    server_restarted: bool = False
    server_errors: int = 0  # 5xx other than 503
    fail_fast_limit: float = 2.0
    recovery_limit: float = 10.0

    @property
    def ok(self) -> bool:
        return (
            self.audit.broken == 0
            and self.verify_code == 0
            and self.down_bad == 0
            and self.no_retry_after == 0
            and bool(self.down_latencies)
            and percentile(self.down_latencies, 0.99) < self.fail_fast_limit
            and self.unrecovered == 0
            and all(r < self.recovery_limit for r in self.recovery_all)
            and not self.server_restarted
            and self.server_errors == 0
        )

    def rows(self) -> list[tuple[str, object]]:
        return [
            ("PostgreSQL restarts", ", ".join(w.mode for w in self.windows)),
            (
                "down (stop returned .. start began)",
                seconds_summary([w.starting - w.down for w in self.windows]),
            ),
            ("requests while down", sum(self.down_outcomes.values())),
            ("  answered", ", ".join(f"{k}: {v}" for k, v in sorted(self.down_outcomes.items()))),
            ("  not 503 service_unavailable", self.down_bad),
            ("  503 without Retry-After", self.no_retry_after),
            ("  time to fail", seconds_summary(self.down_latencies)),
            ("PostgreSQL up -> first success", seconds_summary(self.recovery_first)),
            ("PostgreSQL up -> every client ok", seconds_summary(self.recovery_all)),
            ("clients never recovered", self.unrecovered),
            ("503 after PostgreSQL was up", self.after_up_503),
            ("Kopilka restarted", "yes" if self.server_restarted else "no (one process)"),
            *audit_rows(self.audit),
            ("5xx other than 503", self.server_errors),
            ("ledger verify", f"exit {self.verify_code}: {self.verify_output}"),
            ("elapsed", f"{self.elapsed:.1f} s"),
            ("result", "OK" if self.ok else "BROKEN"),
        ]


def _measure(
    result: RestartResult, windows: list[Window], ops: list[Op], probes: list[tuple[str, Attempt]]
) -> None:
    attempts = [(f"op{op.terminal}", a) for op in ops for a in op.attempts]
    attempts += [(f"probe{path}", a) for path, a in probes]
    for _, a in attempts:
        if a.status is not None and a.status >= 500 and a.status != 503:
            result.server_errors += 1
    for n, w in enumerate(windows):
        until = windows[n + 1].stopping if n + 1 < len(windows) else float("inf")
        for _, a in attempts:
            if not (w.down <= a.started and a.started + a.seconds <= w.starting):
                continue
            label = a.error or f"{a.status} {a.code or ''}".strip()
            result.down_outcomes[label] += 1
            result.down_latencies.append(a.seconds)
            if a.status != 503 or a.code != "service_unavailable" or not a.problem_json:
                result.down_bad += 1
            elif not a.retry_after:
                result.no_retry_after += 1
        clients = {who for who, _ in attempts if who.startswith("op")}
        firsts: dict[str, float] = {}
        for who, a in sorted(attempts, key=lambda pair: pair[1].started):
            if not w.up <= a.started < until:
                continue
            if who.startswith("op") and a.status == 503:
                result.after_up_503 += 1
            if a.status is not None and a.status < 300 and who not in firsts:
                firsts[who] = a.started + a.seconds - w.up
        ok = [firsts[c] for c in clients if c in firsts]
        if ok:
            result.recovery_first.append(min(ok))
        if len(ok) == len(clients):
            result.recovery_all.append(max(ok))
        else:
            result.unrecovered += len(clients) - len(ok)


def run(
    *,
    restarts: int = 4,
    modes: tuple[str, ...] = ("fast", "immediate"),
    down: float = 5.0,
    between: float = 5.0,
    warmup: float = 3.0,
    clients: int = 6,
    workers: int = 1,
    give_up: float = 120.0,
    seed: int | None = None,
    fail_fast_limit: float = 2.0,
    recovery_limit: float = 10.0,
    log_dir: Path | None = None,
) -> RestartResult:
    seed = random.randrange(1 << 30) if seed is None else seed
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="kopilka-dbrestart-"))
    began = time.monotonic()
    with private_cluster() as cluster:
        url = cluster.url("kopilka_soak")
        fresh_schema(url)
        engine = make_engine(url, pool_size=1, max_overflow=1)
        world = make_pos_world(engine, terminals=clients, cards_count=4, opening_minor=5_000_00)
        engine.dispose()  # its connections die with the restarts
        server = KopilkaServer(url, workers=workers, log_path=log_dir / "serve.log")
        server.start()
        assert server.process is not None
        pid = server.process.pid
        load = PosLoad(server.base, world, clients=clients, seed=seed, give_up_after=give_up)
        probe = Probe(server.base, world)
        windows: list[Window] = []
        try:
            load.start()
            probe.start()
            time.sleep(warmup)
            for n in range(restarts):
                mode = modes[n % len(modes)]
                stopping = time.monotonic()
                cluster.stop(mode)
                stopped = time.monotonic()
                time.sleep(down)
                starting = time.monotonic()
                cluster.start()
                windows.append(Window(mode, stopping, stopped, starting, time.monotonic()))
                time.sleep(between)
            load.stop()
            probe.stop()
            restarted = server.process.poll() is not None or server.process.pid != pid
        finally:
            server.stop()
        engine = make_engine(url, pool_size=2, max_overflow=2)
        try:
            audit = audit_pos(engine, world, load.ops)
        finally:
            engine.dispose()
        code, output = ledger_verify(url, world.slug)
    result = RestartResult(
        audit=audit,
        windows=windows,
        verify_code=code,
        verify_output=output,
        elapsed=time.monotonic() - began,
        server_restarted=restarted,
        fail_fast_limit=fail_fast_limit,
        recovery_limit=recovery_limit,
    )
    _measure(result, windows, load.ops, probe.attempts)
    result.audit.problems.append(f"seed {seed}; server log {server.log_path}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak.db_restart", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument(
        "--modes", default="fast,immediate", help="pg_ctl stop modes, in turn (fast, immediate)"
    )
    parser.add_argument("--down", type=float, default=5.0, help="seconds PostgreSQL stays down")
    parser.add_argument("--between", type=float, default=5.0, help="seconds up between restarts")
    parser.add_argument("--clients", type=int, default=6, help="terminals, one thread each")
    parser.add_argument("--workers", type=int, default=1, help="kopilka serve --workers")
    parser.add_argument("--give-up", type=float, default=120.0, help="seconds an op is retried")
    parser.add_argument("--fail-fast-limit", type=float, default=2.0, help="p99 seconds, down")
    parser.add_argument("--recovery-limit", type=float, default=10.0, help="seconds, after up")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if not set(modes) <= {"fast", "immediate", "smart"}:
        parser.error("--modes: fast, immediate or smart")
    result = run(
        restarts=args.restarts,
        modes=modes,
        down=args.down,
        between=args.between,
        clients=args.clients,
        workers=args.workers,
        give_up=args.give_up,
        seed=args.seed,
        fail_fast_limit=args.fail_fast_limit,
        recovery_limit=args.recovery_limit,
    )
    return report(
        f"PostgreSQL restarts under load: {args.restarts} x {args.down:g} s down, "
        f"{args.clients} terminals, {args.workers} worker(s)",
        result.rows(),
        result.audit.problems,
        result.ok,
    )


if __name__ == "__main__":
    sys.exit(main())
