"""Request and reply bodies of the ledger API, and the functions that shape replies.

Amounts travel as decimal strings next to their unit (``{"amount": "10.50", "unit":
"RUB"}``); they are parsed with the unit's exponent (``kopilka.core.money``), never
through a float. Times are ISO 8601 with an offset; a time without one is refused.
Every reply is built from what is stored, so the same stored object always gives the
same bytes (which is what makes idempotent replays identical).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from kopilka.api.deps import MAX_ID
from kopilka.core.clock import utcnow
from kopilka.core.money import UnitKind, format_amount
from kopilka.ledger.accounts import AccountView, Policy, UnitView
from kopilka.ledger.balances import HistoryLine, Turnover
from kopilka.ledger.holds import HoldView
from kopilka.ledger.posting import MAX_ENTRIES, PostedTransfer


def _exists_in_utc(moment: datetime) -> datetime:
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the moment is out of range") from None
    return moment


# A moment with its offset that has a UTC equivalent (0001-01-01T00:00+01:00 has none).
Moment = Annotated[AwareDatetime, AfterValidator(_exists_in_utc)]

DecimalText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=40,
        description='A decimal string such as "10.50"; at most as many decimals as the unit has',
        examples=["10.50"],
    ),
]
SignedDecimalText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=40,
        description='A signed decimal string: "-10.50" takes from the account, "10.50" adds',
        examples=["-10.50"],
    ),
]
UnitCode = Annotated[str, Field(min_length=2, max_length=16, examples=["RUB"])]
Meta = Annotated[
    dict[str, Any] | None,
    Field(description="Free-form JSON object stored with the transfer"),
]
# Kinds the ledger itself writes; clients may not pass their transfers off as these.
RESERVED_KINDS = frozenset({"reversal", "capture", "expiry"})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- auth


class TokenIn(Strict):
    tenant: str = Field(min_length=1, max_length=64, description="The tenant's short name")
    login: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the scheme, not a secret)
    expires_at: datetime


# --------------------------------------------------------------------------- units


class UnitIn(Strict):
    code: UnitCode
    kind: UnitKind
    name: str = Field(default="", max_length=100)
    exponent: int | None = Field(default=None, ge=0, le=6)


class UnitOut(BaseModel):
    id: int
    code: str
    kind: UnitKind
    exponent: int
    name: str


def unit_out(unit: UnitView) -> UnitOut:
    return UnitOut(
        id=unit.id, code=unit.code, kind=unit.kind, exponent=unit.exponent, name=unit.name
    )


class UnitList(BaseModel):
    items: list[UnitOut]


# --------------------------------------------------------------------------- accounts


class AccountIn(Strict):
    unit: UnitCode
    kind: str = Field(min_length=1, max_length=32, examples=["wallet"])
    policy: Policy
    name: str = Field(default="", max_length=200)
    code: str | None = Field(default=None, min_length=1, max_length=100)
    owner_type: str | None = Field(default=None, min_length=1, max_length=32)
    owner_id: str | None = Field(default=None, min_length=1, max_length=64)
    credit_limit: DecimalText | None = None
    uses_lots: bool = False


class CreditLimitIn(Strict):
    credit_limit: DecimalText
    reason: str = Field(min_length=1, max_length=500)


class AccountOut(BaseModel):
    id: int
    code: str | None
    name: str
    kind: str
    owner_type: str | None
    owner_id: str | None
    unit: str
    policy: Policy
    uses_lots: bool
    is_hot: bool
    balance: str
    held: str
    available: str | None = Field(description="What may be spent now; null when unlimited")
    credit_limit: str
    created_at: datetime


def account_out(account: AccountView) -> AccountOut:
    fmt = account.fmt
    return AccountOut(
        id=account.id,
        code=account.code,
        name=account.name,
        kind=account.kind,
        owner_type=account.owner_type,
        owner_id=account.owner_id,
        unit=account.unit.code,
        policy=account.policy,
        uses_lots=account.uses_lots,
        is_hot=account.is_hot,
        balance=fmt(account.balance_minor),
        held=fmt(account.held_minor),
        available=None if account.available_minor is None else fmt(account.available_minor),
        credit_limit=fmt(account.credit_limit_minor),
        created_at=account.created_at,
    )


class AccountList(BaseModel):
    items: list[AccountOut]
    next_cursor: str | None


class BalanceOut(BaseModel):
    account_id: int
    at: datetime
    balance: str
    unit: str


class EntryLineOut(BaseModel):
    entry_id: int
    transfer_id: int
    posted_at: datetime
    amount: str
    balance_after: str | None
    unit: str
    kind: str
    description: str
    corrects_transfer_id: int | None


def entry_line_out(line: HistoryLine, unit: UnitView) -> EntryLineOut:
    return EntryLineOut(
        entry_id=line.entry_id,
        transfer_id=line.transfer_id,
        posted_at=line.posted_at,
        amount=format_amount(line.amount_minor, unit.exponent),
        balance_after=None
        if line.balance_after_minor is None
        else format_amount(line.balance_after_minor, unit.exponent),
        unit=unit.code,
        kind=line.kind,
        description=line.description,
        corrects_transfer_id=line.corrects_transfer_id,
    )


class EntryLineList(BaseModel):
    items: list[EntryLineOut]
    next_cursor: str | None


class TurnoverOut(BaseModel):
    account_ids: list[int]
    unit: str
    start: datetime = Field(serialization_alias="from", description="Start, inclusive")
    end: datetime = Field(serialization_alias="to", description="End, exclusive")
    opening: str
    debit: str = Field(description="What left the accounts in the period")
    credit: str = Field(description="What came into the accounts in the period")
    closing: str


def turnover_out(turnover: Turnover) -> TurnoverOut:
    def fmt(minor: int) -> str:
        return format_amount(minor, turnover.exponent)

    return TurnoverOut(
        account_ids=list(turnover.account_ids),
        unit=turnover.unit_code,
        start=turnover.start,
        end=turnover.end,
        opening=fmt(turnover.opening_minor),
        debit=fmt(turnover.debit_minor),
        credit=fmt(turnover.credit_minor),
        closing=fmt(turnover.closing_minor),
    )


# --------------------------------------------------------------------------- transfers


class EntryIn(Strict):
    account_id: int = Field(gt=0, le=MAX_ID)
    amount: SignedDecimalText
    available_at: Moment | None = Field(
        default=None, description="Credits to a lot account: when the lot becomes spendable"
    )
    expires_at: Moment | None = Field(
        default=None, description="Credits to a lot account: when the lot expires"
    )


class TransferIn(Strict):
    """Either a simple move (debit, credit, amount) or explicit ``entries``, not both."""

    debit_account_id: int | None = Field(default=None, gt=0, le=MAX_ID)
    credit_account_id: int | None = Field(default=None, gt=0, le=MAX_ID)
    amount: DecimalText | None = None
    unit: UnitCode | None = Field(
        default=None, description="If given, must be the accounts' unit (a safety check)"
    )
    available_at: Moment | None = None
    expires_at: Moment | None = None
    entries: list[EntryIn] | None = Field(default=None, min_length=2, max_length=MAX_ENTRIES)
    kind: str = Field(
        default="transfer", min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_.-]*$"
    )
    description: str = Field(default="", max_length=1000)
    metadata: Meta = None

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        simple = (self.debit_account_id, self.credit_account_id, self.amount)
        if self.entries is not None:
            if any(v is not None for v in (*simple, self.available_at, self.expires_at)):
                raise ValueError(
                    "send either entries or debit_account_id/credit_account_id/amount, not both"
                )
        elif any(v is None for v in simple):
            raise ValueError(
                "a transfer needs debit_account_id, credit_account_id and amount "
                "(or a list of entries)"
            )
        if self.kind in RESERVED_KINDS:
            raise ValueError(f"the kind {self.kind!r} is reserved for the ledger's own transfers")
        return self


class ReverseIn(Strict):
    description: str = Field(default="", max_length=1000)
    metadata: Meta = None


class TransferEntryOut(BaseModel):
    account_id: int
    amount: str
    unit: str
    balance_after: str | None = Field(description="The account's balance after this entry")


class TransferOut(BaseModel):
    id: int
    kind: str
    description: str
    posted_at: datetime
    idempotency_key: str
    corrects_transfer_id: int | None
    hold_id: int | None
    metadata: dict[str, Any] | None
    entries: list[TransferEntryOut]


def transfer_out(posted: PostedTransfer) -> TransferOut:
    return TransferOut(
        id=posted.id,
        kind=posted.kind,
        description=posted.description,
        posted_at=posted.posted_at,
        idempotency_key=posted.idempotency_key,
        corrects_transfer_id=posted.corrects_transfer_id,
        hold_id=posted.hold_id,
        metadata=posted.meta,
        entries=[
            TransferEntryOut(
                account_id=e.account_id,
                amount=e.amount,
                unit=e.unit_code,
                balance_after=None
                if e.balance_after_minor is None
                else format_amount(e.balance_after_minor, e.exponent),
            )
            for e in posted.entries
        ],
    )


class TransferList(BaseModel):
    items: list[TransferOut]
    next_cursor: str | None


# --------------------------------------------------------------------------- holds


class HoldIn(Strict):
    debit_account_id: int = Field(gt=0, le=MAX_ID)
    credit_account_id: int = Field(gt=0, le=MAX_ID)
    amount: DecimalText
    unit: UnitCode | None = None
    expires_at: Moment | None = None
    ttl_seconds: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)
    description: str = Field(default="", max_length=1000)
    metadata: Meta = None

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        if self.expires_at is not None and self.ttl_seconds is not None:
            raise ValueError("send expires_at or ttl_seconds, not both")
        return self


class CaptureIn(Strict):
    amount: DecimalText | None = Field(
        default=None, description="Capture this much (at most the hold); the rest is released"
    )
    description: str = Field(default="", max_length=1000)
    metadata: Meta = None


class HoldOut(BaseModel):
    id: int
    status: str = Field(description="pending, captured, voided or expired")
    debit_account_id: int
    credit_account_id: int
    amount: str
    captured: str
    unit: str
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None
    transfer_id: int | None
    description: str
    metadata: dict[str, Any] | None


def hold_out(hold: HoldView, *, now: datetime | None = None) -> HoldOut:
    status = hold.status
    # A lapsed hold holds nothing even before the sweep writes its resolution.
    if status == "pending" and hold.expires_at <= (now or utcnow()):
        status = "expired"
    return HoldOut(
        id=hold.id,
        status=status,
        debit_account_id=hold.debit_account_id,
        credit_account_id=hold.credit_account_id,
        amount=hold.fmt(hold.amount_minor),
        captured=hold.fmt(hold.captured_minor),
        unit=hold.unit_code,
        created_at=hold.created_at,
        expires_at=hold.expires_at,
        resolved_at=hold.resolved_at,
        transfer_id=hold.transfer_id,
        description=hold.description,
        metadata=hold.meta,
    )


class CaptureOut(BaseModel):
    hold: HoldOut
    transfer: TransferOut


# --------------------------------------------------------------------------- operations


class StatusOut(BaseModel):
    status: str
