"""What a cash register is to Kopilka: one interface, an adapter per kind of register.

A receipt goes to its register in two steps, each a call over the network made outside
any database transaction (``kopilka.fiscal.receipts`` records the outcome afterwards):

* ``submit(receipt)`` hands the receipt over. The register either **accepts** it (its
  own id for the receipt, ``uuid``, and ``wait`` while it is being fiscalised, or
  ``done``), **refuses** it (a bad INN, a bad e-mail, sums that do not add up, wrong
  credentials: the register's own words in ``error``; the same receipt again would be
  refused again), or the call fails on the way (**transient**: no connection, a timeout,
  an error of the service's own; the same receipt may and should be sent again: a
  register is idempotent by the receipt's ``external_id``).
* ``report(uuid)`` asks how far an accepted receipt got: ``wait``, ``done`` with the
  fiscal data (the fiscal drive's number, the document's number and fiscal attribute,
  the moment, the total, ...), ``failed`` with the register's words, or ``transient``
  when the question itself did not get through.

Adapters: ``atol_online_v5`` (ATOL Online, API v5: ``kopilka.fiscal.atol``). A register
row names its adapter and keeps that adapter's settings; ``adapter_for(register)`` makes
the adapter, ``parse_settings`` checks settings before they are stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from kopilka.core.errors import InvalidInput
from kopilka.fiscal.error_codes import FiscalErrorCode as E

ATOL_ONLINE_V5 = "atol_online_v5"
ADAPTERS = (ATOL_ONLINE_V5,)

# An e-mail as registers take it: one @, a dot in the domain, no spaces. ATOL keeps at
# most 64 characters of an e-mail (the buyer's and the seller's alike).
MAX_EMAIL = 64
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def clean_email(value: object, *, field: str = "email") -> str:
    """The e-mail without surrounding spaces; ``invalid_contact`` when it is not one."""
    text = value.strip() if isinstance(value, str) else ""
    if not _EMAIL.match(text) or len(text) > MAX_EMAIL:
        raise InvalidInput(
            E.INVALID_CONTACT,
            f"{field} is an e-mail address such as guest@example.ru, at most {MAX_EMAIL} "
            f"characters, not {value!r}",
            field=field,
        )
    return text


class SubmitOutcome(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    TRANSIENT = "transient"


@dataclass(frozen=True, slots=True)
class ReceiptToSend:
    """A receipt as an adapter sends it; ``payload`` is checked by ``receipts``."""

    operation: str  # sell | sell_refund
    external_id: str  # the register's idempotency key
    payload: Mapping[str, Any]
    email: str | None
    phone: str | None
    moment: datetime  # when it is sent: the document's time for the register


@dataclass(frozen=True, slots=True)
class SubmitResult:
    outcome: SubmitOutcome
    uuid: str | None = None  # accepted: the register's id of the receipt
    status: str | None = None  # accepted: wait | done
    fiscal: dict[str, Any] | None = None  # accepted as done: the fiscal data, if given
    error: str | None = None  # refused or transient: what went wrong, in words

    @classmethod
    def accepted(
        cls, uuid: str, status: str = "wait", fiscal: dict[str, Any] | None = None
    ) -> SubmitResult:
        assert uuid and status in ("wait", "done")
        return cls(SubmitOutcome.ACCEPTED, uuid=uuid, status=status, fiscal=fiscal)

    @classmethod
    def refused(cls, error: str) -> SubmitResult:
        assert error
        return cls(SubmitOutcome.REFUSED, error=error)

    @classmethod
    def transient(cls, error: str) -> SubmitResult:
        assert error
        return cls(SubmitOutcome.TRANSIENT, error=error)


class ReportStatus(StrEnum):
    WAIT = "wait"
    DONE = "done"
    FAILED = "failed"
    TRANSIENT = "transient"


@dataclass(frozen=True, slots=True)
class ReportResult:
    status: ReportStatus
    fiscal: dict[str, Any] | None = None  # done: the fiscal data
    error: str | None = None  # failed or transient: what went wrong, in words

    def __post_init__(self) -> None:
        assert (self.status == ReportStatus.DONE) == (self.fiscal is not None)
        assert self.status not in (ReportStatus.FAILED, ReportStatus.TRANSIENT) or self.error


class ReceiptAdapter(Protocol):
    """A cash register as Kopilka speaks to it (see the module's docstring)."""

    def submit(self, receipt: ReceiptToSend) -> SubmitResult: ...

    def report(self, uuid: str) -> ReportResult: ...


class RegisterLike(Protocol):
    """What ``adapter_for`` needs of a register: its adapter's name and settings."""

    @property
    def adapter(self) -> str: ...

    @property
    def settings(self) -> Mapping[str, Any]: ...


def _check_adapter(adapter: str) -> None:
    if adapter not in ADAPTERS:
        raise InvalidInput(
            E.INVALID_CASH_REGISTER,
            f"a register's adapter is one of {', '.join(ADAPTERS)}, not {adapter!r}",
            field="adapter",
        )


def parse_settings(
    adapter: str, raw: Mapping[str, Any], previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The settings of a register of ``adapter`` as stored, checked; a field missing from
    ``raw`` (or an empty password) keeps its ``previous`` value."""
    _check_adapter(adapter)
    from kopilka.fiscal import atol

    return atol.parse_settings(raw, previous).stored()


def public_settings(adapter: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as they may be shown: every secret left out."""
    _check_adapter(adapter)
    from kopilka.fiscal import atol

    return atol.public_settings(settings)


def check_payload(adapter: str, payload: Mapping[str, Any]) -> None:
    """What a receipt's payload must be for this kind of register, beyond the rules every
    receipt keeps (ATOL Online: amounts in roubles and kopecks, exponent 2)."""
    _check_adapter(adapter)
    from kopilka.fiscal import atol

    atol.check_payload(payload)


def adapter_for(register: RegisterLike) -> ReceiptAdapter:
    """The adapter that speaks to this register."""
    _check_adapter(register.adapter)
    from kopilka.fiscal import atol

    return atol.AtolOnlineV5(atol.parse_settings(register.settings))
