"""Test harness: every database-backed test runs on SQLite and on PostgreSQL.

PostgreSQL is ``KOPILKA_TEST_DATABASE_URL`` (default: the local ``test`` database). When it
cannot be reached the PostgreSQL half is skipped, with the reason printed; under
``CI=true`` an unreachable PostgreSQL fails the run instead.

Each test gets its own tenant, and every row in Kopilka is scoped to a tenant, so tests
share one migrated database per backend without seeing each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from kopilka.core.actor import Actor
from kopilka.core.db import make_engine
from kopilka.core.migrate import upgrade
from kopilka.ledger.posting import forget_shard_counts
from kopilka.tenancy.actions import Tenant, create_tenant

PG_URL = os.environ.get("KOPILKA_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
ON_CI = os.environ.get("CI", "").lower() == "true"


def _pg_reason() -> str | None:
    """None when PostgreSQL answers; otherwise why not."""
    try:
        engine = make_engine(PG_URL, pool_size=1, max_overflow=0)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as error:
        return f"PostgreSQL at {PG_URL} is not reachable: {type(error).__name__}: {error}"


_PG_REASON = _pg_reason()


def pytest_sessionstart(session: pytest.Session) -> None:
    if _PG_REASON is not None:
        if ON_CI:
            raise pytest.UsageError(f"CI=true requires PostgreSQL. {_PG_REASON}")
        print(f"\nSKIPPING the PostgreSQL half of the suite: {_PG_REASON}\n")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"postgresql: {'skipped: ' + _PG_REASON if _PG_REASON else PG_URL}"]


def _fresh_pg() -> Engine:
    engine = make_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    return engine


@pytest.fixture(scope="session")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path = Path(tmp_path_factory.mktemp("db")) / "kopilka.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    if _PG_REASON is not None:
        pytest.skip(_PG_REASON)
    forget_shard_counts()
    engine = _fresh_pg()
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """The migrated database of one backend (the test runs once per backend)."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def actor() -> Actor:
    return Actor.cli("tests")


@pytest.fixture
def tenant(engine: Engine, actor: Actor) -> Tenant:
    """A fresh tenant of its own for this test."""
    with engine.begin() as conn:
        return create_tenant(
            conn, slug=f"t-{uuid.uuid4().hex[:12]}", name="Test tenant", actor=actor
        )
