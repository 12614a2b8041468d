"""The tenant's payment provider from its settings (``membership_settings.provider`` and
``provider_config``), and what the settings screen needs to check and show them.

``provider_for`` is cheap (no network, no database): build one per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from kopilka.core.errors import InvalidInput
from kopilka.memberships.providers import sandbox, stripe, yookassa
from kopilka.memberships.providers.base import PaymentProvider
from kopilka.memberships.providers.error_codes import ProviderErrorCode as E

PROVIDERS = (sandbox.NAME, yookassa.NAME, stripe.NAME)
_SECRETS = {
    sandbox.NAME: sandbox.SECRET_KEYS,
    yookassa.NAME: yookassa.SECRET_KEYS,
    stripe.NAME: stripe.SECRET_KEYS,
}


def _known(name: str) -> str:
    if name not in PROVIDERS:
        raise InvalidInput(
            E.UNKNOWN_PROVIDER,
            f"the payment provider is one of {', '.join(PROVIDERS)}, not {name!r}",
            field="provider",
        )
    return name


def provider_for(
    name: str,
    config: Mapping[str, Any],
    *,
    engine: Engine,
    public_base: str,
    tenant_id: int | None = None,
) -> PaymentProvider:
    """The adapter ``name`` with the tenant's ``config``; ``invalid_provider_config``
    when a setting is missing or wrong. The sandbox keeps its books per tenant, so it
    needs ``tenant_id``; ``public_base`` is where Kopilka's public pages are (the
    sandbox's card page is under it)."""
    if _known(name) == sandbox.NAME:
        if tenant_id is None:
            raise TypeError("provider_for('sandbox', ...) needs tenant_id=")
        return sandbox.provider(config, engine=engine, tenant_id=tenant_id, public_base=public_base)
    if name == yookassa.NAME:
        return yookassa.provider(config)
    assert name == stripe.NAME
    return stripe.provider(config)


def check_config(name: str, config: Mapping[str, Any]) -> dict[str, str]:
    """The settings as stored (texts, spaces trimmed, empty ones left out) once they are
    right for ``name``; ``invalid_provider_config`` naming the field otherwise."""
    if _known(name) == sandbox.NAME:
        sandbox.parse_config(config)
    elif name == yookassa.NAME:
        yookassa.parse_config(config)
    else:
        stripe.parse_config(config)
    return {
        str(key): str(value).strip()
        for key, value in config.items()
        if value is not None and str(value).strip() != ""
    }


def default_config(name: str) -> dict[str, str]:
    """What a tenant starts with: the sandbox gets a fresh secret; a real provider's
    settings come from its account and have no defaults."""
    return sandbox.new_config() if _known(name) == sandbox.NAME else {}


def secret_keys(name: str) -> frozenset[str]:
    """The settings never shown, logged or audited (``secret_key``, ...)."""
    return _SECRETS[_known(name)]


def public_config(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that may be shown, and for each secret whether it is set."""
    hidden = secret_keys(name)
    shown: dict[str, Any] = {k: v for k, v in config.items() if k not in hidden}
    for key in sorted(hidden):
        shown[f"{key}_set"] = bool(config.get(key))
    return shown
