"""Tables of memberships and their online sale (SPEC M-1 … M-8, seed 004).

* ``membership_settings``: the tenant's online sale module (on/off), the commission % the
  client pays on top of the price, the payment provider and its credentials, and the
  design of the buy buttons (the nine parameters of M-2) that the public pages follow.
* ``membership_types``: what is sold ("8 classes a month", "unlimited"): a price, classes
  (NULL: unlimited), validity in days, permanent or not (only permanent ones are sold
  online), sold online or not, the button's text.
* ``studio_groups`` and ``studio_classes``: what a membership admits to and the classes
  that may be booked; ``visitors``: the studio's clients (name, phone, e-mail).
* ``membership_orders``: one checkout: the type, the client's e-mail and language, the
  price, commission and total as they were, the provider's payment, its state; at most
  one membership (``membership_id``) and one sale transfer, ever.
* ``memberships``: a membership sold: its number, activation code, type; unattached
  until the staff attach it to a visitor with its groups and validity
  (``membership_groups``) and bookings (``membership_bookings``); refunded at last.
* ``membership_refunds``: money back through the provider, never more than was paid.
* ``provider_notifications``: every notification received, believed or not.
* ``sandbox_payments`` / ``sandbox_refunds``: the built-in sandbox provider's own books
  (it plays the part of a payment provider in demos and tests).
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
    Text,
    UniqueConstraint,
)

from kopilka.core.db import Id, Json, Minor, UtcDateTime, metadata

membership_settings = Table(
    "membership_settings",
    metadata,
    Column("tenant_id", Id, ForeignKey("tenants.id"), primary_key=True, autoincrement=False),
    Column("online_enabled", Boolean, nullable=False, server_default="0"),
    Column("commission_bp", Integer, nullable=False, server_default="0"),
    Column("provider", String(16), nullable=False, server_default="sandbox"),
    # The provider's credentials ({"shop_id", "secret_key"} for YooKassa; {"secret_key",
    # "webhook_secret"} for Stripe; and "api_base" for a stand-in). Never logged.
    Column("provider_config", Json, nullable=False),
    Column("btn_text_color", String(7), nullable=False, server_default="#ffffff"),
    Column("btn_text_size", Integer, nullable=False, server_default="16"),
    Column("btn_bold", Boolean, nullable=False, server_default="1"),
    Column("btn_bg_color", String(7), nullable=False, server_default="#2f6fdf"),
    Column("btn_border_color", String(7), nullable=False, server_default="#2f6fdf"),
    Column("btn_border_width", Integer, nullable=False, server_default="0"),
    Column("btn_radius", Integer, nullable=False, server_default="6"),
    Column("btn_width", Integer, nullable=False, server_default="240"),
    Column("btn_height", Integer, nullable=False, server_default="48"),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("commission_bp >= 0 AND commission_bp <= 10000", name="commission"),
    CheckConstraint("provider IN ('sandbox', 'yookassa', 'stripe')", name="provider"),
)

membership_types = Table(
    "membership_types",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("is_permanent", Boolean, nullable=False, server_default="1"),
    Column("price_minor", Minor, nullable=False),
    Column("classes", Integer, nullable=True),  # NULL: unlimited
    Column("validity_days", Integer, nullable=False),
    Column("sell_online", Boolean, nullable=False, server_default="0"),
    Column("button_text", String(100), nullable=False, server_default=""),
    Column("is_active", Boolean, nullable=False, server_default="1"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
    CheckConstraint("price_minor > 0", name="price"),
    CheckConstraint("classes IS NULL OR classes > 0", name="classes"),
    CheckConstraint("validity_days > 0", name="validity"),
    CheckConstraint("is_permanent OR NOT sell_online", name="online_permanent_only"),
)

studio_groups = Table(
    "studio_groups",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("is_active", Boolean, nullable=False, server_default="1"),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

studio_classes = Table(
    "studio_classes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("group_id", Id, ForeignKey("studio_groups.id"), nullable=False),
    Column("starts_at", UtcDateTime, nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("capacity", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_studio_classes_group_starts", "group_id", "starts_at"),
    CheckConstraint("minutes > 0", name="minutes"),
    CheckConstraint("capacity IS NULL OR capacity > 0", name="capacity"),
)

visitors = Table(
    "visitors",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("full_name", String(200), nullable=False),
    Column("name_key", String(200), nullable=False),
    Column("phone", String(32), nullable=True),
    Column("email", String(254), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_visitors_tenant_name_key", "tenant_id", "name_key"),
    Index("ix_visitors_tenant_phone", "tenant_id", "phone"),
)

membership_orders = Table(
    "membership_orders",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    # The checkout's own address: a random token, not the id (orders are not guessable).
    Column("token", String(64), nullable=False, unique=True),
    # The checkout form's own key (made when the form was shown): the form sent twice
    # (a double click) is one order.
    Column("checkout_key", String(64), nullable=True),
    Column("type_id", Id, ForeignKey("membership_types.id"), nullable=False),
    Column("email", String(254), nullable=False),
    Column("locale", String(16), nullable=False),
    Column("price_minor", Minor, nullable=False),
    Column("commission_bp", Integer, nullable=False),
    Column("commission_minor", Minor, nullable=False),
    Column("total_minor", Minor, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("provider_payment_id", String(100), nullable=True),
    Column("redirect_url", Text, nullable=True),
    # created → pending (at the provider) → paid | canceled; paid → refunded.
    Column("status", String(16), nullable=False),
    Column("membership_id", Id, nullable=True),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("refunded_minor", Minor, nullable=False, server_default="0"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("paid_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    # The address the checkout came from: how many one address begins is limited.
    Column("source_ip", String(64), nullable=True),
    UniqueConstraint("provider", "provider_payment_id"),
    UniqueConstraint("tenant_id", "checkout_key"),
    Index("ix_membership_orders_tenant_status", "tenant_id", "status"),
    Index("ix_membership_orders_source", "tenant_id", "source_ip", "created_at"),
    CheckConstraint(
        "status IN ('created', 'pending', 'paid', 'canceled', 'refunded')", name="status"
    ),
    CheckConstraint("total_minor = price_minor + commission_minor", name="total"),
    CheckConstraint("refunded_minor >= 0 AND refunded_minor <= total_minor", name="refunded"),
)

memberships = Table(
    "memberships",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("number", String(20), nullable=False),
    Column("activation_code", String(16), nullable=False),
    Column("type_id", Id, ForeignKey("membership_types.id"), nullable=False),
    Column("order_id", Id, ForeignKey("membership_orders.id"), nullable=True),
    # unattached → attached; either → refunded.
    Column("status", String(16), nullable=False),
    Column("visitor_id", Id, ForeignKey("visitors.id"), nullable=True),
    Column("valid_from", Date, nullable=True),
    Column("valid_until", Date, nullable=True),
    Column("classes", Integer, nullable=True),
    Column("sold_at", UtcDateTime, nullable=False),
    Column("attached_at", UtcDateTime, nullable=True),
    Column("refunded_at", UtcDateTime, nullable=True),
    UniqueConstraint("tenant_id", "number"),
    UniqueConstraint("tenant_id", "activation_code"),
    UniqueConstraint("order_id"),
    Index("ix_memberships_tenant_status", "tenant_id", "status"),
    Index("ix_memberships_visitor", "visitor_id"),
    CheckConstraint("status IN ('unattached', 'attached', 'refunded')", name="status"),
)

membership_groups = Table(
    "membership_groups",
    metadata,
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("membership_id", Id, ForeignKey("memberships.id"), nullable=False),
    Column("group_id", Id, ForeignKey("studio_groups.id"), nullable=False),
    PrimaryKeyConstraint("membership_id", "group_id"),
)

membership_bookings = Table(
    "membership_bookings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("membership_id", Id, ForeignKey("memberships.id"), nullable=False),
    Column("class_id", Id, ForeignKey("studio_classes.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("cancelled_at", UtcDateTime, nullable=True),
    UniqueConstraint("membership_id", "class_id"),
)

membership_refunds = Table(
    "membership_refunds",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("order_id", Id, ForeignKey("membership_orders.id"), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Column("operation_id", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("provider_refund_id", String(100), nullable=True),
    Column("status", String(16), nullable=False),  # pending, succeeded, canceled
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=True),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "operation_id"),
    CheckConstraint("amount_minor > 0", name="amount"),
    CheckConstraint("status IN ('pending', 'succeeded', 'canceled')", name="status"),
)

provider_notifications = Table(
    "provider_notifications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("believed", Boolean, nullable=False),
    Column("event", String(64), nullable=False, server_default=""),
    Column("provider_payment_id", String(100), nullable=True),
    Column("error", Text, nullable=False, server_default=""),
    Column("source_ip", String(64), nullable=True),
    Index("ix_provider_notifications_tenant_id_id", "tenant_id", "id"),
)

sandbox_payments = Table(
    "sandbox_payments",
    metadata,
    Column("id", String(40), primary_key=True),  # "sbx_…", the provider's payment id
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("idempotency_key", String(100), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", String(200), nullable=False),
    Column("return_url", Text, nullable=False),
    Column("cancel_url", Text, nullable=False),
    Column("order_id", Id, nullable=True),
    Column("status", String(16), nullable=False),  # pending, succeeded, canceled
    Column("card_last4", String(4), nullable=True),
    Column("refunded_minor", Minor, nullable=False, server_default="0"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "idempotency_key"),
)

sandbox_refunds = Table(
    "sandbox_refunds",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("payment_id", String(40), ForeignKey("sandbox_payments.id"), nullable=False),
    Column("idempotency_key", String(100), nullable=False),
    Column("amount_minor", Minor, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "idempotency_key"),
)
