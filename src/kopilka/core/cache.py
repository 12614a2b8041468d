"""Short-lived, per-process copies of what the hot paths read on every request and staff
change seldom (a terminal key's sign-in, a loyalty program, a system account's id).

Each server process keeps its own copy, per database for ``config_cache_seconds`` (setting
``KOPILKA_CONFIG_CACHE_SECONDS``, default 2 s; 0 turns caching off). A change made through
a process drops that process's entries at once (the action that changes it calls
``forget``); other processes see it when their copy lapses, so a revoked key or a changed
rule takes effect everywhere within that time. Nothing that moves money is cached: balances,
cards and checks are always read from the database.

A value read inside a transaction enters the cache only when that transaction commits, and
a change drops the entries again at its commit: a rolled-back row is never cached, and a
reader that raced the change cannot keep the old value past it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from cachetools import TTLCache
from sqlalchemy import URL, Connection, Engine, event

from kopilka.core.settings import get_settings

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING = object()
_PENDING = "kopilka_cache_pending"
_MARKS = "kopilka_cache_savepoints"
_ALL: list[ConfigCache[object, object]] = []


class ConfigCache(Generic[K, V]):
    """A bounded map whose entries lapse after ``config_cache_seconds``; thread-safe."""

    def __init__(self, name: str, maxsize: int = 10_000) -> None:
        self.name = name
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._ttl: float | None = None
        self._entries: TTLCache[tuple[URL, K], V] | None = None
        _ALL.append(self)  # type: ignore[arg-type]

    def _store(self) -> TTLCache[tuple[URL, K], V] | None:
        ttl = get_settings().config_cache_seconds
        if ttl != self._ttl:  # first use, or the setting changed (tests)
            self._ttl = ttl
            self._entries = TTLCache(self._maxsize, ttl) if ttl > 0 else None
        return self._entries

    def get(self, bind: Connection | Engine, key: K, load: Callable[[], V | None]) -> V | None:
        """The cached value of ``key`` in ``bind``'s database, or ``load()``, kept unless
        it is ``None``; when ``bind`` is a connection in a transaction, kept once that
        commits."""
        full = (bind.engine.url, key)
        with self._lock:
            store = self._store()
            if store is not None:
                found = store.get(full, _MISSING)
                if found is not _MISSING:
                    return found  # type: ignore[return-value]
        value = load()
        if value is not None and store is not None:
            if isinstance(bind, Connection) and bind.in_transaction():
                _pending(bind).append((self, full, value))
            else:
                self._put(full, value)
        return value

    def _put(self, key: tuple[URL, K], value: V) -> None:
        with self._lock:
            if self._entries is not None:
                self._entries[key] = value

    def forget(
        self, match: Callable[[K], bool] | None = None, *, conn: Connection | None = None
    ) -> None:
        """Drop the entries whose key ``match`` accepts (every entry without one), now and,
        when ``conn`` is in a transaction, again as it commits."""
        self._drop(match)
        if conn is not None and conn.in_transaction():
            _pending(conn).append((self, match, _MISSING))

    def _drop(self, match: Callable[[K], bool] | None) -> None:
        with self._lock:
            if self._entries is None:
                return
            if match is None:
                self._entries.clear()
                return
            for key in [k for k in self._entries if match(k[1])]:
                self._entries.pop(key, None)


def _pending(conn: Connection) -> list[tuple[ConfigCache[Any, Any], Any, Any]]:
    pending: list[tuple[ConfigCache[Any, Any], Any, Any]] = conn.info.setdefault(_PENDING, [])
    return pending


@event.listens_for(Engine, "commit")
def _on_commit(conn: Connection) -> None:
    conn.info.pop(_MARKS, None)
    for cache, key, value in conn.info.pop(_PENDING, ()):
        if value is _MISSING:
            cache._drop(key)
        else:
            cache._put(key, value)


@event.listens_for(Engine, "rollback")
def _on_rollback(conn: Connection) -> None:
    if conn.invalidated:
        # The database went away mid-transaction: the connection's info cannot be reached
        # (reading it raises PendingRollbackError, a 500 instead of the 503 the lost
        # connection deserves) and is cleared when SQLAlchemy reconnects anyway.
        return
    conn.info.pop(_PENDING, None)
    conn.info.pop(_MARKS, None)


# Savepoints nest: a stack of where each one began in the pending list.
@event.listens_for(Engine, "savepoint")
def _on_savepoint(conn: Connection, name: str | None) -> None:
    marks: list[int] = conn.info.setdefault(_MARKS, [])
    marks.append(len(conn.info.get(_PENDING, ())))


@event.listens_for(Engine, "release_savepoint")
def _on_release_savepoint(conn: Connection, name: str | None, context: object) -> None:
    marks: list[int] = conn.info.get(_MARKS, [])
    if marks:
        marks.pop()


@event.listens_for(Engine, "rollback_savepoint")
def _on_rollback_savepoint(conn: Connection, name: str | None, context: object) -> None:
    if conn.invalidated:  # as in _on_rollback
        return
    # What was read under the savepoint may have been written under it: not kept.
    marks: list[int] = conn.info.get(_MARKS, [])
    if marks:
        mark = marks.pop()
        if _PENDING in conn.info:
            del conn.info[_PENDING][mark:]


def forget_all(conn: Connection | None = None) -> None:
    """Empty every cache of this process (a tenant's data purged, tests), now and, when
    ``conn`` is in a transaction, again as it commits."""
    for cache in _ALL:
        cache.forget(conn=conn)
