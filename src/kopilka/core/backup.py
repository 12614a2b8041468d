"""Backups of the whole database, and their restore into an empty one.

* SQLite: SQLite's online backup (``sqlite3.Connection.backup``): a consistent copy
  taken while the server runs, into a file that is itself a SQLite database.
* PostgreSQL: ``pg_dump --format=custom`` (one consistent snapshot, taken while the
  server runs), restored with ``pg_restore --single-transaction``: all or nothing.
  The client programs must be on PATH (Debian: ``postgresql-client``), of the server's
  major version or newer.

A restore goes into an empty database only, and ends by checking the ledger. Both
commands print the ledger's fingerprint: how many transfers and entries, and a digest of
every account's balance as its entries add up. The same fingerprint before and after is
the proof that nothing was lost on the way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, func, inspect, make_url, select

from kopilka.core.db import is_sqlite, normalise_url, read_only
from kopilka.core.errors import InvalidInput, Unavailable
from kopilka.ledger.schema import accounts, entries, transfers, units


class BackupErrorCode:
    NOT_EMPTY = "restore_target_not_empty"
    NO_FILE = "backup_file_not_found"
    NOT_A_BACKUP = "not_a_backup"
    TOOL_MISSING = "backup_tool_missing"
    TOOL_FAILED = "backup_tool_failed"


E = BackupErrorCode


@dataclass(frozen=True)
class Fingerprint:
    transfers: int
    entries: int
    accounts: int
    digest: str  # sha256 of every account's (id, unit, sum of its entries), in id order

    def __str__(self) -> str:
        return (
            f"{self.transfers} transfers, {self.entries} entries, {self.accounts} accounts; "
            f"balances digest {self.digest[:16]}"
        )


def fingerprint(conn: Connection) -> Fingerprint:
    sums = (
        select(
            accounts.c.id,
            units.c.code,
            func.coalesce(func.sum(entries.c.amount_minor), 0),
        )
        .select_from(
            accounts.join(units, units.c.id == accounts.c.unit_id).outerjoin(
                entries, entries.c.account_id == accounts.c.id
            )
        )
        .group_by(accounts.c.id, units.c.code)
        .order_by(accounts.c.id)
    )
    digest = hashlib.sha256()
    count = 0
    for account_id, unit, total in conn.execute(sums):
        digest.update(f"{account_id}:{unit}:{int(total)}\n".encode())
        count += 1
    return Fingerprint(
        transfers=int(conn.execute(select(func.count()).select_from(transfers)).scalar_one()),
        entries=int(conn.execute(select(func.count()).select_from(entries)).scalar_one()),
        accounts=count,
        digest=digest.hexdigest(),
    )


def ledger_fingerprint(engine: Engine) -> Fingerprint:
    with read_only(engine) as conn:
        return fingerprint(conn)


def is_empty(engine: Engine) -> bool:
    return not inspect(engine).get_table_names()


def backup(url: str, target: Path) -> None:
    """A consistent copy of the database at ``url`` into ``target`` (overwritten)."""
    url = normalise_url(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_sqlite(url):
        source = sqlite3.connect(_sqlite_path(url))
        try:
            copy = sqlite3.connect(target)
            try:
                source.backup(copy)
            finally:
                copy.close()
        finally:
            source.close()
        return
    libpq, env = _libpq(url)
    _run(["pg_dump", "--format=custom", "--no-owner", "--file", str(target), libpq], env)


def restore(url: str, source: Path, engine: Engine) -> None:
    """``source`` (made by ``backup``) into the empty database at ``url``."""
    if not source.is_file():
        raise InvalidInput(E.NO_FILE, f"{source} is not a file")
    if not is_empty(engine):
        raise InvalidInput(
            E.NOT_EMPTY, "the database to restore into has tables: restore into an empty one"
        )
    url = normalise_url(url)
    if is_sqlite(url):
        with source.open("rb") as handle:
            if handle.read(16) != b"SQLite format 3\x00":
                raise InvalidInput(E.NOT_A_BACKUP, f"{source} is not a SQLite backup")
        engine.dispose()
        backup_of = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(_sqlite_path(url))
            try:
                backup_of.backup(target)
            finally:
                target.close()
        finally:
            backup_of.close()
        return
    with source.open("rb") as handle:
        if handle.read(5) != b"PGDMP":
            raise InvalidInput(E.NOT_A_BACKUP, f"{source} is not a pg_dump custom-format file")
    libpq, env = _libpq(url)
    _run(
        [
            "pg_restore",
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            libpq,
            str(source),
        ],
        env,
    )


def _sqlite_path(url: str) -> str:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise InvalidInput(E.NOT_A_BACKUP, "an in-memory database has nothing to back up")
    return database


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """libpq's form of the URL, its password passed in the environment (never in ``ps``)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(command: list[str], env: dict[str, str]) -> None:
    if shutil.which(command[0]) is None:
        raise Unavailable(
            E.TOOL_MISSING,
            f"{command[0]} is not on PATH: install PostgreSQL's client programs "
            "(Debian: postgresql-client)",
        )
    # The program is ours (pg_dump, pg_restore); the URL and file are arguments, no shell.
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise Unavailable(
            E.TOOL_FAILED, f"{command[0]} failed: {done.stderr.strip()[-2000:] or done.returncode}"
        )
