"""Tables of the FarCards door: which terminal an r_keeper station is, what it shows.

* ``farcards_terminals``: a Kopilka terminal reachable over FarCards HTTP, its own URL
  secret (only the SHA-256 kept), the r_keeper restaurant code and stations it answers
  for, and an optional list of addresses allowed to call.
* ``farcards_sub_accounts``: which FarCards sub-account (``Sum2`` .. ``Sum8``) shows which
  balance of a card: a point unit's code, or ``accumulation``.
* ``farcards_codes``: the numbers of the r_keeper discount and bonus a card's program (or
  tier) asks the POS to apply.
* ``farcards_calls``: every TransactionsEx applied, with the reply given, so a repeated
  call is answered as the first time and a return finds the sale it returns.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from kopilka.core.db import Id, Json, UtcDateTime, metadata

farcards_terminals = Table(
    "farcards_terminals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("terminal_id", Id, ForeignKey("terminals.id"), nullable=False, unique=True),
    Column("restaurant_code", String(32), nullable=False),
    # r_keeper station codes (UnitNo / RKUni) this terminal answers for; None: any.
    Column("station_codes", Json, nullable=True),
    # Addresses or networks (CIDR) allowed to call; None: any.
    Column("allowed_ips", Json, nullable=True),
    Column("secret_prefix", String(16), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

farcards_sub_accounts = Table(
    "farcards_sub_accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    # A point unit's code, or "accumulation" (the card's purchases counted for its tier).
    Column("source", String(32), nullable=False),
    Column("sub_account", SmallInteger, nullable=False),
    UniqueConstraint("tenant_id", "source"),
    UniqueConstraint("tenant_id", "sub_account"),
    CheckConstraint("sub_account >= 2 AND sub_account <= 8", name="sub_account"),
)

farcards_codes = Table(
    "farcards_codes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("program_id", Id, ForeignKey("loyalty_programs.id"), nullable=False),
    # None: the program's codes, for cards on no tier (or a tier without its own row).
    Column("tier_id", Id, ForeignKey("loyalty_tiers.id"), nullable=True),
    Column("discount_code", Integer, nullable=True),
    Column("bonus_code", Integer, nullable=True),
    UniqueConstraint("program_id", "tier_id"),
    CheckConstraint("discount_code IS NULL OR discount_code > 0", name="discount_code"),
    CheckConstraint("bonus_code IS NULL OR bonus_code > 0", name="bonus_code"),
)

farcards_calls = Table(
    "farcards_calls",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("terminal_id", Id, ForeignKey("terminals.id"), nullable=False),
    # SHA-256 of what identifies the call: chmode, checkguid, restaurant, date, station, check.
    Column("call_key", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("chmode", SmallInteger, nullable=False),
    Column("order_key", String(100), nullable=True),  # the r_keeper order's guid
    Column("card_number", String(64), nullable=False),
    Column("check_id", String(100), nullable=False),  # the pos_checks check id
    Column("refund_id", String(100), nullable=True),
    Column("response", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "terminal_id", "call_key"),
    Index("ix_farcards_calls_terminal_id_order_key", "terminal_id", "order_key"),
)
