"""Configuration from environment variables (``KOPILKA_*``) and an optional TOML file.

The file named by ``KOPILKA_CONFIG_FILE`` is read first; environment variables win over it.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _default_database_url() -> str:
    return f"sqlite:///{Path('var') / 'kopilka.db'}"


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the optional file named by ``KOPILKA_CONFIG_FILE`` (keys as field names)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        import os

        path = os.environ.get("KOPILKA_CONFIG_FILE")
        if not path:
            return {}
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        return {str(key).lower(): value for key, value in data.items()}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KOPILKA_", extra="ignore")

    database_url: str = Field(default_factory=_default_database_url)
    # How many rows share the balance of a hot system account (issuance, revenue).
    hot_account_shards: int = Field(default=16, ge=1, le=256)
    # Staff API tokens live this long.
    staff_token_ttl_hours: int = Field(default=12, ge=1)
    # Holds expire after this long unless the request names another moment.
    default_hold_ttl_seconds: int = Field(default=900, ge=1)
    # The nightly routine runs by itself inside `kopilka serve` at this hour of each
    # tenant's own time zone (``kopilka nightly`` runs it on demand).
    nightly_hour: int = Field(default=2, ge=0, le=23)
    nightly_scheduler: bool = False  # `kopilka serve` turns it on
    # How long a server process may keep what the POS gateway reads on every request and
    # staff change seldom: a terminal key's sign-in, a loyalty program with its tiers, the
    # ids of system accounts. A change made through this process takes effect at once; one
    # made through another process, within this many seconds. 0 turns the caches off.
    config_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    # Kopilka's address as the outside world reaches it (https://kopilka.example), for
    # the addresses it hands out, such as r_keeper's ExtDllHttp.ini; None: the address a
    # screen was opened at.
    public_url: str | None = None
    # Outgoing e-mail (kopilka.mail): the SMTP server that takes Kopilka's messages. SSL is
    # TLS from the first byte (port 465); STARTTLS upgrades a plain connection (587).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None  # never logged, never stored with an error
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    # Per network step (connect, each command's answer), not for the whole exchange.
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=120)
    mail_from: str = "Kopilka <no-reply@localhost>"
    # The longest request body taken (routes that take files have their own, larger
    # limits: kopilka.api.limits); a longer one is refused before it is read.
    max_body_bytes: int = Field(default=1024 * 1024, ge=16 * 1024, le=1024 * 1024 * 1024)
    # The public checkout of memberships: how many orders one address may begin in a
    # window of minutes (each asks the payment provider for a payment).
    checkout_limit_per_address: int = Field(default=10, ge=1)
    checkout_limit_window_minutes: int = Field(default=10, ge=1)
    log_level: str = "INFO"
    log_json: bool = True
    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("mail_from")
    @classmethod
    def _one_address(cls, value: str) -> str:
        """One address, with or without a name: ``Studio <no-reply@studio.example>``."""
        from email.headerregistry import AddressHeader

        parsed: dict[str, Any] = {}
        if not any(ch in value for ch in "\r\n\x00"):
            AddressHeader.parse(value, parsed)
        groups = parsed.get("groups", ())
        addresses = [a for group in groups if not group.display_name for a in group.addresses]
        whole = len(groups) == len(addresses) == 1 and not parsed.get("defects")
        if not whole or not addresses[0].username or not addresses[0].domain:
            raise ValueError("KOPILKA_MAIL_FROM is one address, such as Kopilka <no-reply@x.ru>")
        return value.strip()

    @model_validator(mode="after")
    def _one_kind_of_tls(self) -> Settings:
        if self.smtp_ssl and self.smtp_starttls:
            raise ValueError("set KOPILKA_SMTP_SSL or KOPILKA_SMTP_STARTTLS, not both")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
