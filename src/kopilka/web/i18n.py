"""Russian and English: message catalogues, and money, numbers and dates by locale.

Catalogues are the ``.po`` files under ``web/translations/<locale>/LC_MESSAGES/``; every
``.po`` there is read (one per area of the UI, so screens can be added without touching
one shared file) and compiled in memory at first use, so there is no build step and no
binary ``.mo`` in the repository. Source strings are English.

The locale of a request is kept in a context variable; templates and code call ``_()``
(``gettext``) and ``ngettext`` which read it.
"""

from __future__ import annotations

import io
from contextvars import ContextVar
from datetime import date, datetime, tzinfo
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.core import get_global
from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, get_currency_symbol
from babel.support import NullTranslations, Translations
from markupsafe import escape

LOCALES = ("ru", "en")
DEFAULT_LOCALE = "ru"
LOCALE_NAMES = {"ru": "Русский", "en": "English"}
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"

_locale: ContextVar[str] = ContextVar("kopilka_locale", default=DEFAULT_LOCALE)
_zone: ContextVar[str] = ContextVar("kopilka_timezone", default="Europe/Moscow")


def normalise_locale(value: str | None) -> str | None:
    """``ru``, ``ru-RU``, ``en_GB`` … → one of ``LOCALES``, or ``None``."""
    if not value:
        return None
    language = value.replace("-", "_").split("_")[0].strip().lower()
    return language if language in LOCALES else None


def negotiate(accept_language: str | None) -> str:
    """The best of ``LOCALES`` for an ``Accept-Language`` header."""
    if not accept_language:
        return DEFAULT_LOCALE
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        locale = normalise_locale(tag)
        if locale:
            weighted.append((-quality, position, locale))
    return sorted(weighted)[0][2] if weighted else DEFAULT_LOCALE


def set_locale(locale: str, timezone: str | None = None) -> None:
    _locale.set(locale if locale in LOCALES else DEFAULT_LOCALE)
    if timezone:
        _zone.set(timezone)


def current_locale() -> str:
    return _locale.get()


def current_zone() -> tzinfo:
    return ZoneInfo(_zone.get())


@cache
def translations(locale: str) -> NullTranslations:
    """Every ``.po`` of ``locale`` merged into one catalogue (English needs none)."""
    folder = TRANSLATIONS_DIR / locale / "LC_MESSAGES"
    merged: Translations | None = None
    for po in sorted(folder.glob("*.po")):
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=locale)
        buffer = io.BytesIO()
        write_mo(buffer, catalog, use_fuzzy=False)
        buffer.seek(0)
        part = Translations(buffer)
        if merged is None:
            merged = part
        else:
            merged.merge(part)
    return merged if merged is not None else NullTranslations()


def gettext(message: str, **values: object) -> str:
    text = translations(current_locale()).gettext(message)
    return text % values if values else text


def ngettext(singular: str, plural: str, n: int, **values: object) -> str:
    text = translations(current_locale()).ngettext(singular, plural, n)
    return text % {"num": n, **values}


_ = gettext


class LazyString:
    """A message translated each time it is shown, in the locale of that moment.

    For strings defined once at import (form labels, choices) but shown to many people.
    """

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __str__(self) -> str:
        return gettext(self.message)

    def __html__(self) -> str:
        return str(escape(str(self)))

    def __repr__(self) -> str:
        return f"lazy({self.message!r})"

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(self.message)

    def __len__(self) -> int:
        return len(str(self))


def lazy(message: str) -> Any:
    """Marks ``message`` for translation where it is defined; translated where it is shown."""
    return LazyString(message)


# --------------------------------------------------------------------------- formats


@cache
def _narrow_symbol(currency: str) -> str:
    """The sign people write for ``currency`` (₽, $, €, ₸), from its home territory's locale.

    CLDR's English gives the rouble as "RUB"; Russians, and most English texts about
    Russia, write ₽. Where the locale has its own sign (en: $ for USD) that one is used.
    """
    for territory, currencies in get_global("territory_currencies").items():
        if any(c[0] == currency and c[3] for c in currencies):
            likely = get_global("likely_subtags").get(f"und_{territory}")
            if likely:
                symbol = get_currency_symbol(currency, locale=Locale.parse(likely))
                if symbol != currency:
                    return symbol
    return currency


def format_money(amount_minor: int, currency: str, exponent: int, locale: str | None = None) -> str:
    """``1 234,56 ₽`` in ru, ``₽1,234.56`` in en: exact, from minor units."""
    locale = locale or current_locale()
    value = Decimal(amount_minor).scaleb(-exponent)
    text = format_currency(value, currency, locale=locale, currency_digits=False)
    local_symbol = get_currency_symbol(currency, locale=locale)
    if local_symbol == currency:
        text = text.replace(currency, _narrow_symbol(currency))
    return text


def format_number(amount_minor: int, exponent: int, locale: str | None = None) -> str:
    """A plain amount (points): grouped by locale, with its decimals if the unit has any."""
    value = Decimal(amount_minor).scaleb(-exponent)
    fmt = "#,##0" if exponent == 0 else "#,##0." + "0" * exponent
    return format_decimal(value, format=fmt, locale=locale or current_locale())


def format_amount_in_unit(
    amount_minor: int, unit_code: str, exponent: int, *, is_currency: bool
) -> str:
    if is_currency:
        return format_money(amount_minor, unit_code, exponent)
    return f"{format_number(amount_minor, exponent)}\u00a0{unit_code}"


def format_datetime(moment: datetime | None, fmt: str = "medium") -> str:
    if moment is None:
        return ""
    return babel_format_datetime(moment, fmt, tzinfo=current_zone(), locale=current_locale())


def format_date(day: date | datetime | None, fmt: str = "medium") -> str:
    if day is None:
        return ""
    if isinstance(day, datetime):
        day = day.astimezone(current_zone()).date()
    return babel_format_date(day, fmt, locale=current_locale())
