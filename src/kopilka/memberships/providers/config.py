"""Reading a provider's settings (``membership_settings.provider_config``): checked
values or ``invalid_provider_config`` naming the field. The settings are stored as texts
(the settings screen sends strings), so numbers and switches are taken as texts too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from kopilka.core.errors import InvalidInput
from kopilka.memberships.providers.error_codes import ProviderErrorCode as E

DEFAULT_TIMEOUT_MS = 10_000
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 100, 60_000


def bad(field: str, detail: str) -> InvalidInput:
    return InvalidInput(E.INVALID_PROVIDER_CONFIG, detail, field=field)


def check_keys(raw: Mapping[str, Any], allowed: Collection[str], provider: str) -> None:
    if not isinstance(raw, Mapping):
        raise bad("provider_config", "a provider's settings are an object of names and values")
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise bad(
            unknown[0],
            f"{unknown[0]} is not a setting of {provider} (its settings: "
            f"{', '.join(sorted(allowed))})",
        )


def text(raw: Mapping[str, Any], name: str, *, max_length: int = 200, prefix: str = "") -> str:
    """A required text without spaces around it (a key, an id)."""
    value = raw.get(name)
    cleaned = value.strip() if isinstance(value, str) else ""
    if not cleaned:
        raise bad(name, f"{name} is required")
    if len(cleaned) > max_length or any(ord(ch) < 33 for ch in cleaned):
        raise bad(name, f"{name} is 1 to {max_length} characters without spaces")
    if prefix and not cleaned.startswith(prefix):
        # The value is a secret: the message never repeats it.
        raise bad(name, f"{name} starts with {prefix!r}")
    return cleaned


def api_base(raw: Mapping[str, Any], default: str) -> str:
    """The API's address without a trailing slash (a local stand-in's in tests)."""
    value = raw.get("api_base")
    if value in (None, ""):
        return default
    cleaned = value.strip().rstrip("/") if isinstance(value, str) else ""
    parts = urlsplit(cleaned) if 0 < len(cleaned) <= 300 else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or " " in cleaned
    ):
        raise bad("api_base", f"api_base is an http(s) address such as {default}, not {value!r}")
    return cleaned


def whole_number(
    raw: Mapping[str, Any], name: str, default: int, low: int, high: int, unit: str = ""
) -> int:
    value = raw.get(name)
    if value in (None, ""):
        return default
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad(name, f"{name} is a whole number{unit} from {low} to {high}, not {value!r}")
    return value


def timeout_ms(raw: Mapping[str, Any]) -> int:
    return whole_number(
        raw, "timeout_ms", DEFAULT_TIMEOUT_MS, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, " of milliseconds"
    )


def flag(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name)
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise bad(name, f"{name} is true or false, not {value!r}")
