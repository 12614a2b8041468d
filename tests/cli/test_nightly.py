"""``kopilka nightly`` on demand, twice: the second run changes nothing more."""

from __future__ import annotations

from .conftest import Cli


def test_nightly_runs_for_every_tenant_and_again_changes_nothing(cli: Cli) -> None:
    assert cli("demo").exit_code == 0
    first = cli("nightly")
    assert first.exit_code == 0, first.output
    assert "nightly routine" in first.output and "demo" in first.output
    second = cli("nightly", "--tenant", "demo")
    assert second.exit_code == 0, second.output
    row = next(line for line in second.output.splitlines() if line.startswith("│ demo"))
    assert [cell.strip() for cell in row.split("│") if cell.strip()] == [
        "demo",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
    ]
