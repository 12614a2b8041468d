"""The CLI is run as a user runs it, against a database of its own per test module.

SQLite gets a new file; PostgreSQL a new schema (through ``search_path`` in the URL) in
the test database, so that ``kopilka db upgrade`` starts from nothing without disturbing
the schema the rest of the suite shares. The schemas are dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner, Result

from kopilka.cli import common
from kopilka.cli.main import app
from kopilka.core.db import make_engine
from kopilka.core.migrate import upgrade


@dataclass(frozen=True, slots=True)
class Cli:
    """``kopilka --database-url URL ...`` for one database."""

    url: str
    backend: str

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(app, ["--database-url", self.url, *args], input=input)

    def engine(self) -> Engine:
        return make_engine(self.url)


@pytest.fixture(autouse=True)
def wide_consoles() -> Iterator[None]:
    """Rich wraps at 80 columns when not on a terminal; tests read whole lines."""
    saved = common.console.width, common.err_console.width
    common.console.width = common.err_console.width = 200
    yield
    common.console.width, common.err_console.width = saved


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fresh_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], Cli]]:
    """Makes empty databases of one backend (the module runs once per backend)."""
    schemas: list[str] = []
    base: Engine | None = None
    if request.param == "postgresql":
        base = request.getfixturevalue("pg_engine")

    def make() -> Cli:
        if base is None:
            path = Path(tmp_path_factory.mktemp("cli")) / "kopilka.db"
            return Cli(f"sqlite:///{path}", "sqlite")
        schema = f"cli_{uuid.uuid4().hex[:12]}"
        with base.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        schemas.append(schema)
        url = base.url.update_query_dict({"options": f"-csearch_path={schema}"})
        return Cli(url.render_as_string(hide_password=False), "postgresql")

    yield make
    if base is not None:
        with base.begin() as conn:
            for schema in schemas:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture(scope="module")
def cli(fresh_database: Callable[[], Cli]) -> Cli:
    """A migrated database of this module's own."""
    made = fresh_database()
    engine = made.engine()
    upgrade(engine)
    engine.dispose()
    return made


def one_line(result: Result) -> str:
    """The output with Rich's soft line breaks joined, for matching phrases."""
    return " ".join(result.output.split())
