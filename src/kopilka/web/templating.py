"""Jinja2 for the web UI: one environment, translated with the request's locale."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from kopilka.web import i18n

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


def money(amount_minor: int | None, unit: Any) -> str:
    """An amount in a unit (a ``UnitView`` or anything with code, exponent and kind)."""
    if amount_minor is None:
        return ""
    kind = getattr(unit.kind, "value", unit.kind)
    if kind == "currency":
        return i18n.format_money(amount_minor, unit.code, unit.exponent)
    label = getattr(unit, "name", "") or unit.code
    return f"{i18n.format_number(amount_minor, unit.exponent)}\u00a0{label}"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "svg"]),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext, i18n.ngettext, newstyle=True
    )
    env.globals.update(
        money=money,
        number=i18n.format_number,
        datetime=i18n.format_datetime,
        date=i18n.format_date,
        current_locale=i18n.current_locale,
        locale_names=i18n.LOCALE_NAMES,
    )
    env.filters["money"] = money
    env.filters["datetime"] = i18n.format_datetime
    env.filters["date"] = i18n.format_date
    return env


def render_template(name: str, context: dict[str, Any]) -> str:
    return environment().get_template(name).render(context)
