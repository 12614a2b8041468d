"""Queuing outgoing e-mail in the caller's transaction, and reading the queue for screens.

A domain that has something to tell a client (a membership sold, with its activation
code) calls ``queue_mail`` inside the transaction that makes the change. The message is
a row of ``mail_outbox`` that commits or rolls back with the change: a client is never
told of a sale that did not happen, and a sale never loses its message because the SMTP
server was down. Nothing here touches the network; ``kopilka.mail.sender`` sends after
the commit::

    pending ──accepted by the server──> sent
       │  ^
       │  └── refused for now, or no answer: tried again later (sender.RETRY_DELAYS)
       └───── refused for good (5xx), or no luck on the last try ──> failed
                                                                     │
                          retry_now (staff, "Send again") <──────────┘

The caller writes the message in the client's language; this module stores and checks,
it does not translate. Every field is checked before anything is written: the recipient
is one plain address, the subject one line (no header can be smuggled in through it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import InvalidInput, NotFound, Refused
from kopilka.mail.error_codes import MailErrorCode as E
from kopilka.mail.schema import mail_outbox
from kopilka.tenancy.audit import record_audit

PENDING, SENT, FAILED = "pending", "sent", "failed"
STATUSES = (PENDING, SENT, FAILED)
MAX_SUBJECT = 200
MAX_KIND = 32
MAX_REF = 64
MAX_ADDRESS = 200  # the rule for a card holder's e-mail (the column holds 254)
MAX_BODY_CHARS = 1_000_000
PAGE = 50

# The rule of kopilka.loyalty.cards.normalise_email (mail sits below the domains, so it
# keeps its own copy; tests/mail check that both agree), and then no character that
# means something in an address header or the SMTP envelope.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
_ADDRESS_SPECIALS = re.compile(r'[,;<>()\[\]:\\"\x00-\x1f\x7f]')
# Anything that ends a line for some reader of a header: C0 controls (CR, LF, TAB...),
# DEL, NEL and the Unicode line and paragraph separators.
_LINE_BREAKERS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_KIND = re.compile(r"[a-z][a-z0-9_.]{0,31}")


# --------------------------------------------------------------------------- checking


def clean_address(address: object) -> str:
    """One plain e-mail address, trimmed, its domain in lower case;
    ``invalid_mail_address`` otherwise."""
    raw = address.strip() if isinstance(address, str) else ""
    if len(raw) > MAX_ADDRESS or not _EMAIL.fullmatch(raw) or _ADDRESS_SPECIALS.search(raw):
        raise InvalidInput(
            E.INVALID_MAIL_ADDRESS, f"{address!r} is not an e-mail address", field="to_addr"
        )
    local, domain = raw.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def clean_subject(subject: object) -> str:
    """A subject of 1 to ``MAX_SUBJECT`` characters on one line, trimmed of spaces."""
    raw = subject if isinstance(subject, str) else ""
    if _LINE_BREAKERS.search(raw):
        # A line break in a header would start another header (Bcc: ...): refused, even
        # at the end, never cleaned up, so the caller's mistake is seen.
        raise InvalidInput(
            E.INVALID_MAIL_SUBJECT,
            "a subject is one line, without line breaks or other control characters",
            field="subject",
            reason="control",
        )
    text = raw.strip()
    if not 1 <= len(text) <= MAX_SUBJECT:
        raise InvalidInput(
            E.INVALID_MAIL_SUBJECT,
            f"a subject is 1 to {MAX_SUBJECT} characters",
            field="subject",
            reason="length",
        )
    return text


def _bad(field: str, detail: str) -> InvalidInput:
    return InvalidInput(E.INVALID_MAIL, detail, field=field)


def _clean_kind(kind: object) -> str:
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise _bad("kind", "a kind is 1 to 32 small latin letters, digits, _ or .")
    return kind


def _clean_ref(ref: object) -> str:
    if not isinstance(ref, str) or len(ref) > MAX_REF or _LINE_BREAKERS.search(ref):
        raise _bad("ref", f"a reference is one line of at most {MAX_REF} characters")
    return ref


def _clean_body(field: str, body: object, *, required: bool) -> str | None:
    if body is None and not required:
        return None
    if not isinstance(body, str) or (required and not body.strip()):
        raise _bad(field, f"{field} is text" + (", not empty" if required else ""))
    if len(body) > MAX_BODY_CHARS or "\x00" in body:
        raise _bad(field, f"{field} is at most {MAX_BODY_CHARS} characters, without NUL")
    return body


# --------------------------------------------------------------------------- writing


def queue_mail(
    conn: Connection,
    *,
    tenant_id: int,
    kind: str,
    ref: str,
    to_addr: str,
    subject: str,
    body_text: str,
    body_html: str | None = None,
    now: datetime | None = None,
) -> int:
    """Put a message in the outbox, due at once, in the caller's transaction; its id.

    ``kind`` names what it is (``membership_sold``), ``ref`` what it is about (an order's
    number), both for the log. ``body_html``, when given, goes as the alternative to
    ``body_text``, which every client can show. Refusals: ``invalid_mail_address``,
    ``invalid_mail_subject``, ``invalid_mail``; nothing is written then.
    """
    row = {
        "tenant_id": tenant_id,
        "kind": _clean_kind(kind),
        "ref": _clean_ref(ref),
        "to_addr": clean_address(to_addr),
        "subject": clean_subject(subject),
        "body_text": _clean_body("body_text", body_text, required=True),
        "body_html": _clean_body("body_html", body_html, required=False),
    }
    assert isinstance(tenant_id, int) and tenant_id > 0
    moment = as_utc(now) if now is not None else utcnow()
    mail_id = int(
        conn.execute(
            mail_outbox.insert().returning(mail_outbox.c.id),
            {
                **row,
                "status": PENDING,
                "attempts": 0,
                "next_attempt_at": moment,  # due at once
                "last_error": "",
                "created_at": moment,
            },
        ).scalar_one()
    )
    assert mail_id > 0
    return mail_id


def retry_now(
    conn: Connection,
    *,
    tenant_id: int,
    mail_id: int,
    actor: Actor,
    now: datetime | None = None,
) -> MailView:
    """Make a failed message due now, with a new round of tries (its last error stays
    shown until the next try). One that is pending or sent is ``mail_not_retryable``."""
    row = conn.execute(
        select(mail_outbox.c.status, mail_outbox.c.attempts)
        .where(mail_outbox.c.tenant_id == tenant_id, mail_outbox.c.id == mail_id)
        .with_for_update()
    ).first()
    if row is None:
        raise _not_found(mail_id)
    if row.status != FAILED:
        raise Refused(
            E.MAIL_NOT_RETRYABLE,
            f"message {mail_id} is {row.status}; only a failed one is sent again",
            mail_id=mail_id,
            status=row.status,
        )
    moment = as_utc(now) if now is not None else utcnow()
    conn.execute(
        update(mail_outbox)
        .where(mail_outbox.c.id == mail_id)
        .values(status=PENDING, attempts=0, next_attempt_at=moment)
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="mail.retry",
        object_type="mail",
        object_id=mail_id,
        details={"attempts_before": row.attempts},
    )
    again = get_mail(conn, tenant_id, mail_id)
    assert again.status == PENDING and again.attempts == 0
    return again


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class MailView:
    """A message as the log shows it (``body_text``/``body_html`` only from ``get_mail``)."""

    id: int
    tenant_id: int
    kind: str
    ref: str
    to_addr: str
    subject: str
    status: str  # pending | sent | failed
    attempts: int  # tries in this round (since it was queued or sent again)
    next_attempt_at: datetime | None
    last_error: str
    sent_at: datetime | None
    created_at: datetime
    body_text: str = ""
    body_html: str | None = None

    @property
    def retryable(self) -> bool:
        return self.status == FAILED


_LISTED = [c for c in mail_outbox.c if c.name not in ("body_text", "body_html")]


def _view(row: Any) -> MailView:
    mapping = row._mapping
    return MailView(
        id=row.id,
        tenant_id=row.tenant_id,
        kind=row.kind,
        ref=row.ref,
        to_addr=row.to_addr,
        subject=row.subject,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        sent_at=row.sent_at,
        created_at=row.created_at,
        body_text=mapping.get("body_text", ""),
        body_html=mapping.get("body_html"),
    )


def _not_found(mail_id: int) -> NotFound:
    return NotFound(E.MAIL_NOT_FOUND, f"message {mail_id} does not exist", mail_id=mail_id)


def get_mail(conn: Connection, tenant_id: int, mail_id: int) -> MailView:
    """One message of the tenant, with its bodies; ``mail_not_found`` otherwise."""
    row = conn.execute(
        select(mail_outbox).where(mail_outbox.c.tenant_id == tenant_id, mail_outbox.c.id == mail_id)
    ).first()
    if row is None:
        raise _not_found(mail_id)
    return _view(row)


def list_mail(
    conn: Connection,
    tenant_id: int,
    *,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = PAGE,
) -> list[MailView]:
    """The tenant's messages (in one status), newest first; the next page starts before
    the last id of this one (``before_id``). Without their bodies."""
    assert status is None or status in STATUSES, status
    assert 1 <= limit <= 1000
    query = select(*_LISTED).where(mail_outbox.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(mail_outbox.c.status == status)
    if before_id is not None:
        query = query.where(mail_outbox.c.id < before_id)
    query = query.order_by(mail_outbox.c.id.desc()).limit(limit)
    return [_view(row) for row in conn.execute(query)]


def count_mail(conn: Connection, tenant_id: int) -> dict[str, int]:
    """How many of the tenant's messages are in each status (every status named)."""
    query = (
        select(mail_outbox.c.status, func.count())
        .where(mail_outbox.c.tenant_id == tenant_id)
        .group_by(mail_outbox.c.status)
    )
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({str(status): int(n) for status, n in conn.execute(query)})
    return counts
