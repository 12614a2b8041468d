"""What the fault-injection runs share: the server as a subprocess, a private PostgreSQL
cluster, the tenants they load, clients that retry until acknowledged, and the audit that
compares what the clients were told with what the database holds.

Nothing here is a test by itself; ``tests/soak/crash.py``, ``tests/soak/db_restart.py``
and ``tests/concurrency`` put it together.
"""

from __future__ import annotations

import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import make_engine, read_only
from kopilka.core.migrate import upgrade
from kopilka.core.money import UnitKind
from kopilka.hotel import folios, stays
from kopilka.ledger.accounts import create_unit
from kopilka.ledger.posting import run_transaction
from kopilka.ledger.schema import accounts, entries, transfers
from kopilka.loyalty.cards import issue_card
from kopilka.loyalty.documents import accrue_points
from kopilka.loyalty.programs import create_program
from kopilka.loyalty.schema import card_purchases, cards, pos_checks, pos_refunds
from kopilka.payments.types import PaymentKind, create_payment_type
from kopilka.tenancy.actions import create_tenant, create_terminal, create_user, issue_staff_token

KOPILKA = Path(sys.executable).with_name("kopilka")
PG_BIN = Path(os.environ.get("KOPILKA_PG_BIN", "/usr/lib/postgresql/15/bin"))
SOAK_URL = os.environ.get(
    "KOPILKA_SOAK_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/kopilka_soak"
)
ON_CI = os.environ.get("CI", "").lower() == "true"
ACTOR = Actor.job("soak")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def minor(amount: str, exponent: int = 2) -> int:
    """A decimal string of the API as minor units."""
    return int(Decimal(amount).scaleb(exponent))


def money(amount_minor: int, exponent: int = 2) -> str:
    return str(Decimal(amount_minor).scaleb(-exponent))


# --------------------------------------------------------------------------- databases


def ensure_database(url: str) -> None:
    """Create the database of ``url`` when its server does not have it yet."""
    target = make_url(url)
    admin = make_engine(
        target.set(database="postgres").render_as_string(hide_password=False),
        pool_size=1,
        max_overflow=0,
    )
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            known = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
            ).first()
            if known is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    finally:
        admin.dispose()


def fresh_schema(url: str) -> None:
    """An empty database of our own, migrated as an operator would (``kopilka db upgrade``)."""
    ensure_database(url)
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        upgrade(engine)
    finally:
        engine.dispose()


def ledger_verify(url: str, slug: str) -> tuple[int, str]:
    """``kopilka ledger verify --tenant SLUG``: its exit code and last line of output."""
    done = subprocess.run(  # noqa: S603 (our own CLI and arguments)
        [str(KOPILKA), "--database-url", url, "ledger", "verify", "--tenant", slug],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
        check=False,
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return done.returncode, "\n".join(lines[-20:] if done.returncode else lines[-1:])


# --------------------------------------------------------------------------- the server


class KopilkaServer:
    """``kopilka serve`` as a subprocess on a loopback port, in a process group of its own
    so that a SIGKILL takes its workers with it. Restarted on the same port."""

    def __init__(
        self, url: str, *, workers: int = 1, log_path: Path, port: int | None = None
    ) -> None:
        self.url = url
        self.workers = workers
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts: list[float] = []  # seconds from spawn to /healthz, each start

    def start(self, timeout: float = 90.0) -> float:
        assert self.process is None or self.process.poll() is not None, "already running"
        env = {
            **os.environ,
            "KOPILKA_DATABASE_URL": self.url,
            "KOPILKA_LOG_LEVEL": os.environ.get("KOPILKA_SOAK_LOG_LEVEL", "WARNING"),
        }
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start at {utcnow().isoformat()} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(  # noqa: S603 (our own CLI and arguments)
                [
                    str(KOPILKA),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                    "--no-nightly",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = began + timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server stopped at start; see {self.log_path}")
                with suppress(httpx.HTTPError):
                    if http.get(f"{self.base}/healthz").status_code == 200:
                        took = time.monotonic() - began
                        self.starts.append(took)
                        return took
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"the server did not answer /healthz in {timeout} s; see {self.log_path}"
        )

    def _signal_group(self, signum: int) -> None:
        assert self.process is not None
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL, the whole process group (uvicorn's supervisor and its workers)."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        else:
            self._signal_group(signal.SIGKILL)  # any worker left behind

    def __enter__(self) -> KopilkaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- private PostgreSQL


def private_cluster_unavailable() -> str | None:
    """Why a private PostgreSQL cluster cannot be made here; None when it can."""
    for tool in ("initdb", "pg_ctl"):
        if not (PG_BIN / tool).exists():
            return f"{PG_BIN / tool} is missing (Debian: postgresql-15); set KOPILKA_PG_BIN"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user for initdb"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing"
    return None


class PrivateCluster:
    """A PostgreSQL cluster of our own in a temporary directory, on a free loopback port,
    to stop and start under load without touching the machine's shared server.

    As root (initdb refuses it) every PostgreSQL tool runs as the ``postgres`` user, which
    owns the directory. ``fsync`` is off: the runs crash the server process, never the
    operating system, so the page cache keeps what was written.
    """

    def __init__(self, *, port: int | None = None, stop_mode: str = "fast") -> None:
        self.port = port or free_port()
        self.stop_mode = stop_mode
        self.dir = Path(tempfile.mkdtemp(prefix="kopilka-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgresql.log"
        self.running = False
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(  # noqa: S603 (PostgreSQL's own tools, our arguments)
            [*self._as_postgres, *args], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}\n{tail}")

    def init(self) -> None:
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> float:
        """Start and wait until it takes connections; the seconds that took."""
        began = time.monotonic()
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        self.running = True
        return time.monotonic() - began

    def stop(self, mode: str | None = None) -> float:
        """``pg_ctl stop -m fast`` (clients disconnected, a clean shutdown) or ``immediate``
        (every process killed at once; crash recovery at the next start)."""
        began = time.monotonic()
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode or self.stop_mode,
            "-w", "-t", "60", "stop",
        )  # fmt: skip
        self.running = False
        return time.monotonic() - began

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> PrivateCluster:
        try:
            self.init()
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        if self.running:
            with suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_cluster(stop_mode: str = "fast") -> Iterator[PrivateCluster]:
    reason = private_cluster_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    with PrivateCluster(stop_mode=stop_mode) as cluster:
        yield cluster


# --------------------------------------------------------------------------- tenants


def _slug(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class PosWorld:
    """A tenant with a bonus program (BONUS, 2 decimals), terminals and funded cards."""

    tenant_id: int
    slug: str
    terminal_ids: list[int]
    keys: list[str]
    cards: list[str]
    wallets: dict[str, int]  # card number -> its ledger account
    opening: dict[str, int]  # card number -> points (minor) before the run


def make_pos_world(
    engine: Engine,
    *,
    terminals: int,
    cards_count: int,
    opening_minor: int,
    accrual_bp: int = 500,
    max_share_bp: int = 5_000,
    prefix: str = "soak-pos",
) -> PosWorld:
    slug = _slug(prefix)
    numbers = [f"9{secrets.randbelow(10**6):06d}{n:05d}" for n in range(cards_count)]

    def setup(conn: Any) -> tuple[int, list[int], list[str], dict[str, int]]:
        tenant = create_tenant(conn, slug=slug, name="Soak POS", actor=ACTOR)
        create_unit(
            conn, tenant_id=tenant.id, code="BONUS", kind=UnitKind.POINTS, exponent=2, actor=ACTOR
        )
        program = create_program(
            conn,
            tenant_id=tenant.id,
            name="Soak",
            unit_code="BONUS",
            actor=ACTOR,
            accrual_bp=accrual_bp,
            max_share_bp=max_share_bp,
        )
        made = [
            create_terminal(conn, tenant_id=tenant.id, name=f"POS {n + 1}", actor=ACTOR)
            for n in range(terminals)
        ]
        wallets = {}
        for number in numbers:
            card = issue_card(
                conn, tenant_id=tenant.id, program_id=program.id, number=number, actor=ACTOR
            )
            wallets[card.number] = card.account_id
        if opening_minor:
            accrue_points(
                conn,
                tenant_id=tenant.id,
                card_numbers=numbers,
                amount_minor=opening_minor,
                reason="opening",
                actor=ACTOR,
                document_id="soak-opening",
                lifetime_days=None,
            )
        return tenant.id, [t.id for t, _ in made], [k for _, k in made], wallets

    tenant_id, terminal_ids, keys, wallets = run_transaction(engine, setup)
    return PosWorld(
        tenant_id=tenant_id,
        slug=slug,
        terminal_ids=terminal_ids,
        keys=keys,
        cards=list(wallets),
        wallets=wallets,
        opening=balances(engine, wallets),
    )


def balances(engine: Engine, wallets: dict[str, int]) -> dict[str, int]:
    with read_only(engine) as conn:
        rows = conn.execute(
            select(accounts.c.id, accounts.c.balance_minor).where(
                accounts.c.id.in_(list(wallets.values()))
            )
        ).all()
    by_id = {row.id: int(row.balance_minor) for row in rows}
    return {number: by_id[account] for number, account in wallets.items()}


@dataclass(frozen=True)
class HotelWorld:
    """A hotel tenant: one checked-in stay whose folio owes one invoice, and a front-desk
    user's API token."""

    tenant_id: int
    slug: str
    token: str
    folio_id: int
    folio_account: int
    invoice_id: int
    invoice_minor: int
    cash_type: int
    card_type: int


def make_hotel_world(
    engine: Engine, *, invoice_minor: int, prefix: str = "soak-hotel"
) -> HotelWorld:
    slug = _slug(prefix)

    def setup(conn: Any) -> HotelWorld:
        tenant = create_tenant(conn, slug=slug, name="Soak hotel", actor=ACTOR)
        t = tenant.id
        prop = stays.create_property(conn, tenant_id=t, name="Берег", actor=ACTOR)
        room = stays.create_room(conn, tenant_id=t, property_id=prop.id, number="90", actor=ACTOR)
        guest = stays.create_guest(conn, tenant_id=t, full_name="Анна Петрова", actor=ACTOR)
        today = date.today()
        stay = stays.create_stay(
            conn,
            tenant_id=t,
            room_id=room.id,
            arrival=today,
            departure=today + timedelta(days=3),
            guest_ids=[guest.id],
            check_in=True,
            actor=ACTOR,
        )
        folio_id = stay.folios[0].id
        invoice = folios.charge(
            conn,
            tenant_id=t,
            folio_id=folio_id,
            kind="accommodation",
            description="Проживание",
            lines=[folios.LineIn("Ночи", invoice_minor)],
            operation_id="night",
            actor=ACTOR,
        )
        cash = create_payment_type(
            conn, tenant_id=t, name="Наличные", kind=PaymentKind.CASH, actor=ACTOR
        )
        card = create_payment_type(
            conn, tenant_id=t, name="Карта", kind=PaymentKind.CARD, actor=ACTOR
        )
        user = create_user(
            conn,
            tenant_id=t,
            login="desk",
            password=secrets.token_urlsafe(16),
            role="front_desk",
            actor=ACTOR,
        )
        token, _ = issue_staff_token(conn, user=user, actor=ACTOR)
        folio = folios.get_folio(conn, t, folio_id)
        return HotelWorld(
            tenant_id=t,
            slug=slug,
            token=token,
            folio_id=folio_id,
            folio_account=folio.account_id,
            invoice_id=invoice.id,
            invoice_minor=invoice_minor,
            cash_type=cash.id,
            card_type=card.id,
        )

    return run_transaction(engine, setup)


# --------------------------------------------------------------------------- retrying clients


@dataclass
class Attempt:
    started: float  # time.monotonic() when sent
    seconds: float
    status: int | None  # None: no answer (connection refused or dropped, timeout)
    code: str | None = None  # the problem's code, when the reply is one
    retry_after: str | None = None
    problem_json: bool = False
    error: str | None = None  # the transport error's class when there was no answer


@dataclass
class Op:
    """One operation a client wants done once, under one key, retried with the same body."""

    kind: str  # check | refund | payment
    key: str  # check id, refund id or Idempotency-Key
    path: str
    body: dict[str, Any]
    card: str | None = None
    check_id: str | None = None  # a refund's check
    terminal: int | None = None  # index into the world's terminals
    attempts: list[Attempt] = field(default_factory=list)
    outcome: str = "pending"  # acked | refused | gave_up
    status: int | None = None
    reply: dict[str, Any] | None = None
    replayed: bool = False


def send(
    http: httpx.Client,
    op: Op,
    *,
    headers: dict[str, str],
    give_up_after: float,
    pause: float = 0.2,
) -> Op:
    """POST until the server answers something other than 5xx, or give up.

    2xx is acknowledged; 4xx is the server's judgement (refused, nothing written); no
    answer or 5xx is retried with the same key and body.
    """
    deadline = time.monotonic() + give_up_after
    while True:
        began = time.monotonic()
        try:
            response = http.post(op.path, json=op.body, headers=headers)
        except httpx.TransportError as error:
            op.attempts.append(
                Attempt(began, time.monotonic() - began, None, error=type(error).__name__)
            )
        else:
            took = time.monotonic() - began
            is_problem = response.headers.get("content-type", "").startswith(
                "application/problem+json"
            )
            body = (
                response.json()
                if response.content and response.headers.get("content-type", "").endswith("json")
                else None
            )
            op.attempts.append(
                Attempt(
                    began,
                    took,
                    response.status_code,
                    code=body.get("code") if is_problem and isinstance(body, dict) else None,
                    retry_after=response.headers.get("retry-after"),
                    problem_json=is_problem,
                )
            )
            if response.status_code < 500:
                op.status = response.status_code
                op.reply = body if isinstance(body, dict) else None
                op.outcome = "acked" if response.status_code < 300 else "refused"
                op.replayed = response.headers.get("idempotent-replayed") == "true"
                return op
        if time.monotonic() + pause > deadline:
            op.outcome = "gave_up"
            return op
        time.sleep(pause)


class PosLoad:
    """Threads, one per terminal, committing checks (earning and spending points on shared
    cards) and refunding some of their acknowledged checks, each op retried until
    acknowledged. ``stop()`` lets every client finish the op it is on."""

    def __init__(
        self,
        base: str,
        world: PosWorld,
        *,
        clients: int,
        seed: int,
        refund_share: float = 0.25,
        give_up_after: float = 90.0,
        pause: float = 0.2,
        think: float = 0.0,
    ) -> None:
        assert clients <= len(world.keys), "one terminal per client"
        self.base = base
        self.world = world
        self.clients = clients
        self.seed = seed
        self.refund_share = refund_share
        self.give_up_after = give_up_after
        self.pause = pause
        self.think = think
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.run_id = uuid.uuid4().hex[:6]
        self.crashed: list[BaseException] = []

    def start(self) -> None:
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, args=(n,), name=f"pos-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 180.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"clients still running after {timeout} s: {alive}")
        if self.crashed:
            raise RuntimeError(f"a client failed: {self.crashed[0]!r}") from self.crashed[0]

    def acked_since(self, moment: float) -> int:
        with self._lock:
            return sum(
                1
                for op in self.ops
                for a in op.attempts
                if a.started >= moment and a.status is not None and a.status < 300
            )

    def _client(self, n: int) -> None:
        try:
            self._loop(n)
        except BaseException as error:  # reported by stop()
            self.crashed.append(error)

    def _loop(self, n: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        key = self.world.keys[n]
        headers = {"Authorization": f"Bearer {key}"}
        refundable: dict[str, tuple[int, int]] = {}  # check id -> (total, refunded) minor
        serial = 0
        with httpx.Client(base_url=self.base, timeout=httpx.Timeout(15.0, connect=3.0)) as http:
            while not self._stop.is_set():
                serial += 1
                op_key = f"{self.run_id}-t{n}-{serial}"
                if refundable and rng.random() < self.refund_share:
                    check_id = rng.choice(sorted(refundable))
                    total, refunded = refundable[check_id]
                    half = total // 2
                    body: dict[str, Any] = {"refund_id": op_key}
                    if refunded == 0 and half > 0 and rng.random() < 0.5:
                        body["amount"] = money(half)
                    op = Op(
                        "refund",
                        op_key,
                        f"/api/v1/pos/checks/{check_id}/refunds",
                        body,
                        check_id=check_id,
                        terminal=n,
                    )
                else:
                    check_id = op_key
                    lines = [money(rng.randint(100_00, 2_000_00)) for _ in range(rng.randint(1, 3))]
                    points = 0 if rng.random() < 0.5 else rng.randint(1_00, 400_00)
                    card = rng.choice(self.world.cards)
                    body = {
                        "check_id": check_id,
                        "card": card,
                        "lines": lines,
                        "points": money(points),
                    }
                    op = Op("check", op_key, "/api/v1/pos/checks", body, card=card, terminal=n)
                with self._lock:
                    self.ops.append(op)
                send(
                    http,
                    op,
                    headers={**headers, "Idempotency-Key": op_key},
                    give_up_after=self.give_up_after,
                    pause=self.pause,
                )
                if op.kind == "check" and op.outcome == "acked":
                    total = sum(minor(line) for line in op.body["lines"])
                    refundable[op.key] = (total, 0)
                elif op.kind == "refund" and op.check_id is not None:
                    total, refunded = refundable.pop(op.check_id)
                    if op.outcome == "acked" and op.reply is not None:
                        refunded += minor(op.reply["amount"])
                        if refunded < total:
                            refundable[op.check_id] = (total, refunded)
                if self.think:
                    time.sleep(self.think)


# --------------------------------------------------------------------------- the audit


@dataclass
class Audit:
    """What the database holds against what the clients were told."""

    ops: int = 0
    acked: int = 0
    replayed: int = 0  # acknowledged by a replay: an earlier attempt had been written
    refused: int = 0
    gave_up: int = 0
    retries: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # every attempt's outcome
    lost: int = 0  # acknowledged, not in the database
    duplicated: int = 0  # more than one row or transfer for one operation
    half: int = 0  # a row without its transfers, or transfers without their row
    refused_written: int = 0  # refused (4xx), yet something of it is in the database
    unacked_whole: int = 0  # never acknowledged (gave up), written whole
    mismatched: int = 0  # written, but not as the reply said
    phantoms: int = 0  # rows or transfers that no operation made
    balance_mismatches: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def broken(self) -> int:
        return (
            self.lost
            + self.duplicated
            + self.half
            + self.refused_written
            + self.mismatched
            + self.phantoms
            + self.balance_mismatches
        )

    def note(self, what: str) -> None:
        if len(self.problems) < 30:
            self.problems.append(what)


def _count_attempts(audit: Audit, ops: list[Op]) -> None:
    for op in ops:
        audit.ops += 1
        audit.retries += max(0, len(op.attempts) - 1)
        audit.acked += op.outcome == "acked"
        audit.replayed += op.outcome == "acked" and op.replayed
        audit.refused += op.outcome == "refused"
        audit.gave_up += op.outcome == "gave_up"
        for a in op.attempts:
            audit.statuses[a.error or (f"{a.status} {a.code}" if a.code else str(a.status))] += 1


def _transfers_by_key(conn: Any, tenant_id: int, prefix: str) -> dict[str, list[Any]]:
    rows = conn.execute(
        select(
            transfers.c.id,
            transfers.c.idempotency_key,
            func.count(entries.c.id).label("n"),
            func.coalesce(func.sum(entries.c.amount_minor), 0).label("total"),
        )
        .select_from(transfers.outerjoin(entries, entries.c.transfer_id == transfers.c.id))
        .where(transfers.c.tenant_id == tenant_id, transfers.c.idempotency_key.like(f"{prefix}%"))
        .group_by(transfers.c.id, transfers.c.idempotency_key)
    ).all()
    found: dict[str, list[Any]] = {}
    for row in rows:
        found.setdefault(row.idempotency_key, []).append(row)
    return found


def audit_pos(engine: Engine, world: PosWorld, ops: list[Op]) -> Audit:
    """Every acknowledged check and refund is in the database exactly once, as its reply
    said, with its transfers; nothing refused is; nothing is there half; each card's
    balance is its opening plus what the acknowledged operations moved."""
    audit = Audit()
    _count_attempts(audit, ops)
    t = world.tenant_id
    with read_only(engine) as conn:
        check_rows = conn.execute(select(pos_checks).where(pos_checks.c.tenant_id == t)).all()
        refund_rows = conn.execute(select(pos_refunds).where(pos_refunds.c.tenant_id == t)).all()
        moved = _transfers_by_key(conn, t, "pos:")
        purchases = Counter(
            row.pos_check_id
            for row in conn.execute(
                select(card_purchases.c.pos_check_id).where(
                    card_purchases.c.tenant_id == t, card_purchases.c.checks == 1
                )
            )
        )
        wallet_of = {
            row.id: row.number
            for row in conn.execute(
                select(cards.c.id, cards.c.number).where(cards.c.tenant_id == t)
            )
        }
    terminal_index = {tid: i for i, tid in enumerate(world.terminal_ids)}
    checks_by_key: dict[tuple[int, str], list[Any]] = {}
    for row in check_rows:
        checks_by_key.setdefault((terminal_index[row.terminal_id], row.check_id), []).append(row)
    refunds_by_key: dict[tuple[int, str], list[Any]] = {}
    for row in refund_rows:
        refunds_by_key.setdefault((row.pos_check_id, row.refund_id), []).append(row)
    claimed: set[str] = set()  # transfer keys some operation accounts for
    seen_checks: set[int] = set()
    seen_refunds: set[int] = set()
    delta: Counter[str] = Counter()  # card number -> points moved by what is written

    def _claim(prefix: str) -> bool:
        """Whether any transfer's key starts so; those found are accounted for."""
        keys = [k for k in moved if k.startswith(prefix)]
        claimed.update(keys)
        return bool(keys)

    def _settled_without_row(op: Op, what: str, found: list[Any], prefix: str) -> bool:
        """A refused operation, or one whose row is missing: judged here (True), with
        what it left counted; False: its row is there to be checked."""
        if op.outcome == "refused":
            if found or _claim(prefix):
                audit.refused_written += 1
                audit.note(f"{what} {op.key}: refused ({op.status}) but written")
            return True
        if found:
            return False
        if op.outcome == "acked":
            audit.lost += 1
            audit.note(f"{what} {op.key}: acknowledged, not in the database")
        elif _claim(prefix):
            audit.half += 1
            audit.note(f"{what} {op.key}: transfers without the {what}")
        return True

    def transfer_whole(key: str, transfer_id: int | None, label: str) -> bool:
        claimed.add(key)
        found = moved.get(key, [])
        if len(found) > 1:
            audit.duplicated += 1
            audit.note(f"{label}: transfer {key} written {len(found)} times")
            return False
        if not found:
            audit.half += 1
            audit.note(f"{label}: transfer {key} is missing")
            return False
        row = found[0]
        if row.n < 2 or row.total != 0 or (transfer_id is not None and row.id != transfer_id):
            audit.half += 1
            audit.note(f"{label}: transfer {key} is not whole ({row.n} entries, sum {row.total})")
            return False
        return True

    for op in ops:
        assert op.terminal is not None
        tid = world.terminal_ids[op.terminal]
        if op.kind == "check":
            prefix = f"pos:{tid}:{op.key}:"
            found = checks_by_key.get((op.terminal, op.key), [])
            if _settled_without_row(op, "check", found, prefix):
                continue
            if len(found) > 1:
                audit.duplicated += 1
                audit.note(f"check {op.key}: {len(found)} rows")
            row = found[0]
            seen_checks.add(row.id)
            whole = purchases[row.id] == 1
            if not whole:
                audit.half += 1
                audit.note(f"check {op.key}: {purchases[row.id]} accumulation rows")
            for part, amount, transfer_id in (
                ("spend", row.spent_minor, row.spend_transfer_id),
                ("accrual", row.accrued_minor, row.accrual_transfer_id),
            ):
                if amount:
                    whole &= transfer_whole(prefix + part, transfer_id, f"check {op.key}")
                elif prefix + part in moved:
                    audit.phantoms += 1
                    audit.note(f"check {op.key}: a {part} transfer for nothing")
            if op.outcome == "acked" and op.reply is not None:
                said = (minor(op.reply["spent"]), minor(op.reply["accrued"]))
                if said != (row.spent_minor, row.accrued_minor) or op.reply["check_id"] != op.key:
                    audit.mismatched += 1
                    audit.note(f"check {op.key}: reply {said}, database {row.spent_minor}")
            else:
                audit.unacked_whole += whole
            delta[wallet_of[row.card_id]] += row.accrued_minor - row.spent_minor
        else:
            assert op.check_id is not None
            prefix = f"pos:{tid}:{op.check_id}:refund:{op.key}:"
            checks = checks_by_key.get((op.terminal, op.check_id), [])
            found = refunds_by_key.get((checks[0].id, op.key), []) if checks else []
            if _settled_without_row(op, "refund", found, prefix):
                continue
            if len(found) > 1:
                audit.duplicated += 1
            row = found[0]
            seen_refunds.add(row.id)
            keys = {k for k in moved if k.startswith(prefix)}
            ids = {r.id for k in keys for r in moved[k]}
            whole = ids == set(row.transfer_ids)
            for k in keys:
                whole &= transfer_whole(k, None, f"refund {op.key}")
            if ids != set(row.transfer_ids):
                audit.half += 1
                audit.note(f"refund {op.key}: transfers {sorted(ids)} != {row.transfer_ids}")
            if op.outcome == "acked" and op.reply is not None:
                said = (minor(op.reply["points_returned"]), minor(op.reply["accrual_reversed"]))
                if said != (row.points_returned_minor, row.accrual_reversed_minor):
                    audit.mismatched += 1
                    audit.note(f"refund {op.key}: reply {said}, database differs")
            else:
                audit.unacked_whole += whole
            delta[wallet_of[checks[0].card_id]] += (
                row.points_returned_minor - row.accrual_reversed_minor
            )
    # What no operation accounts for.
    for row in check_rows:
        if row.id not in seen_checks:
            audit.phantoms += 1
            audit.note(f"check row {row.check_id} made by no operation")
    for row in refund_rows:
        if row.id not in seen_refunds:
            audit.phantoms += 1
            audit.note(f"refund row {row.refund_id} made by no operation")
    for key in sorted(set(moved) - claimed):
        audit.phantoms += 1
        audit.note(f"transfer {key} made by no operation")
    # The cards' balances: opening plus what the written operations moved, and the
    # acknowledged ones are written (above), so this is what the clients were told.
    now = balances(engine, world.wallets)
    with read_only(engine) as conn:
        sums = {
            row.account_id: int(row.total)
            for row in conn.execute(
                select(entries.c.account_id, func.sum(entries.c.amount_minor).label("total"))
                .where(entries.c.account_id.in_(list(world.wallets.values())))
                .group_by(entries.c.account_id)
            )
        }
    for number, account in world.wallets.items():
        expected = world.opening[number] + delta[number]
        if now[number] != expected or sums.get(account, 0) != now[number]:
            audit.balance_mismatches += 1
            audit.note(
                f"card {number}: balance {now[number]}, entries {sums.get(account)}, "
                f"expected {expected}"
            )
        if now[number] < 0:
            audit.balance_mismatches += 1
            audit.note(f"card {number}: below zero ({now[number]})")
    return audit


# --------------------------------------------------------------------------- figures


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def seconds_summary(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"median {statistics.median(values):.3f} s, p99 {percentile(values, 0.99):.3f} s, "
        f"max {max(values):.3f} s (n={len(values)})"
    )


def report(title: str, rows: list[tuple[str, object]], problems: list[str], ok: bool) -> int:
    """A run's table and its problems printed; the exit code of its command."""
    print_table(title, rows)
    for problem in problems:
        print(f"  {problem}")
    return 0 if ok else 1


def print_table(title: str, rows: list[tuple[str, object]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 40))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 40), flush=True)


def audit_rows(audit: Audit) -> list[tuple[str, object]]:
    return [
        ("ops attempted", audit.ops),
        ("acknowledged", audit.acked),
        ("  of them by a replay", audit.replayed),
        ("refused (4xx, judged)", audit.refused),
        ("gave up (never answered)", audit.gave_up),
        ("  of them written whole", audit.unacked_whole),
        ("retries", audit.retries),
        ("lost", audit.lost),
        ("duplicated", audit.duplicated),
        ("half-written", audit.half),
        ("refused yet written", audit.refused_written),
        ("written unlike the reply", audit.mismatched),
        ("made by no operation", audit.phantoms),
        ("card balances off", audit.balance_mismatches),
        (
            "attempt outcomes",
            ", ".join(f"{k}: {v}" for k, v in sorted(audit.statuses.items(), key=str)),
        ),
    ]


def burst(base: str, calls: list[tuple[Op, dict[str, str]]], *, timeout: float = 60.0) -> None:
    """Send every call once, all at the same moment (one thread and connection each, held
    at a barrier until all are connected); no retries: what the server answers is kept."""
    barrier = threading.Barrier(len(calls))
    failed: list[BaseException] = []

    def one(op: Op, headers: dict[str, str]) -> None:
        try:
            with httpx.Client(base_url=base, timeout=timeout) as http:
                http.get("/healthz")  # connected before the barrier
                barrier.wait(timeout)
                send(http, op, headers=headers, give_up_after=0.0)
        except BaseException as error:  # reported below
            failed.append(error)

    threads = [threading.Thread(target=one, args=call, daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout * 2)
    if failed:
        raise RuntimeError(f"{len(failed)} callers failed: {failed[0]!r}") from failed[0]
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("callers still waiting for an answer")
