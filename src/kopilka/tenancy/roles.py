"""Who may do what: one table of permissions by role, read by the web UI and the API.

Roles (SPEC X-1): the owner runs the business and may do everything; an administrator
configures it (staff, terminals, units, branches) but not the tenant itself and cannot
make owners; a cashier serves cards and bonuses at the till, subscribers and studio
visitors at the desk; front desk serves hotel guests, studio visitors and subscribers.
"""

from __future__ import annotations

OWNER, ADMINISTRATOR, CASHIER, FRONT_DESK = "owner", "administrator", "cashier", "front_desk"
MANAGERS = frozenset({OWNER, ADMINISTRATOR})

PERMISSIONS: dict[str, frozenset[str]] = {
    "settings.tenant": frozenset({OWNER}),
    "settings.loyalty": frozenset({OWNER}),
    "settings.branches": MANAGERS,
    "settings.users": MANAGERS,
    "settings.terminals": MANAGERS,
    "settings.units": MANAGERS,
    "settings.payment_types": MANAGERS,
    "settings.farcards": MANAGERS,
    # Webhook endpoints and their deliveries; an endpoint's secret, after it was shown
    # once on creation, only to owners (SPEC X-3).
    "settings.webhooks": MANAGERS,
    "settings.webhook_secrets": frozenset({OWNER}),
    # The outgoing e-mail's log, and sending a failed message again.
    "settings.mail": MANAGERS,
    "events.view": MANAGERS,
    "ledger.view": MANAGERS,
    "reports.view": MANAGERS,
    "jobs.run": MANAGERS,
    "cards": frozenset({OWNER, ADMINISTRATOR, CASHIER}),
    "cards.manage": MANAGERS,
    "hotel": frozenset({OWNER, ADMINISTRATOR, FRONT_DESK}),
    # Subscribers (SPEC S-1 … S-7): the desk finds and reads them, edits their contacts,
    # takes their top-ups and promised payments, activates them.
    "subscribers": frozenset({OWNER, ADMINISTRATOR, CASHIER, FRONT_DESK}),
    # A subscriber's credit terms (threshold, tariff, disabling, the tariff's rules set
    # aside for a promised payment) and new subscribers; tariffs and services in Settings.
    "subscribers.manage": MANAGERS,
    "settings.subscribers": MANAGERS,
    # Memberships sold online (SPEC M-6, M-7): everyone at the desk finds them and their
    # visitors and attaches them; refunds go back to the client's card, and the online
    # sale's settings (provider, commission, buttons), types, groups and classes are set
    # up, by owners and administrators.
    "memberships": frozenset({OWNER, ADMINISTRATOR, CASHIER, FRONT_DESK}),
    "memberships.refunds": MANAGERS,
    "settings.memberships": MANAGERS,
}


def allowed(role: str, permission: str) -> bool:
    return role in PERMISSIONS[permission]


def roles_assignable_by(role: str) -> tuple[str, ...]:
    """The roles a user of ``role`` may give to others (nobody makes a user above self)."""
    if role == OWNER:
        return (OWNER, ADMINISTRATOR, CASHIER, FRONT_DESK)
    if role == ADMINISTRATOR:
        return (ADMINISTRATOR, CASHIER, FRONT_DESK)
    return ()
