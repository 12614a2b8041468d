"""Where the points that pay a folio live (SPEC H-5): one interface, two providers.

* ``OwnLedgerProvider``: this server's own loyalty ledger (cards, wallets, lots), in the
  caller's transaction, so the points and the folio payment are written together or not
  at all;
* ``ExternalCentreProvider``: an external processing centre reached over HTTP (the seed's
  "Kontur" is one); it may be another Kopilka server, whose processing API
  (``/api/v1/processing/...``, a terminal key) it speaks. A centre that does not answer,
  or answers garbage, is ``loyalty_centre_unavailable`` (503): nothing is written on the
  folio.

Both are idempotent by the operation id the folio side gives: a redemption asked again
answers as the first time and takes nothing more. A folio payment whose own write fails
after the centre took the points gives them back (``refund`` of the whole amount, with
the operation id ``<operation>:undo``).

``provider_for(conn, tenant_id=..., actor=...)`` picks the tenant's provider: its
external centre when one is set and switched on, else its own ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PointsBalance:
    unit_code: str  # the point unit's code (the same code on both sides of a centre)
    exponent: int  # minor units per point: 0 for whole points, 2 for bonus roubles
    balance_minor: int  # spendable now (held and not yet active points excluded)


@dataclass(frozen=True, slots=True)
class CardBalances:
    number: str  # the card's number, normalised
    holder: str | None  # the holder's name, when the card has one
    status: str  # active, blocked, expired (only active cards pay)
    balances: tuple[PointsBalance, ...]

    def of(self, unit_code: str) -> PointsBalance | None:
        wanted = unit_code.upper()
        return next((b for b in self.balances if b.unit_code.upper() == wanted), None)


@dataclass(frozen=True, slots=True)
class Redemption:
    ref: str  # the provider's reference of the write-off (or of the give-back)
    unit_code: str
    amount_minor: int  # points written off (or given back), in the unit's minor units
    replayed: bool  # the same operation id was seen before: nothing more was taken


class LoyaltyProvider(Protocol):
    name: str  # "own" or "external", kept on the folio payment

    def card_balances(self, number: str) -> CardBalances:
        """The card's spendable points per unit; ``card_not_found`` (404) if unknown."""
        ...

    def redeem(
        self,
        *,
        number: str,
        unit_code: str,
        amount_minor: int,
        operation_id: str,
        description: str,
    ) -> Redemption:
        """Write ``amount_minor`` points off the card, all or nothing; refused with a
        clear code (insufficient points, card blocked...) and then nothing is taken."""
        ...

    def refund(self, *, ref: str, amount_minor: int, operation_id: str) -> Redemption:
        """Give back up to what the write-off ``ref`` took (less earlier give-backs)."""
        ...
