"""Russian and English throughout (SPEC X-4): every UI string has its Russian, and money
and dates are written the way each language writes them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

from kopilka.web import i18n

WEB = Path(i18n.__file__).resolve().parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy": None}


def ui_messages() -> list[tuple[str, int, str | tuple[str, ...]]]:
    found = extract_from_dir(
        str(WEB),
        method_map=[("**.py", "python"), ("templates/**.html", "jinja2.ext:babel_extract")],
        options_map={
            "templates/**.html": {
                "extensions": "jinja2.ext.i18n",
                "trim_blocks": "true",
                "lstrip_blocks": "true",
            }
        },
        keywords=KEYWORDS,
    )
    return [(filename, lineno, message) for filename, lineno, message, _, _ in found]


def test_every_ui_string_has_its_russian() -> None:
    catalogue = i18n.translations("ru")
    messages = ui_messages()
    assert len(messages) > 50, "the extractor found the UI's strings"
    missing = []
    for filename, lineno, message in messages:
        if isinstance(message, tuple):
            singular, plural = message[0], message[1]
            forms = {catalogue.ngettext(singular, plural, n) for n in (1, 2, 5)}
            if singular in forms or plural in forms:
                missing.append(f"{filename}:{lineno}: {singular!r}")
        elif catalogue.gettext(message) == message and not _same_in_both(message):
            missing.append(f"{filename}:{lineno}: {message!r}")
    assert not missing, "no Russian for:\n" + "\n".join(sorted(set(missing)))


def _same_in_both(message: str) -> bool:
    """Strings that read the same in both languages (a bare placeholder, a symbol)."""
    stripped = message
    for token in ("%(first)s", "%(last)s", "%(total)s", "%(name)s", "\u2013", " ", "\u00b7", "/"):
        stripped = stripped.replace(token, "")
    return not any(ch.isalpha() for ch in stripped)


@pytest.mark.parametrize(
    ("locale", "minor", "currency", "expected"),
    [
        ("ru", 123456, "RUB", "1\u00a0234,56\u00a0₽"),
        ("en", 123456, "RUB", "₽1,234.56"),
        ("ru", -500, "RUB", "-5,00\u00a0₽"),
        ("en", 100000000, "USD", "$1,000,000.00"),
        ("ru", 1050, "EUR", "10,50\u00a0€"),
    ],
)
def test_money_is_written_as_each_language_writes_it(
    locale: str, minor: int, currency: str, expected: str
) -> None:
    assert i18n.format_money(minor, currency, 2, locale=locale) == expected


def test_points_are_grouped_by_locale() -> None:
    assert i18n.format_number(1234567, 0, locale="ru") == "1\u00a0234\u00a0567"
    assert i18n.format_number(1234567, 0, locale="en") == "1,234,567"


def test_dates_are_shown_in_the_tenants_time_zone() -> None:
    i18n.set_locale("ru", "Asia/Yekaterinburg")
    # 20:30 UTC is 01:30 the next day in Yekaterinburg (UTC+5).
    assert i18n.format_date(datetime(2026, 3, 1, 20, 30, tzinfo=UTC)) == "2 мар. 2026\u202fг."
    i18n.set_locale("en", "Europe/Moscow")
    assert i18n.format_date(datetime(2026, 3, 1, 20, 30, tzinfo=UTC)) == "Mar 1, 2026"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("en-GB,en;q=0.9", "en"),
        ("de-DE,de;q=0.9,en;q=0.5,ru;q=0.8", "ru"),
        ("fr", "ru"),
        (None, "ru"),
    ],
)
def test_browser_language_picks_the_closest_catalogue(header: str | None, expected: str) -> None:
    assert i18n.negotiate(header) == expected
