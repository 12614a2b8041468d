"""``kopilka tenant / user / terminal``: creating, listing, and every refusal as exit 2."""

from __future__ import annotations

import re
import uuid

from kopilka.core.db import read_only
from kopilka.tenancy.actions import authenticate, resolve_terminal_key
from tests.cli.conftest import Cli, one_line


def _slug() -> str:
    return f"shop-{uuid.uuid4().hex[:8]}"


def _tenant(cli: Cli) -> str:
    slug = _slug()
    result = cli("tenant", "create", slug, "--name", "Coffee Shop")
    assert result.exit_code == 0, result.output
    return slug


def test_tenant_create_and_list(cli: Cli) -> None:
    slug = _slug()
    result = cli(
        "tenant", "create", slug, "--name", "Berlin Shop",
        "--locale", "en", "--timezone", "Europe/Berlin", "--currency", "EUR",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"tenant '{slug}' (Berlin Shop) created" in result.output

    listed = cli("tenant", "list")
    assert listed.exit_code == 0
    line = next(line for line in listed.output.splitlines() if slug in line)
    assert "Europe/Berlin" in line and "EUR" in line


def test_tenant_errors_are_one_red_line_and_exit_2(cli: Cli) -> None:
    slug = _tenant(cli)
    cases = [
        (["tenant", "create", slug, "--name", "Again"], "tenant_exists"),
        (["tenant", "create", "Bad Slug!", "--name", "X"], "invalid_slug"),
        (["tenant", "create", _slug(), "--name", "X", "--currency", "XYZ"], "unknown_currency"),
        (
            ["tenant", "create", _slug(), "--name", "X", "--timezone", "Mars/Base"],
            "invalid_timezone",
        ),
    ]
    for args, code in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith(f"error [{code}]: "), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output


def test_user_create_with_password_option_and_prompt(cli: Cli) -> None:
    slug = _tenant(cli)
    given = cli(
        "user", "create", "--tenant", slug, "--login", "anna", "--role", "cashier",
        "--password", "cashier-pass-1", "--full-name", "Anna K",
    )  # fmt: skip
    assert given.exit_code == 0, given.output
    assert "user 'anna' (cashier)" in given.output

    prompted = cli(
        "user", "create", "--tenant", slug, "--login", "boris", "--role", "owner",
        input="owner-pass-22\nowner-pass-22\n",
    )  # fmt: skip
    assert prompted.exit_code == 0, prompted.output
    assert "owner-pass-22" not in prompted.output  # typed hidden

    engine = cli.engine()
    with read_only(engine) as conn:
        assert authenticate(conn, tenant_slug=slug, login="anna", password="cashier-pass-1")
        assert authenticate(conn, tenant_slug=slug, login="boris", password="owner-pass-22")
    engine.dispose()


def test_user_create_errors(cli: Cli) -> None:
    slug = _tenant(cli)
    base = ["user", "create", "--tenant", slug, "--password", "long-enough-1"]
    assert cli(*base, "--login", "vera", "--role", "cashier").exit_code == 0
    cases = [
        ([*base, "--login", "vera", "--role", "cashier"], "user_exists"),
        ([*base, "--login", "gleb", "--role", "boss"], "invalid_role"),
        (["user", "create", "--tenant", slug, "--login", "gleb", "--role", "cashier",
          "--password", "short"], "weak_password"),
        (["user", "create", "--tenant", "no-such-shop", "--login", "gleb", "--role", "cashier",
          "--password", "long-enough-1"], "tenant_not_found"),
    ]  # fmt: skip
    for args, code in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert f"error [{code}]" in result.stderr


def test_terminal_create_list_and_revoke(cli: Cli) -> None:
    slug = _tenant(cli)
    created = cli("terminal", "create", "--tenant", slug, "--name", "Till 1")
    assert created.exit_code == 0, created.output
    assert "not shown again" in created.stderr
    match = re.search(r"id (\d+)", created.output)
    key = re.search(r"kpt_\S+", created.output)
    assert match and key
    terminal_id = match.group(1)

    engine = cli.engine()
    with read_only(engine) as conn:
        assert resolve_terminal_key(conn, key.group(0)) is not None

    listed = cli("terminal", "list", "--tenant", slug)
    assert "Till 1" in listed.output and "active" in listed.output

    revoked = cli("terminal", "revoke", terminal_id, "--tenant", slug)
    assert revoked.exit_code == 0, revoked.output
    with read_only(engine) as conn:
        assert resolve_terminal_key(conn, key.group(0)) is None
    engine.dispose()
    assert "revoked" in cli("terminal", "list", "--tenant", slug).output


def test_terminal_errors(cli: Cli) -> None:
    slug = _tenant(cli)
    assert cli("terminal", "create", "--tenant", slug, "--name", "Till 1").exit_code == 0
    cases = [
        (["terminal", "create", "--tenant", slug, "--name", "Till 1"], "terminal_exists"),
        (["terminal", "create", "--tenant", slug, "--name", "Till 2", "--branch", "999999"],
         "branch_not_found"),
        (["terminal", "revoke", "999999", "--tenant", slug], "terminal_not_found"),
    ]  # fmt: skip
    for args, code in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert f"error [{code}]" in one_line(result)


def test_terminal_in_a_branch(cli: Cli) -> None:
    slug = _tenant(cli)
    branch = cli("tenant", "add-branch", slug, "--name", "Airport")
    assert branch.exit_code == 0, branch.output
    match = re.search(r"id (\d+)", branch.output)
    assert match
    created = cli(
        "terminal", "create", "--tenant", slug, "--name", "Gate 5", "--branch", match.group(1)
    )
    assert created.exit_code == 0, created.output
