"""A second Kopilka server, in a process of its own on loopback, to be a loyalty centre.

``running_centre(folder)`` prepares a SQLite database under ``folder`` with the project's
own functions (migrations, a tenant "ППС Контур" with BONUS points of 2 decimals and
MILES of none, a program of each, a terminal and its key, and a second tenant with a
terminal of its own), then runs ``kopilka serve`` on a free port of 127.0.0.1 as a
subprocess and waits for ``/healthz``. It yields a ``Centre``: its URL, the keys, and
helpers that write straight into its database (issue a card with points, block it,
switch the loyalty module), which the server sees at once (its configuration cache is
off). On exit the process is stopped and its log closed.

Reuse: a session- or module-scoped fixture around it, e.g.::

    @pytest.fixture(scope="module")
    def centre(tmp_path_factory):
        with running_centre(tmp_path_factory.mktemp("centre")) as running:
            yield running
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import Connection, Engine

from kopilka.core.actor import Actor
from kopilka.core.db import make_engine, read_only
from kopilka.core.migrate import upgrade
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_unit, system_account_id
from kopilka.ledger.posting import post_one, run_transaction, simple_transfer
from kopilka.ledger.verify import verify
from kopilka.loyalty.billing import set_loyalty_enabled
from kopilka.loyalty.cards import CardView, block_cards, issue_card
from kopilka.loyalty.programs import Program, create_program
from kopilka.tenancy.actions import Tenant, create_tenant, create_terminal

T = TypeVar("T")
ACTOR = Actor.cli("centre-setup")
_numbers = itertools.count(1)
START_SECONDS = 60


@dataclass
class Centre:
    url: str
    engine: Engine  # the centre's own database, for setting the scene and checking it
    tenant: Tenant
    programs: dict[str, Program]  # by unit code
    terminal_id: int
    key: str  # a terminal key of the centre: what a hotel presents
    other_key: str  # a terminal key of another tenant of the centre
    process: subprocess.Popen[bytes]
    log: Path

    def tx(self, work: Callable[[Connection], T]) -> T:
        return run_transaction(self.engine, work)

    def card(self, points_minor: int = 0, unit: str = "BONUS", **holder: Any) -> CardView:
        """A new card of the centre with ``points_minor`` of ``unit`` on it."""
        number = f"77{next(_numbers):011d}"
        program = self.programs[unit]

        def work(conn: Connection) -> CardView:
            card = issue_card(
                conn,
                tenant_id=self.tenant.id,
                program_id=program.id,
                number=number,
                actor=ACTOR,
                **holder,
            )
            if points_minor:
                issuance = system_account_id(
                    conn, tenant_id=self.tenant.id, unit_code=unit, purpose="issuance", actor=ACTOR
                )
                post_one(
                    conn,
                    tenant_id=self.tenant.id,
                    spec=simple_transfer(
                        f"centre-fund:{number}",
                        debit_account_id=issuance,
                        credit_account_id=card.account_id,
                        amount_minor=points_minor,
                        kind="manual_accrual",
                    ),
                    actor=ACTOR,
                )
            return card

        return self.tx(work)

    def block(self, card: CardView) -> None:
        self.tx(
            lambda c: block_cards(
                c, tenant_id=self.tenant.id, card_ids=[card.id], reason="lost", actor=ACTOR
            )
        )

    def loyalty(self, enabled: bool) -> None:
        self.tx(
            lambda c: set_loyalty_enabled(c, tenant_id=self.tenant.id, enabled=enabled, actor=ACTOR)
        )

    def assert_clean(self) -> None:
        with read_only(self.engine) as conn:
            problems = verify(conn, tenant_id=self.tenant.id)
        assert problems == [], problems

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The server stops answering (SIGSTOP) while the block runs: connections are
        accepted by the kernel and then nothing comes."""
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)


def _prepare(engine: Engine) -> tuple[Tenant, dict[str, Program], int, str, str]:
    def work(conn: Connection) -> tuple[Tenant, dict[str, Program], int, str, str]:
        tenant = create_tenant(conn, slug="kontur", name="ППС Контур", actor=ACTOR)
        programs = {}
        for code, exponent, name in (("BONUS", 2, "бонусы"), ("MILES", 0, "мили")):
            create_unit(
                conn,
                tenant_id=tenant.id,
                code=code,
                kind=UnitKind.POINTS,
                name=name,
                exponent=exponent,
                actor=ACTOR,
            )
            programs[code] = create_program(
                conn, tenant_id=tenant.id, name=f"Контур: {name}", unit_code=code, actor=ACTOR
            )
        terminal, key = create_terminal(conn, tenant_id=tenant.id, name="Отель", actor=ACTOR)
        other = create_tenant(conn, slug="elsewhere", name="Другая сеть", actor=ACTOR)
        _, other_key = create_terminal(conn, tenant_id=other.id, name="Касса", actor=ACTOR)
        return tenant, programs, terminal.id, key, other_key

    return run_transaction(engine, work)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KOPILKA_DATABASE_URL": url,
        "KOPILKA_CONFIG_CACHE_SECONDS": "0",  # changes made here are seen at once
        "KOPILKA_LOG_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
    }
    command = [
        sys.executable,
        "-c",
        "from kopilka.cli.main import app; app()",
        "--database-url",
        url,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-nightly",
    ]
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent
        )


def _wait_until_up(process: subprocess.Popen[bytes], base: str) -> bool:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # it exited: most likely the port was taken meanwhile
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)  # in case a test left it paused
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@contextmanager
def running_centre(folder: Path) -> Iterator[Centre]:
    url = f"sqlite:///{folder / 'centre.db'}"
    engine = make_engine(url)
    upgrade(engine)
    tenant, programs, terminal_id, key, other_key = _prepare(engine)
    log = folder / "centre.log"
    process = None
    try:
        for _attempt in range(3):
            port = free_port()
            process = _serve(url, port, log)
            if _wait_until_up(process, f"http://127.0.0.1:{port}"):
                break
            _stop(process)
        else:
            raise RuntimeError(f"the centre did not start; see {log}:\n{log.read_text()[-3000:]}")
        yield Centre(
            f"http://127.0.0.1:{port}",
            engine,
            tenant,
            programs,
            terminal_id,
            key,
            other_key,
            process,
            log,
        )
    finally:
        if process is not None:
            _stop(process)
        engine.dispose()
