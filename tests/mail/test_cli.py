"""``kopilka mail send``: one run with a table of what it did, or ``--loop``; ``kopilka mail
test``: one message straight to an address, to check the SMTP settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from kopilka.cli import common
from kopilka.cli import mail as mail_cli
from kopilka.cli.main import app
from tests.mail.conftest import Mail, SmtpServer, free_port


@pytest.fixture(autouse=True)
def wide_consoles() -> Iterator[None]:
    saved = common.console.width, common.err_console.width
    common.console.width = common.err_console.width = 200
    yield
    common.console.width, common.err_console.width = saved


def kopilka(mail: Mail, *args: str) -> Result:
    url = mail.engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(app, ["--database-url", url, "mail", *args])


def cells_of(output: str) -> list[str]:
    row = next(line for line in output.splitlines() if line.startswith("│ ") and "sent" not in line)
    return [cell.strip() for cell in row.split("│") if cell.strip()]


def test_send_sends_what_is_due_and_prints_a_table(mail: Mail, smtp_server: SmtpServer) -> None:
    # Due now: the fixture's queue is a minute ahead, the command runs on the wall clock.
    first, second = mail.queue(now=None), mail.queue(now=None, subject="Второе")
    result = kopilka(mail, "send", "--tenant", mail.tenant.slug)
    assert result.exit_code == 0, result.output
    assert "e-mail" in result.output
    assert cells_of(result.output) == ["2", "2", "0", "0", "0"]  # claimed, sent, ...
    assert len(smtp_server.messages) == 2
    assert {mail.get(first).status, mail.get(second).status} == {"sent"}

    again = kopilka(mail, "send", "--tenant", mail.tenant.slug)
    assert again.exit_code == 0 and cells_of(again.output)[0] == "0"
    assert kopilka(mail, "send", "--tenant", "no-such-tenant").exit_code == 2


def test_send_says_when_the_server_is_down(mail: Mail, monkeypatch: pytest.MonkeyPatch) -> None:
    from kopilka.core.settings import get_settings

    port = free_port()
    monkeypatch.setenv("KOPILKA_SMTP_PORT", str(port))
    get_settings.cache_clear()
    try:
        mail_id = mail.queue(now=None)
        result = kopilka(mail, "send", "--tenant", mail.tenant.slug)
    finally:
        monkeypatch.delenv("KOPILKA_SMTP_PORT")
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert f"The SMTP server 127.0.0.1:{port} did not answer" in result.output
    assert mail.get(mail_id).attempts == 1


def test_send_loop_runs_until_interrupted(
    mail: Mail, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    mail.queue(now=None)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(mail_cli.time, "sleep", pause)
    result = kopilka(mail, "send", "--tenant", mail.tenant.slug, "--loop", "--every", "3")
    assert result.exit_code == 0, result.output
    assert "Sending e-mail every 3 s" in result.output and "Stopped." in result.output
    assert "claimed 1, sent 1" in result.output
    assert pauses == [3.0, 3.0]
    assert len(smtp_server.messages) == 1


def test_test_sends_one_message_straight_to_the_address(smtp_server: SmtpServer) -> None:
    result = CliRunner().invoke(app, ["mail", "test", "admin@example.ru"])
    assert result.exit_code == 0, result.output
    assert f"Sent to admin@example.ru through 127.0.0.1:{smtp_server.port}." in result.output
    (message,) = smtp_server.messages
    assert message["Subject"] == "Kopilka: test message"

    smtp_server.fail_next("550")
    refused = CliRunner().invoke(app, ["mail", "test", "nobody@example.ru"])
    assert refused.exit_code == 2
    assert "550 5.1.1 No such mailbox here" in refused.output
    bad = CliRunner().invoke(app, ["mail", "test", "not an address"])
    assert bad.exit_code == 2 and "invalid_mail_address" in bad.output
