"""The ``ExtDllHttp.ini`` an r_keeper station needs to reach Kopilka (written once, here).

The CLI (``kopilka farcards configure``) prints it and the settings screen shows it, both
right after a terminal's FarCards secret is made: the secret rides in the address and is
never shown again. Kopilka's own address comes from ``KOPILKA_PUBLIC_URL`` when it is
set, else from the caller (the CLI's ``--base-url``, the address the screen was opened
at).
"""

from __future__ import annotations

from kopilka.core.settings import get_settings

# The functions Kopilka serves; FindEmail, GetCardImageEx and LicenseInfo are optional in
# the protocol and left out.
FUNCTIONS = ("GetCardInfoEx", "TransactionsEx")


def public_base_url(fallback: str) -> str:
    """Kopilka's address as r_keeper reaches it: ``KOPILKA_PUBLIC_URL``, else ``fallback``."""
    return (get_settings().public_url or fallback).rstrip("/")


def farcards_address(base_url: str, tenant_slug: str, secret: str) -> str:
    return f"{base_url.rstrip('/')}/farcards/{tenant_slug}/{secret}"


def ext_dll_http_ini(base_url: str, tenant_slug: str, secret: str) -> str:
    """The ``[Server]`` section of ``ExtDllHttp.ini`` for a terminal with this secret."""
    lines = ["[Server]", f"Address={farcards_address(base_url, tenant_slug, secret)}"]
    lines += [f"{name}={name}" for name in FUNCTIONS]
    return "\n".join(lines)
