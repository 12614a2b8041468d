"""Tables of hotel folios (SPEC H-1, H-2, H-4, H-5, P-7).

* ``hotel_properties``, ``hotel_rooms`` (a number unique in its property whatever the
  letters' case: ``number_key`` is the number in capitals), ``hotel_guests``.
* ``hotel_stays``: a room from arrival to departure, booked, checked in, checked out or
  cancelled; ``hotel_stay_guests`` the guests staying (one is the main guest).
* ``hotel_folios``: an account in the tenant's currency (``account_id``) per stay (the
  stay's own folio, ``guest_id`` NULL) and, when asked, per guest of the stay. The
  account's balance is the folio's balance: below zero the guest owes.
* ``hotel_invoices``: a charge document on a folio (accommodation, services, a POS order
  charged to the room) with its payer, its lines (``hotel_invoice_lines``) and the ledger
  transfer that charged it; ``paid_minor`` is what payments allocate to it, less refunds;
  a POS order keeps the terminal, check id and closing time, and is voided only by its
  terminal (P-7). Status: void once voided, else paid / partly paid / unpaid by
  ``paid_minor``.
* ``hotel_payments``: money in on a folio by a payment type, one ledger transfer each; a
  points payment also keeps the card, the points written off and where (the loyalty
  provider's reference). ``hotel_allocations`` spread a payment over invoices (signed: a
  refund takes back with a negative row).
* ``hotel_refunds``: money out of a folio: a payment type, a direction, the payment it
  returns, one ledger transfer each.
* ``hotel_loyalty_centres``: where a tenant's points live for paying folios (H-5): its
  own ledger (no row) or an external processing centre reached over HTTP.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from kopilka.core.db import Id, UtcDateTime, metadata

hotel_properties = Table(
    "hotel_properties",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

hotel_rooms = Table(
    "hotel_rooms",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("property_id", Id, ForeignKey("hotel_properties.id"), nullable=False),
    Column("number", String(20), nullable=False),
    Column("number_key", String(20), nullable=False),
    Column("description", String(200), nullable=False, server_default=""),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "property_id", "number_key"),
    Index("ix_hotel_rooms_tenant_number", "tenant_id", "number_key"),
)

hotel_guests = Table(
    "hotel_guests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("full_name", String(200), nullable=False),
    Column("name_key", String(200), nullable=False),
    Column("phone", String(32), nullable=True),
    Column("email", String(254), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_hotel_guests_tenant_name", "tenant_id", "name_key"),
)

STAY_STATUSES = ("booked", "checked_in", "checked_out", "cancelled")

hotel_stays = Table(
    "hotel_stays",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("property_id", Id, ForeignKey("hotel_properties.id"), nullable=False),
    Column("room_id", Id, ForeignKey("hotel_rooms.id"), nullable=False),
    Column("arrival", Date, nullable=False),
    Column("departure", Date, nullable=False),
    Column("status", String(16), nullable=False),
    Column("checked_in_at", UtcDateTime, nullable=True),
    Column("checked_out_at", UtcDateTime, nullable=True),
    Column("note", String(500), nullable=False, server_default=""),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint(
        "status IN ('booked', 'checked_in', 'checked_out', 'cancelled')", name="status"
    ),
    CheckConstraint("departure > arrival", name="dates"),
    Index("ix_hotel_stays_room_status", "tenant_id", "room_id", "status"),
)

hotel_stay_guests = Table(
    "hotel_stay_guests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("stay_id", Id, ForeignKey("hotel_stays.id"), nullable=False),
    Column("guest_id", Id, ForeignKey("hotel_guests.id"), nullable=False),
    Column("is_main", Boolean, nullable=False, server_default="0"),
    UniqueConstraint("stay_id", "guest_id"),
    Index("ix_hotel_stay_guests_guest", "tenant_id", "guest_id"),
)

hotel_folios = Table(
    "hotel_folios",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("stay_id", Id, ForeignKey("hotel_stays.id"), nullable=False),
    # NULL: the stay's own folio; otherwise this guest's own folio in the stay.
    Column("guest_id", Id, ForeignKey("hotel_guests.id"), nullable=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("stay_id", "guest_id"),
    Index("ix_hotel_folios_stay", "tenant_id", "stay_id"),
)

INVOICE_KINDS = ("accommodation", "service", "pos_order")

hotel_invoices = Table(
    "hotel_invoices",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("folio_id", Id, ForeignKey("hotel_folios.id"), nullable=False),
    Column("payer_guest_id", Id, ForeignKey("hotel_guests.id"), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("description", String(200), nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("paid_minor", BigInteger, nullable=False, server_default="0"),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("void_transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("voided_at", UtcDateTime, nullable=True),
    # Who charged it: a staff operation id, or a terminal and its check (P-7).
    Column("operation_id", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("terminal_id", Id, ForeignKey("terminals.id"), nullable=True),
    Column("check_id", String(100), nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("kind IN ('accommodation', 'service', 'pos_order')", name="kind"),
    CheckConstraint("total_minor > 0", name="total"),
    CheckConstraint("paid_minor >= 0 AND paid_minor <= total_minor", name="paid"),
    CheckConstraint(
        "(kind = 'pos_order') = (terminal_id IS NOT NULL AND check_id IS NOT NULL)",
        name="pos_order",
    ),
    # A staff operation once per tenant; a terminal's check once per terminal.
    UniqueConstraint("tenant_id", "operation_id"),
    UniqueConstraint("tenant_id", "terminal_id", "check_id"),
    Index("ix_hotel_invoices_folio", "tenant_id", "folio_id"),
)

hotel_invoice_lines = Table(
    "hotel_invoice_lines",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("invoice_id", Id, ForeignKey("hotel_invoices.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    # Thousandths of a unit (1.5 portions is 1500), never a float.
    Column("quantity_milli", BigInteger, nullable=False),
    Column("price_minor", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    UniqueConstraint("invoice_id", "position"),
    CheckConstraint("quantity_milli > 0", name="quantity"),
    CheckConstraint("amount_minor >= 0", name="amount"),
)

hotel_payments = Table(
    "hotel_payments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("folio_id", Id, ForeignKey("hotel_folios.id"), nullable=False),
    # The invoice the payment was for, when one was named (else spread oldest first).
    Column("invoice_id", Id, ForeignKey("hotel_invoices.id"), nullable=True),
    Column("payment_type_id", Id, ForeignKey("payment_types.id"), nullable=False),
    Column("payment_kind", String(32), nullable=False),
    Column("payment_name", String(100), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("refunded_minor", BigInteger, nullable=False, server_default="0"),
    # Points payments (H-4): the card, the points written off (in the unit's minor units)
    # and the provider's reference of the write-off.
    Column("card_number", String(64), nullable=True),
    Column("points_unit", String(16), nullable=True),
    Column("points_minor", BigInteger, nullable=True),
    Column("provider", String(16), nullable=True),
    Column("provider_ref", String(100), nullable=True),
    Column("payer", String(200), nullable=False, server_default=""),
    Column("operation_id", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("amount_minor > 0", name="amount"),
    CheckConstraint("refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refunded"),
    UniqueConstraint("tenant_id", "operation_id"),
    Index("ix_hotel_payments_folio", "tenant_id", "folio_id"),
)

REFUND_DIRECTIONS = ("cash", "card", "deposit", "bank_transfer")

hotel_refunds = Table(
    "hotel_refunds",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("folio_id", Id, ForeignKey("hotel_folios.id"), nullable=False),
    Column("payment_id", Id, ForeignKey("hotel_payments.id"), nullable=False),
    Column("invoice_id", Id, ForeignKey("hotel_invoices.id"), nullable=True),
    Column("payment_type_id", Id, ForeignKey("payment_types.id"), nullable=False),
    Column("payment_name", String(100), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("points_minor", BigInteger, nullable=True),
    Column("provider_ref", String(100), nullable=True),
    Column("reason", String(500), nullable=False, server_default=""),
    Column("operation_id", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("amount_minor > 0", name="amount"),
    CheckConstraint("direction IN ('cash', 'card', 'deposit', 'bank_transfer')", name="direction"),
    UniqueConstraint("tenant_id", "operation_id"),
    Index("ix_hotel_refunds_folio", "tenant_id", "folio_id"),
)

hotel_allocations = Table(
    "hotel_allocations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("payment_id", Id, ForeignKey("hotel_payments.id"), nullable=False),
    Column("invoice_id", Id, ForeignKey("hotel_invoices.id"), nullable=False),
    Column("refund_id", Id, ForeignKey("hotel_refunds.id"), nullable=True),
    # > 0: the payment pays the invoice this much; < 0: a refund takes it back.
    Column("amount_minor", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("amount_minor <> 0", name="amount"),
    Index("ix_hotel_allocations_invoice", "invoice_id"),
    Index("ix_hotel_allocations_payment", "payment_id"),
)

hotel_loyalty_centres = Table(
    "hotel_loyalty_centres",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False, unique=True),
    # The centre's base URL (``https://centre.example/``) and the terminal key Kopilka
    # presents there. The key is a secret: never logged, never shown back whole.
    Column("base_url", String(500), nullable=False),
    Column("api_key", Text, nullable=False),
    Column("timeout_ms", Integer, nullable=False, server_default="5000"),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("timeout_ms > 0 AND timeout_ms <= 60000", name="timeout"),
)

__all__ = [
    "INVOICE_KINDS",
    "REFUND_DIRECTIONS",
    "STAY_STATUSES",
    "hotel_allocations",
    "hotel_folios",
    "hotel_guests",
    "hotel_invoice_lines",
    "hotel_invoices",
    "hotel_loyalty_centres",
    "hotel_payments",
    "hotel_properties",
    "hotel_refunds",
    "hotel_rooms",
    "hotel_stay_guests",
    "hotel_stays",
]
