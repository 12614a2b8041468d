"""``kopilka db``: migrations from nothing, and commands refusing an old schema."""

from __future__ import annotations

from collections.abc import Callable

from kopilka.cli.common import shown_url
from kopilka.core.migrate import head_revision
from tests.cli.conftest import Cli


def test_upgrade_an_empty_database_then_nothing_to_do(fresh_database: Callable[[], Cli]) -> None:
    cli = fresh_database()
    head = head_revision()

    result = cli("db", "current", "--check")
    assert result.exit_code == 1
    assert "none (empty database)" in result.output

    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"upgraded from an empty database to revision {head}" in result.output

    result = cli("db", "upgrade")
    assert result.exit_code == 0
    assert "nothing to do" in result.output

    result = cli("db", "current", "--check")
    assert result.exit_code == 0
    assert f"revision {head} (the newest)" in result.output


def test_commands_refuse_an_unmigrated_database(fresh_database: Callable[[], Cli]) -> None:
    cli = fresh_database()

    result = cli("tenant", "list")

    assert result.exit_code == 2
    assert "error [database_not_migrated]" in result.stderr
    assert "kopilka db upgrade" in result.stderr
    assert "Traceback" not in result.output


def test_messages_mask_the_database_password() -> None:
    shown = shown_url("postgresql://kopilka:s3cret@db.example:5432/kopilka")
    assert "s3cret" not in shown
    assert "db.example" in shown


def test_an_unreachable_database_is_a_clear_error() -> None:
    unreachable = Cli("postgresql://nobody@127.0.0.1:1/nothing", "postgresql")

    result = unreachable("tenant", "list")

    assert result.exit_code == 2
    assert result.stderr.startswith("error [database_error]: ")
    assert "Traceback" not in result.output
