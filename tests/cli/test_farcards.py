"""``kopilka farcards configure``: the ExtDllHttp.ini printed once is the one the settings
screen shows (one function builds both), and a bad setting is one red line naming it."""

from __future__ import annotations

import re
import uuid

from kopilka.core.db import read_only
from kopilka.farcards.ini import ext_dll_http_ini
from kopilka.farcards.terminals import authenticate
from tests.cli.conftest import Cli, one_line


def _terminal(cli: Cli) -> tuple[str, str]:
    slug = f"rk-{uuid.uuid4().hex[:8]}"
    assert cli("tenant", "create", slug, "--name", "Ресторан").exit_code == 0
    created = cli("terminal", "create", "--tenant", slug, "--name", "r_keeper")
    match = re.search(r"id (\d+)", created.output)
    assert created.exit_code == 0 and match, created.output
    return slug, match.group(1)


def test_configure_prints_the_ini_once(cli: Cli) -> None:
    slug, terminal = _terminal(cli)
    args = ["farcards", "configure", "--tenant", slug, "--terminal", terminal]
    done = cli(*args, "--restaurant", "9999", "--station", "2", "--base-url", "https://k.example/")
    assert done.exit_code == 0, done.output
    assert "not shown again" in done.stderr
    secret = re.search(r"kfc_\S+", done.output)
    assert secret
    assert ext_dll_http_ini("https://k.example", slug, secret.group(0)) in done.output
    engine = cli.engine()
    with read_only(engine) as conn:
        assert authenticate(conn, tenant_slug=slug, secret=secret.group(0)).link.station_codes == (
            "2",
        )
    engine.dispose()

    again = cli(*args, "--restaurant", "9999", "--allow-ip", "192.168.10.0/24")
    assert again.exit_code == 0 and "kfc_" not in again.output
    assert "the URL secret is unchanged" in again.output

    bad = cli(*args, "--restaurant", "9999", "--allow-ip", "10.0.0.300")
    assert bad.exit_code == 2
    assert "error [farcards_invalid_allow_list]" in one_line(bad)
