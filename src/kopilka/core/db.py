"""Engines, the shared schema metadata and the column types every table uses.

SQLite (the default, a file under ``var/``) runs in WAL mode with foreign keys on, and
every write transaction starts with ``BEGIN IMMEDIATE`` so two writers never deadlock on a
lock upgrade; a connection marked ``kopilka_readonly`` begins a plain deferred
transaction instead. PostgreSQL runs at READ COMMITTED and relies on row locks taken in a
fixed order (see ``kopilka.ledger.posting``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    DateTime,
    Engine,
    Integer,
    MetaData,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.sql.elements import ColumnElement

from kopilka.core.clock import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# 64-bit ids on PostgreSQL; SQLite needs INTEGER PRIMARY KEY to alias its rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")
Minor = BigInteger  # amounts in minor units
Json = JSON


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on both databases.

    PostgreSQL stores ``timestamptz``; SQLite stores ISO text that sorts as time does,
    because every value is normalised to UTC with microseconds before it is written.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime), "a datetime is required"
        value = as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; the SQLite file's folder is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if is_sqlite(url):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # No ping before each checkout (a round trip on every request): a connection the server
    # dropped fails its first statement, SQLAlchemy then discards the whole pool, and that
    # one request answers 503; the next ones get fresh connections.
    kwargs.setdefault("pool_pre_ping", False)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("kopilka_readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection for reads: on SQLite it never takes the write lock."""
    with engine.connect() as conn:
        conn = conn.execution_options(kopilka_readonly=True)
        with conn.begin():
            yield conn


def one_of(conn: Connection, column: ColumnElement[Any], values: Collection[Any]) -> Any:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:array)``, one parameter.

    An ``IN`` list of hundreds of values makes hundreds of parameters, which the driver
    converts one by one and the server plans afresh for every list length; an array is one
    parameter and one cached plan.
    """
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))
