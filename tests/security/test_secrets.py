"""Secrets at rest (issue 9, SPEC X-1): every credential Kopilka checks (staff passwords
and tokens, terminal keys, FarCards secrets, web and cabinet sessions, subscribers'
cabinet passwords) is kept only as a hash. The whole database is read back, every
column of every row, and none of them is found in it, whole or by its random part.

What Kopilka must send to others is kept as it is, since a hash could not be sent:
payment providers' keys (shown on screens only masked, never logged: test_shop.py) and
webhook signing secrets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from kopilka.core.actor import Actor
from kopilka.farcards.terminals import configure_terminal
from kopilka.schema import metadata
from kopilka.subscribers import cabinet
from kopilka.subscribers.registry import set_password
from kopilka.tenancy.actions import create_terminal, create_user, issue_staff_token
from kopilka.tenancy.sessions import open_session
from tests.subscribers.conftest import Isp
from tests.subscribers.conftest import isp as isp  # the fixture

STAFF_PASSWORD = "Correct-Horse-7-Battery"
CABINET_PASSWORD = "Subscriber-Pass-4-Cabinet"


def _everything(engine: Engine) -> str:
    """Every value of every row of every table, as text."""
    parts: list[str] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                parts.extend(_text(value) for value in row)
    return "\n".join(parts)


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex() + "\n" + bytes(value).decode("latin-1")
    return str(value)


def _random_part(secret: str) -> str:
    """The end of ``kpt_0fa8da65f70f_kqYQZ…``: random, unlike a public prefix."""
    return secret[-16:]


def test_credentials_are_kept_only_as_hashes(isp: Isp, engine: Engine) -> None:
    actor = Actor.cli("tests")

    def make(conn: Any) -> dict[str, str]:
        user = create_user(
            conn,
            tenant_id=isp.t,
            login="cashier-secrets",
            password=STAFF_PASSWORD,
            role="cashier",
            actor=actor,
        )
        token, _ = issue_staff_token(conn, user=user, actor=actor)
        terminal, key = create_terminal(conn, tenant_id=isp.t, name="till-secrets", actor=actor)
        _, farcards = configure_terminal(
            conn, tenant_id=isp.t, terminal_id=terminal.id, restaurant_code="7", actor=actor
        )
        assert farcards is not None
        web_session = open_session(
            conn, user=user, source_ip="127.0.0.1", user_agent="tests", actor=actor
        )
        return {
            "staff password": STAFF_PASSWORD,
            "staff token": token,
            "terminal key": key,
            "FarCards secret": farcards,
            "web session": web_session,
        }

    found = isp.tx(make)
    subscriber = isp.subscriber(isp.tariff())
    isp.tx(
        lambda c: set_password(
            c,
            tenant_id=isp.t,
            subscriber_id=subscriber.id,
            password=CABINET_PASSWORD,
            actor=actor,
        )
    )
    signed_in = cabinet.sign_in(
        engine,
        tenant_id=isp.t,
        tenant_slug=isp.tenant.slug,
        account_no=subscriber.account_no,
        password=CABINET_PASSWORD,
        source_ip="127.0.0.1",
    )
    found["cabinet password"] = CABINET_PASSWORD
    found["cabinet session"] = isp.tx(
        lambda c: cabinet.open_session(c, tenant_id=isp.t, subscriber=signed_in, actor=actor)
    )

    stored = _everything(engine)
    # The read-back saw this test's rows.
    assert "cashier-secrets" in stored and subscriber.account_no in stored
    for what, secret in found.items():
        assert secret not in stored, what
        assert _random_part(secret) not in stored, what
