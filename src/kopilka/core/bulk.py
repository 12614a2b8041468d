"""Many-row writes for the ledger's hot path, at the driver's speed.

SQLAlchemy Core builds and types every parameter row one by one; for the thousands of
rows a posting batch writes, that costs more than the database does. Here:

* SQLite: a statement compiled once, each column's bind processor looked up once, the
  rows handed to sqlite3's ``executemany`` (which loops in C) as tuples.
* PostgreSQL: inserts go through ``COPY … FROM STDIN`` and updates through one
  ``UPDATE … FROM unnest(arrays)`` statement, so a batch of any size costs the server one
  statement per table instead of one per row.

Values are exactly what Core would send: the same bind processors make them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Connection, Table, bindparam, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    processors: tuple[Callable[[Any], Any] | None, ...]


_CACHE: dict[tuple[str, str, tuple[str, ...], str], _Compiled] = {}


def insert_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """``INSERT INTO table (columns) VALUES (...)`` once per row, as one executemany."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _copy_rows(conn, table, columns, rows)
        return
    key = (conn.dialect.name, table.name, tuple(columns), "insert")
    compiled = _CACHE.get(key)
    if compiled is None:
        stmt = insert(table).values({name: bindparam(name) for name in columns})
        compiled = _compile(conn, stmt, [table.c[name].type for name in columns], columns)
        _CACHE[key] = compiled
    _executemany(conn, compiled, rows)


def update_rows(
    conn: Connection,
    table: Table,
    key_column: str,
    set_columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    increment: bool = False,
    extra_key: str | None = None,
) -> None:
    """``UPDATE table SET col = :col (or col = col + :col) WHERE key = :key [AND extra]``.

    Each row is ``(*set values, key value[, extra key value])``.
    """
    if not rows:
        return
    keys = [key_column] if extra_key is None else [key_column, extra_key]
    if conn.dialect.name == "postgresql":
        _update_from_arrays(conn, table, keys, set_columns, rows, increment=increment)
        return
    cache_key = (
        conn.dialect.name,
        table.name,
        (*set_columns, "|", *keys),
        "increment" if increment else "update",
    )
    compiled = _CACHE.get(cache_key)
    if compiled is None:
        values: dict[str, ColumnElement[Any]] = {}
        for name in set_columns:
            param = bindparam(f"v_{name}", type_=table.c[name].type)
            values[name] = table.c[name] + param if increment else param
        stmt = update(table).values(values)
        for name in keys:
            stmt = stmt.where(table.c[name] == bindparam(f"k_{name}", type_=table.c[name].type))
        names = [f"v_{n}" for n in set_columns] + [f"k_{n}" for n in keys]
        types = [table.c[n].type for n in set_columns] + [table.c[n].type for n in keys]
        compiled = _compile(conn, stmt, types, names)
        _CACHE[cache_key] = compiled
    _executemany(conn, compiled, rows)


def _compile(conn: Connection, stmt: Any, types: list[Any], names: Sequence[str]) -> _Compiled:
    dialect = conn.dialect
    done = stmt.compile(dialect=dialect)
    processors = tuple(t.dialect_impl(dialect).bind_processor(dialect) for t in types)
    if done.positional:
        order = [name for name in done.positiontup]
        assert sorted(order) == sorted(names), "every parameter is named exactly once"
        index = {name: i for i, name in enumerate(names)}
        permutation = tuple(index[name] for name in order)
        return _Positional(done.string, tuple(processors[i] for i in permutation), permutation)
    assert set(done.binds) >= set(names), "every column has its parameter"
    return _Named(done.string, processors, tuple(names))


@dataclass(frozen=True, slots=True)
class _Positional(_Compiled):
    permutation: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Named(_Compiled):
    names: tuple[str, ...]


def _executemany(conn: Connection, compiled: _Compiled, rows: Sequence[Sequence[Any]]) -> None:
    # A batch repeats values (its moment, its tenant): each distinct value is processed once.
    memo: list[dict[Any, Any]] = [{} for _ in compiled.processors]
    active = [(i, p, memo[i]) for i, p in enumerate(compiled.processors) if p is not None]

    def prepared(values: list[Any]) -> list[Any]:
        for i, process, seen in active:
            value = values[i]
            if value is None:
                continue
            try:
                values[i] = seen[value]
            except KeyError:
                values[i] = seen[value] = process(value)
            except TypeError:  # unhashable (a JSON document)
                values[i] = process(value)
        return values

    params: list[Any]
    if isinstance(compiled, _Positional):
        perm = compiled.permutation
        params = [tuple(prepared([row[i] for i in perm])) for row in rows]
    else:
        assert isinstance(compiled, _Named)
        names = compiled.names
        params = [dict(zip(names, prepared(list(row)), strict=True)) for row in rows]
    conn.exec_driver_sql(compiled.sql, params)


def _copy_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    dialect = conn.dialect
    processors = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    ]
    json_columns = {i for i, name in enumerate(columns) if isinstance(table.c[name].type, JSON)}
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    memo: dict[tuple[int, Any], Any] = {}
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        with cursor.copy(sql) as copy:
            for row in rows:
                values = list(row)
                for i, value in enumerate(values):
                    if value is None:
                        continue
                    if i in json_columns:
                        values[i] = json.dumps(value, default=str)
                    elif processors[i] is not None:
                        try:
                            values[i] = memo[(i, value)]
                        except KeyError:
                            values[i] = memo[(i, value)] = processors[i](value)  # type: ignore[misc]
                copy.write_row(values)
    except dbapi_error as error:
        # The driver's own error bypassed SQLAlchemy: raise what SQLAlchemy would have
        # (IntegrityError for a duplicate key, OperationalError for a deadlock...), so
        # callers such as run_transaction recognise it and retry.
        raise DBAPIError.instance(sql, None, error, dbapi_error, dialect=dialect) from error
    finally:
        cursor.close()


_ARRAY_SQL: dict[tuple[str, tuple[str, ...], tuple[str, ...], bool], str] = {}


def _update_from_arrays(
    conn: Connection,
    table: Table,
    keys: Sequence[str],
    set_columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    increment: bool,
) -> None:
    names = [*set_columns, *keys]
    cache_key = (table.name, tuple(set_columns), tuple(keys), increment)
    sql = _ARRAY_SQL.get(cache_key)
    if sql is None:
        dialect = conn.dialect
        arrays = ", ".join(
            f"%(a{i})s::{table.c[name].type.compile(dialect=dialect)}[]"
            for i, name in enumerate(names)
        )
        assigns = ", ".join(
            f"{name} = t.{name} + v.c{i}" if increment else f"{name} = v.c{i}"
            for i, name in enumerate(set_columns)
        )
        where = " AND ".join(f"t.{name} = v.c{len(set_columns) + j}" for j, name in enumerate(keys))
        aliases = ", ".join(f"c{i}" for i in range(len(names)))
        sql = (
            f"UPDATE {table.name} AS t SET {assigns} "
            f"FROM unnest({arrays}) AS v({aliases}) WHERE {where}"
        )
        _ARRAY_SQL[cache_key] = sql
    dialect = conn.dialect
    columns = list(zip(*rows, strict=True))
    params: dict[str, list[Any]] = {}
    for i, name in enumerate(names):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        values = list(columns[i])
        if process is not None:
            values = [None if v is None else process(v) for v in values]
        params[f"a{i}"] = values
    conn.exec_driver_sql(sql, params)


def new_ids(conn: Connection, table: Table, count: int) -> list[int]:
    """Ids for ``count`` new rows of ``table`` (its ``id`` column), in one round trip.

    PostgreSQL draws them from the table's sequence. SQLite continues after the largest id:
    safe, because the transaction holds SQLite's write lock (BEGIN IMMEDIATE) until commit.
    """
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":
        return list(
            conn.execute(
                text(
                    f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) "
                    "FROM generate_series(1, :n)"
                ),
                {"n": count},
            ).scalars()
        )
    last = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
    return list(range(last + 1, last + 1 + count))
