"""PostgreSQL restarted under load (issue 9b; the long run is ``python -m
tests.soak.db_restart``): while it is down every request fails fast with 503
``service_unavailable``; once it is up the same server process serves again; nothing
acknowledged is lost and nothing is half-written."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

import kopilka.core.cache  # noqa: F401 (its transaction hooks are what is tested)
from kopilka.core.db import make_engine
from tests.conftest import ON_CI
from tests.soak import db_restart
from tests.soak.common import print_table, private_cluster_unavailable

pytestmark = pytest.mark.pg_only


def _need_private_cluster() -> None:
    reason = private_cluster_unavailable()
    if reason is not None:
        if ON_CI:
            pytest.fail(f"CI=true needs a private PostgreSQL cluster: {reason}")
        pytest.skip(f"no private PostgreSQL cluster: {reason}")


def test_postgresql_restart_under_load(tmp_path: Path) -> None:
    _need_private_cluster()
    result = db_restart.run(
        restarts=1,
        modes=("fast",),
        down=3.0,
        between=3.0,
        warmup=2.0,
        clients=4,
        give_up=60.0,
        log_dir=tmp_path,
    )
    print_table("PostgreSQL restart (smoke)", result.rows())
    assert result.down_latencies, "no request was made while PostgreSQL was down"
    assert result.ok, [*result.rows(), *result.audit.problems]


def test_a_connection_lost_mid_transaction_is_an_operational_error(pg_engine: Engine) -> None:
    """The cache's rollback hook once read the lost connection's ``info`` and turned the
    OperationalError (a 503) into PendingRollbackError (a 500)."""
    engine = make_engine(pg_engine.url.render_as_string(hide_password=False), pool_size=1)
    try:
        with pytest.raises(OperationalError), engine.begin() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with pg_engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            conn.execute(text("SELECT 1"))
        with engine.connect() as conn:  # the pool reconnects by itself
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
