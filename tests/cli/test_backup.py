"""Backup and restore as docs/deployment.md tells an operator to do them (issue 9): the
demo's books backed up while they are in use, restored into an empty database; the
restored ledger verifies, its fingerprint and every account's balance match, and the
restored database takes new postings (its sequences came along)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, select, text
from typer.testing import CliRunner, Result

from kopilka.cli.main import app
from kopilka.core.actor import Actor
from kopilka.core.backup import ledger_fingerprint
from kopilka.core.db import make_engine, read_only
from kopilka.ledger.accounts import system_account
from kopilka.ledger.posting import post_one, run_transaction, simple_transfer
from kopilka.ledger.schema import accounts
from kopilka.tenancy.schema import tenants
from tests.conftest import PG_URL

from .conftest import one_line


def kopilka(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["--database-url", url, *args])


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty databases: files for SQLite, databases of their own on PostgreSQL
    (pg_dump takes a whole database)."""
    made: list[str] = []
    admin: Engine | None = None
    if request.param == "postgresql":
        request.getfixturevalue("pg_engine")  # skips (or fails on CI) without a server
        admin = make_engine(PG_URL, isolation_level="AUTOCOMMIT")

    def make() -> str:
        name = f"kopilka_backup_{uuid.uuid4().hex[:10]}"
        if admin is None:
            return f"sqlite:///{tmp_path / name}.db"
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        made.append(name)
        return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def balances(url: str) -> dict[int, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(accounts.c.id, accounts.c.balance_minor)).all())
    finally:
        engine.dispose()


def test_a_backup_restored_into_an_empty_database_is_the_same_ledger(
    new_database: Callable[[], str], tmp_path: Path
) -> None:
    source, target = new_database(), new_database()
    assert kopilka(source, "db", "upgrade").exit_code == 0
    assert kopilka(source, "demo").exit_code == 0
    file = tmp_path / "kopilka.backup"

    made = kopilka(source, "db", "backup", str(file))
    assert made.exit_code == 0, made.output
    engine = make_engine(source)
    before = ledger_fingerprint(engine)
    engine.dispose()
    assert before.transfers > 50 and before.accounts > 50
    assert str(before) in one_line(made)

    restored = kopilka(target, "db", "restore", str(file))
    assert restored.exit_code == 0, restored.output
    assert "ledger is consistent" in restored.output
    assert str(before) in one_line(restored)
    assert kopilka(target, "ledger", "verify").exit_code == 0
    assert balances(target) == balances(source)

    # The restored books go on: a new posting gets a new id, not one the backup had.
    engine = make_engine(target)
    try:
        with read_only(engine) as conn:
            tenant_id = conn.execute(select(tenants.c.id)).scalars().first()
        assert tenant_id is not None
        actor = Actor.cli("tests")

        def post(conn):  # type: ignore[no-untyped-def]
            source_id = system_account(
                conn, tenant_id=tenant_id, unit_code="RUB", purpose="restore-check", actor=actor
            ).id
            sink_id = system_account(
                conn, tenant_id=tenant_id, unit_code="RUB", purpose="restore-sink", actor=actor
            ).id
            return post_one(
                conn,
                tenant_id=tenant_id,
                spec=simple_transfer(
                    "after-restore",
                    debit_account_id=source_id,
                    credit_account_id=sink_id,
                    amount_minor=1_00,
                ),
                actor=actor,
            )

        run_transaction(engine, post)
        after = ledger_fingerprint(engine)
    finally:
        engine.dispose()
    assert after.transfers == before.transfers + 1
    assert kopilka(target, "ledger", "verify").exit_code == 0

    # A database that is not empty is never restored into.
    again = kopilka(target, "db", "restore", str(file))
    assert again.exit_code != 0
    assert "restore_target_not_empty" in one_line(again)
    # Nor is a file that is not a backup taken for one.
    junk = tmp_path / "junk.backup"
    junk.write_bytes(b"not a backup at all")
    refused = kopilka(new_database(), "db", "restore", str(junk))
    assert refused.exit_code != 0 and "not_a_backup" in one_line(refused)
