"""Tables of subscriber accounts and promised payments (SPEC S-1 … S-7, seed 003).

* ``sub_tariffs``: a price and how it is charged (daily, monthly, one-time), "new
  subscribers get n days to pay" (``grace_days``), and the promised payment rules of S-4
  checked when a subscriber asks for one.
* ``sub_pp_services``: promised payment services (S-3): the amount (0: what is needed),
  its days, the connection price, the commission in hundredths of a per cent, the charge
  method, whether the cabinet may order it, whether it is given on the first session
  (S-6); ``sub_pp_service_tariffs`` the tariffs it is restricted to (none: every tariff).
* ``sub_settings``: the operator's options (S-5).
* ``subscribers``: a subscriber with a tariff, an account in the tenant's currency
  (policy ``credit_limit``: the disconnection threshold is minus the account's credit
  limit, which promised payments raise for their days), a status, the activation moment,
  the next date the tariff is charged for, and a password for the cabinet (argon2id).
* ``sub_charges``: each charge made (a tariff period, a connection price, a commission),
  one ledger transfer each; a period is charged once (unique).
* ``sub_topups``: money paid in, one ledger transfer each, with the payer's operation id.
* ``sub_promised_payments``: each promised payment taken: what raised the threshold, for
  how long, how it ended, and the commission charged.
* ``sub_status_changes``: every change of a subscriber's status, with its reason.
* ``sub_sessions``: the cabinet's sign-in sessions (the secret kept as a digest).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
)

from kopilka.core.db import Id, Minor, UtcDateTime, metadata

CHARGE_METHODS = ("daily", "monthly", "one_time")
STATUSES = ("new", "active", "blocked", "disabled")

sub_tariffs = Table(
    "sub_tariffs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("price_minor", Minor, nullable=False),
    Column("charge_method", String(16), nullable=False),
    Column("grace_days", Integer, nullable=False, server_default="0"),
    # S-4 (a) … (e); NULL / false: the rule is not set.
    Column("pp_requires_topup", Boolean, nullable=False, server_default="0"),
    Column("pp_once_a_month", Boolean, nullable=False, server_default="0"),
    Column("pp_payment_within_days", Integer, nullable=True),
    Column("pp_charge_within_days", Integer, nullable=True),
    Column("pp_max_per_month", Integer, nullable=True),
    Column("is_active", Boolean, nullable=False, server_default="1"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
    CheckConstraint("price_minor >= 0", name="price"),
    CheckConstraint("charge_method IN ('daily', 'monthly', 'one_time')", name="charge_method"),
    CheckConstraint("grace_days >= 0", name="grace_days"),
)

sub_pp_services = Table(
    "sub_pp_services",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("amount_minor", Minor, nullable=False),  # 0: what is needed
    Column("days", Integer, nullable=False),
    Column("connection_price_minor", Minor, nullable=False, server_default="0"),
    Column("commission_bp", Integer, nullable=False, server_default="0"),
    Column("charge_method", String(16), nullable=False),
    Column("self_service", Boolean, nullable=False, server_default="0"),
    Column("on_first_session", Boolean, nullable=False, server_default="0"),
    Column("is_active", Boolean, nullable=False, server_default="1"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
    CheckConstraint("amount_minor >= 0", name="amount"),
    CheckConstraint("days >= 1", name="days"),
    CheckConstraint("connection_price_minor >= 0", name="connection_price"),
    CheckConstraint("commission_bp >= 0 AND commission_bp <= 10000", name="commission"),
    CheckConstraint("charge_method IN ('daily', 'monthly')", name="charge_method"),
)

sub_pp_service_tariffs = Table(
    "sub_pp_service_tariffs",
    metadata,
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("service_id", Id, ForeignKey("sub_pp_services.id"), nullable=False),
    Column("tariff_id", Id, ForeignKey("sub_tariffs.id"), nullable=False),
    PrimaryKeyConstraint("service_id", "tariff_id"),
)

sub_settings = Table(
    "sub_settings",
    metadata,
    Column("tenant_id", Id, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("pp_only_when_blocked", Boolean, nullable=False, server_default="0"),
    Column("updated_at", UtcDateTime, nullable=False),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    # The contract number: what the subscriber signs in with and the staff search by.
    Column("account_no", String(32), nullable=False),
    Column("full_name", String(200), nullable=False),
    # The name case-folded in Python, searched with LIKE (SQLite's lower() is ASCII only).
    Column("name_key", String(200), nullable=False),
    Column("phone", String(32), nullable=True),
    Column("email", String(254), nullable=True),
    Column("tariff_id", Id, ForeignKey("sub_tariffs.id"), nullable=False),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    # The threshold without promised payments, as the account's credit limit (>= 0).
    Column("base_limit_minor", Minor, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False),
    Column("activated_at", UtcDateTime, nullable=True),
    # The first day (tenant's time zone) not yet charged for; NULL: nothing is due
    # (not active yet, or a one-time tariff charged).
    Column("next_charge_on", Date, nullable=True),
    # A monthly tariff's day of the month (1..31; the month's last day when shorter).
    Column("charge_day", Integer, nullable=True),
    Column("password_hash", String(255), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "account_no"),
    Index("ix_subscribers_due", "tenant_id", "status", "next_charge_on"),
    CheckConstraint("status IN ('new', 'active', 'blocked', 'disabled')", name="status"),
    CheckConstraint("base_limit_minor >= 0", name="base_limit"),
)

sub_charges = Table(
    "sub_charges",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("subscriber_id", Id, ForeignKey("subscribers.id"), nullable=False),
    # tariff, connection (a promised payment's price), commission.
    Column("kind", String(16), nullable=False),
    Column("tariff_id", Id, ForeignKey("sub_tariffs.id"), nullable=True),
    Column("promised_payment_id", Id, nullable=True),
    Column("period_start", Date, nullable=True),
    Column("period_end", Date, nullable=True),  # exclusive
    Column("amount_minor", Minor, nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("charged_at", UtcDateTime, nullable=False),
    Column("description", String(200), nullable=False, server_default=""),
    # The ledger transfer's idempotency key: what makes "each period charged once".
    Column("charge_key", String(200), nullable=False),
    UniqueConstraint("tenant_id", "charge_key"),
    Index("ix_sub_charges_subscriber", "subscriber_id", "charged_at"),
    CheckConstraint("kind IN ('tariff', 'connection', 'commission')", name="kind"),
    CheckConstraint("amount_minor >= 0", name="amount"),
)

sub_topups = Table(
    "sub_topups",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("subscriber_id", Id, ForeignKey("subscribers.id"), nullable=False),
    Column("operation_id", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Column("method", String(32), nullable=False, server_default=""),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=False),
    Column("paid_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "operation_id"),
    Index("ix_sub_topups_subscriber", "subscriber_id", "paid_at"),
    CheckConstraint("amount_minor > 0", name="amount"),
)

sub_promised_payments = Table(
    "sub_promised_payments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("subscriber_id", Id, ForeignKey("subscribers.id"), nullable=False),
    # NULL: the tariff's grace for new subscribers (S-6).
    Column("service_id", Id, ForeignKey("sub_pp_services.id"), nullable=True),
    Column("operation_id", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    # staff, cabinet, first_session (a service given on activation), grace (the tariff's).
    Column("source", String(16), nullable=False),
    Column("amount_minor", Minor, nullable=False),  # by how much the threshold was raised
    Column("is_auto", Boolean, nullable=False),
    Column("days", Integer, nullable=False),
    Column("connection_price_minor", Minor, nullable=False),
    Column("commission_bp", Integer, nullable=False),
    Column("charge_method", String(16), nullable=False),
    Column("taken_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),  # active, ended, repaid
    Column("ended_at", UtcDateTime, nullable=True),
    Column("commission_minor", Minor, nullable=True),
    UniqueConstraint("tenant_id", "operation_id"),
    Index("ix_sub_pp_subscriber", "subscriber_id", "taken_at"),
    Index("ix_sub_pp_active", "tenant_id", "status", "ends_at"),
    CheckConstraint("status IN ('active', 'ended', 'repaid')", name="status"),
    CheckConstraint("amount_minor >= 0", name="amount"),
)

sub_status_changes = Table(
    "sub_status_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("subscriber_id", Id, ForeignKey("subscribers.id"), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Index("ix_sub_status_changes_subscriber", "subscriber_id", "at"),
)

sub_sessions = Table(
    "sub_sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("subscriber_id", Id, ForeignKey("subscribers.id"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("closed_at", UtcDateTime, nullable=True),
)
