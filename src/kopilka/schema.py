"""Every table, imported in one place so the metadata is whole (migrations, tests)."""

from kopilka.core.db import metadata
from kopilka.events import schema as events_schema
from kopilka.farcards import schema as farcards_schema
from kopilka.fiscal import schema as fiscal_schema
from kopilka.hotel import schema as hotel_schema
from kopilka.jobs import schema as jobs_schema
from kopilka.ledger import schema as ledger_schema
from kopilka.loyalty import certificates_schema
from kopilka.loyalty import schema as loyalty_schema
from kopilka.mail import schema as mail_schema
from kopilka.memberships import schema as memberships_schema
from kopilka.payments import schema as payments_schema
from kopilka.subscribers import schema as subscribers_schema
from kopilka.tenancy import schema as tenancy_schema

__all__ = [
    "certificates_schema",
    "events_schema",
    "farcards_schema",
    "fiscal_schema",
    "hotel_schema",
    "jobs_schema",
    "ledger_schema",
    "loyalty_schema",
    "mail_schema",
    "memberships_schema",
    "metadata",
    "payments_schema",
    "subscribers_schema",
    "tenancy_schema",
]
