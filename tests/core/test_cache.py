"""The per-process config cache: what it keeps, when, and for which database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from kopilka.core.cache import ConfigCache, forget_all
from kopilka.core.db import make_engine
from kopilka.core.settings import get_settings


@pytest.fixture
def cache() -> ConfigCache[str, int]:
    return ConfigCache("test")


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'scratch.db'}")
    yield engine
    engine.dispose()


class Loader:
    """Gives its values one by one and counts the calls."""

    def __init__(self, *values: int) -> None:
        self.values = list(values)
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.values[self.calls - 1]


def test_kept_outside_a_transaction_and_per_database(
    cache: ConfigCache[str, int], engine: Engine, scratch: Engine
) -> None:
    load = Loader(1, 2, 3)
    assert cache.get(engine, "k", load) == 1
    assert cache.get(engine, "k", load) == 1
    assert load.calls == 1
    # Another database has its own entry under the same key.
    assert cache.get(scratch, "k", load) == 2
    assert cache.get(engine, "k", load) == 1


def test_none_is_never_kept(cache: ConfigCache[str, int], engine: Engine) -> None:
    calls: list[int] = []

    def load() -> int | None:
        calls.append(1)
        return None

    assert cache.get(engine, "k", load) is None
    assert cache.get(engine, "k", load) is None
    assert len(calls) == 2


def test_read_in_a_transaction_is_kept_only_once_it_commits(
    cache: ConfigCache[str, int], engine: Engine
) -> None:
    load = Loader(1, 2, 3)
    with engine.connect() as conn:
        with conn.begin() as tx:
            assert cache.get(conn, "k", load) == 1
            assert cache.get(conn, "k", load) == 2  # not kept yet
            tx.rollback()
        assert cache.get(engine, "k", load) == 3  # rolled back: not kept
    load2 = Loader(10, 11)
    with engine.begin() as conn:
        assert cache.get(conn, "j", load2) == 10
    assert cache.get(engine, "j", load2) == 10  # committed: kept
    assert load2.calls == 1


def test_a_rolled_back_savepoint_takes_its_reads_with_it(
    cache: ConfigCache[str, int], engine: Engine
) -> None:
    load = Loader(1, 2, 3)
    with engine.begin() as conn:
        assert cache.get(conn, "before", load) == 1
        savepoint = conn.begin_nested()
        assert cache.get(conn, "inside", load) == 2
        conn.execute(text("SELECT 1"))
        savepoint.rollback()
    assert cache.get(engine, "before", lambda: 99) == 1
    assert cache.get(engine, "inside", lambda: 99) == 99


def test_forget_drops_now_and_again_at_commit(cache: ConfigCache[str, int], engine: Engine) -> None:
    cache.get(engine, "a", lambda: 1)
    cache.get(engine, "b", lambda: 2)
    with engine.begin() as conn:
        cache.forget(lambda key: key == "a", conn=conn)
        assert cache.get(engine, "a", lambda: 5) == 5  # dropped at once
        # A reader racing the change puts the old value back before the commit ...
        cache.get(engine, "a", lambda: 6)
    # ... and the commit drops it again.
    assert cache.get(engine, "a", lambda: 7) == 7
    assert cache.get(engine, "b", lambda: 8) == 2
    forget_all()
    assert cache.get(engine, "b", lambda: 9) == 9


def test_zero_seconds_turns_it_off(
    cache: ConfigCache[str, int], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOPILKA_CONFIG_CACHE_SECONDS", "0")
    get_settings.cache_clear()
    try:
        load = Loader(1, 2)
        assert cache.get(engine, "k", load) == 1
        assert cache.get(engine, "k", load) == 2
    finally:
        monkeypatch.delenv("KOPILKA_CONFIG_CACHE_SECONDS")
        get_settings.cache_clear()
