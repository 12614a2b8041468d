"""The Settings tab "r_keeper (FarCards)" (SPEC P-10): owners and administrators.

What ``kopilka farcards`` does from the command line, on screen: the tab lists the
company's terminals and whether each answers r_keeper's FarCards (restaurant, stations,
addresses allowed to call); a terminal's page connects it or changes its settings and
(re)issues its FarCards secret, shown once on the page that follows together with the
``ExtDllHttp.ini`` to copy (``kopilka.farcards.ini``, as the CLI prints it); the tab
maps the card's balances to FarCards' sub-accounts Sum2..Sum8; a program's page sets the
r_keeper discount and bonus numbers of the program and of each of its tiers.

Every save is one transaction through ``kopilka.farcards.terminals``; a refusal lands
next to its field, in the user's language, and writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from wtforms import BooleanField, IntegerField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.core.money import UnitKind
from kopilka.farcards import terminals as ft
from kopilka.farcards.error_codes import E
from kopilka.farcards.ini import ext_dll_http_ini, farcards_address, public_base_url
from kopilka.ledger.accounts import list_units
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.programs import Program, Tier, get_program, list_programs
from kopilka.tenancy.actions import Terminal, get_terminal, list_terminals
from kopilka.web.deps import Page, redirect, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.settings import _show  # the settings section's frame and tabs

router = APIRouter(include_in_schema=False)
T = TypeVar("T")

FarcardsPage = Annotated[Page, Depends(require("settings.farcards"))]
HOME = "/settings/farcards"
TAB = "farcards"
SUB_ACCOUNTS = tuple(range(ft.FIRST_SUB_ACCOUNT, ft.LAST_SUB_ACCOUNT + 1))
_SEPARATORS = re.compile(r"[\s,;]+")


async def _form_data(request: Request) -> FormData:
    return await request.form()


Posted = Annotated[FormData, Depends(_form_data)]


class TerminalLinkForm(WebForm):
    restaurant_code = StringField(
        lazy("Restaurant code"),
        validators=[DataRequired(), Length(max=32)],
        render_kw={"maxlength": 32, "spellcheck": "false", "autocomplete": "off"},
    )
    stations = StringField(
        lazy("Stations"),
        validators=[Length(max=1000)],
        render_kw={"spellcheck": "false", "autocomplete": "off", "size": 30},
    )
    allowed_ips = StringField(
        lazy("Addresses allowed to call"),
        validators=[Length(max=4000)],
        render_kw={"spellcheck": "false", "autocomplete": "off", "size": 60},
    )
    new_secret = BooleanField(lazy("Issue a new secret"))


class SubAccountsForm(WebForm):
    # FarCards' own names, the same in every language.
    sum2 = SelectField("Sum2", default="")
    sum3 = SelectField("Sum3", default="")
    sum4 = SelectField("Sum4", default="")
    sum5 = SelectField("Sum5", default="")
    sum6 = SelectField("Sum6", default="")
    sum7 = SelectField("Sum7", default="")
    sum8 = SelectField("Sum8", default="")


class CodesForm(WebForm):
    """One row of a program's numbers: the program's own (``own`` unused), or a tier's."""

    own = BooleanField(lazy("Numbers of its own"))
    discount = IntegerField(
        lazy("Discount number"), validators=[Optional()], render_kw={"min": 1, "step": 1}
    )
    bonus = IntegerField(
        lazy("Bonus number"), validators=[Optional()], render_kw={"min": 1, "step": 1}
    )


@dataclass(frozen=True, slots=True)
class CodesRow:
    tier: Tier | None  # None: the program's own numbers
    form: CodesForm
    inherited: tuple[int | None, int | None]  # the program's, shown by a tier without its own


# --------------------------------------------------------------------------- helpers


def _save(
    page: Page,
    work: Callable[[Connection], T],
    refusals: Callable[[KopilkaError], tuple[WebForm, dict[str, tuple[str, str]]]],
) -> T | None:
    """``work`` in one transaction; a domain refusal lands on the form ``refusals`` names
    for it (``None``), a missing object of another kind is a 404."""
    try:
        return run_transaction(page.engine, work)
    except KopilkaError as error:
        form, fields = refusals(error)
        if isinstance(error, NotFound) and error.code not in fields:
            raise HTTPException(404) from error
        form.refuse(error, fields)
        return None


def _items(text: str | None) -> list[str] | None:
    """``"2, 3 4"`` → ``["2", "3", "4"]``; nothing typed → ``None`` (any)."""
    items = [item for item in _SEPARATORS.split(text or "") if item]
    return items or None


def _value(error: KopilkaError) -> str:
    return str(error.params.get("value") or "")


def _terminal_errors(error: KopilkaError) -> dict[str, tuple[str, str]]:
    code_rule = _("1 to 32 latin letters, digits, _ or -")
    value = _value(error)
    station = (
        _("“%(value)s” is not a station code: %(rule)s.", value=value, rule=code_rule)
        if value
        else _("Station codes are %(rule)s.", rule=code_rule)
    )
    address = (
        _(
            "“%(value)s” is neither an address nor a network; write them as 192.168.10.5 "
            "or 192.168.10.0/24.",
            value=value,
        )
        if value
        else _("Name at least one address or network, or leave the field empty.")
    )
    return {
        E.INVALID_RESTAURANT_CODE: (
            "restaurant_code",
            _("A restaurant code is %(rule)s.", rule=code_rule),
        ),
        E.INVALID_STATION_CODE: ("stations", station),
        E.INVALID_ALLOW_LIST: ("allowed_ips", address),
        E.TERMINAL_REVOKED: ("", _("This terminal is revoked; add a new one and connect it.")),
    }


def _terminal(page: Page, terminal_id: int) -> tuple[Terminal, ft.FarcardsTerminal | None]:
    with read_only(page.engine) as conn:
        try:
            terminal = get_terminal(conn, page.tenant.id, terminal_id)
        except NotFound as error:
            raise HTTPException(404) from error
        return terminal, ft.list_links(conn, page.tenant.id).get(terminal_id)


def _source_choices(conn: Connection, page: Page, mapped: dict[str, int]) -> list[SelectChoice]:
    choices = [
        SelectChoice("", _("Nothing")),
        *(
            SelectChoice(u.code, f"{u.name or u.code} ({u.code})")
            for u in list_units(conn, page.tenant.id)
            if u.kind == UnitKind.POINTS
        ),
        SelectChoice(ft.ACCUMULATION, _("Purchases counted for the tier")),
    ]
    known = {c.value for c in choices}
    # A source set from the CLI that is no unit of points (any more) stays as it is.
    choices += [SelectChoice(s, s) for s in sorted(mapped) if s not in known]
    return choices


def _sub_accounts_form(
    conn: Connection, page: Page, mapped: dict[str, int], data: Any = None
) -> SubAccountsForm:
    if data is None:
        shown = {number: source for source, number in mapped.items()}
        form = SubAccountsForm(
            data={f"sum{n}": shown.get(n, "") for n in SUB_ACCOUNTS}, prefix="sub"
        )
    else:  # what is posted is the whole mapping: a sub-account left out shows nothing
        form = SubAccountsForm(data, prefix="sub")
    choices = _source_choices(conn, page, mapped)
    for number in SUB_ACCOUNTS:
        getattr(form, f"sum{number}").choices = choices
    return form


def _home(page: Page, sub_form: SubAccountsForm | None = None, status_code: int = 200) -> Response:
    with read_only(page.engine) as conn:
        links = ft.list_links(conn, page.tenant.id)
        rows = [(t, links.get(t.id)) for t in list_terminals(conn, page.tenant.id)]
        mapped = ft.sub_accounts(conn, page.tenant.id)
        sub_form = sub_form or _sub_accounts_form(conn, page, mapped)
        programs = list_programs(conn, page.tenant.id)
        codes = ft.list_codes(conn, page.tenant.id)
    return _show(
        page,
        "farcards.html",
        TAB,
        status_code=status_code,
        rows=rows,
        sub_form=sub_form,
        sub_fields=[getattr(sub_form, f"sum{n}") for n in SUB_ACCOUNTS],
        programs=programs,
        codes=codes,
    )


# --------------------------------------------------------------------------- the tab


@router.get(HOME)
def farcards_home(page: FarcardsPage) -> Response:
    return _home(page)


@router.post(f"{HOME}/sub-accounts")
def sub_accounts_save(page: FarcardsPage, posted: Posted) -> Response:
    """The whole mapping at once: each balance in one sub-account, each sub-account one."""
    with read_only(page.engine) as conn:
        mapped = ft.sub_accounts(conn, page.tenant.id)
        form = _sub_accounts_form(conn, page, mapped, posted)
    valid = form.validate()
    wanted: dict[str, int] = {}
    fields = {number: getattr(form, f"sum{number}") for number in SUB_ACCOUNTS}
    for number, field in fields.items():
        source = field.data or ""
        if source in wanted:
            form.add_error(
                field.short_name,
                _("This balance is shown in Sum%(number)s already.", number=wanted[source]),
            )
        elif source:
            wanted[source] = number
    if valid and not form.has_errors:
        at = [""]  # the field being saved, for a refusal

        def work(conn: Connection) -> bool:
            now = ft.sub_accounts(conn, page.tenant.id)
            for source in sorted(set(now) - set(wanted)):
                at[0] = f"sum{now[source]}"
                ft.set_sub_account(
                    conn,
                    tenant_id=page.tenant.id,
                    source=source,
                    sub_account=None,
                    actor=page.actor,
                )
            for source, number in wanted.items():
                if now.get(source) != number:
                    at[0] = f"sum{number}"
                    ft.set_sub_account(
                        conn,
                        tenant_id=page.tenant.id,
                        source=source,
                        sub_account=number,
                        actor=page.actor,
                    )
            page.flash_next(conn, "success", _("The sub-accounts are saved."))
            return True

        def refusals(error: KopilkaError) -> tuple[WebForm, dict[str, tuple[str, str]]]:
            choose = _("Choose a balance from the list.")
            return form, {E.INVALID_SOURCE: (at[0], choose), E.INVALID_SUB_ACCOUNT: ("", choose)}

        if _save(page, work, refusals):
            return redirect(HOME, page.request)
    return _home(page, form, 422)


# --------------------------------------------------------------------------- a terminal


def _terminal_page(
    page: Page,
    terminal: Terminal,
    link: ft.FarcardsTerminal | None,
    form: TerminalLinkForm,
    status_code: int = 200,
) -> Response:
    return _show(
        page,
        "farcards_terminal.html",
        TAB,
        status_code=status_code,
        terminal=terminal,
        link=link,
        form=form,
    )


@router.get(HOME + "/terminals/{terminal_id:int}")
def terminal_link_edit(page: FarcardsPage, terminal_id: int) -> Response:
    terminal, link = _terminal(page, terminal_id)
    data: dict[str, object] = {}
    if link is not None:
        data = {
            "restaurant_code": link.restaurant_code,
            "stations": ", ".join(link.station_codes or ()),
            "allowed_ips": ", ".join(link.allowed_ips or ()),
        }
    return _terminal_page(page, terminal, link, TerminalLinkForm(data=data))


@router.post(HOME + "/terminals/{terminal_id:int}")
def terminal_link_save(page: FarcardsPage, terminal_id: int, posted: Posted) -> Response:
    terminal, link = _terminal(page, terminal_id)
    form = TerminalLinkForm(posted)
    if form.validate():

        def work(conn: Connection) -> tuple[ft.FarcardsTerminal, str | None]:
            saved, secret = ft.configure_terminal(
                conn,
                tenant_id=page.tenant.id,
                terminal_id=terminal_id,
                restaurant_code=form.restaurant_code.data or "",
                station_codes=_items(form.stations.data),
                allowed_ips=_items(form.allowed_ips.data),
                new_secret=bool(form.new_secret.data),
                actor=page.actor,
            )
            if secret is None:
                page.flash_next(
                    conn,
                    "success",
                    _(
                        "The FarCards settings of “%(name)s” are saved; its secret is unchanged.",
                        name=terminal.name,
                    ),
                )
            return saved, secret

        done = _save(page, work, lambda error: (form, _terminal_errors(error)))
        if done is not None:
            saved, secret = done
            if secret is None:
                return redirect(HOME, page.request)
            # Shown here, once: only the secret's digest is kept.
            page.flash.append(
                {
                    "kind": "success",
                    "text": _(
                        "Terminal “%(name)s” answers r_keeper's FarCards with a new secret.",
                        name=terminal.name,
                    ),
                }
            )
            base = public_base_url(str(page.request.base_url))
            return _show(
                page,
                "farcards_secret.html",
                TAB,
                terminal=terminal,
                link=saved,
                secret=secret,
                address=farcards_address(base, page.tenant.slug, secret),
                ini=ext_dll_http_ini(base, page.tenant.slug, secret),
            )
    return _terminal_page(page, terminal, link, form, 422)


# --------------------------------------------------------------------------- numbers


Codes = dict[tuple[int, int | None], tuple[int | None, int | None]]


def _program(page: Page, program_id: int) -> tuple[Program, Codes]:
    with read_only(page.engine) as conn:
        try:
            program = get_program(conn, page.tenant.id, program_id)
        except NotFound as error:
            raise HTTPException(404) from error
        return program, ft.list_codes(conn, page.tenant.id)


def _codes_rows(
    program: Program,
    codes: Codes,
    posted: FormData | None = None,
) -> list[CodesRow]:
    rows = []
    inherited = codes.get((program.id, None), (None, None))
    for tier in (None, *program.tiers):
        key = (program.id, tier.id if tier else None)
        prefix = "program" if tier is None else f"tier{tier.id}"
        if posted is None:
            discount, bonus = codes.get(key, (None, None))
            data = {"own": key in codes, "discount": discount, "bonus": bonus}
            form = CodesForm(data=data, prefix=prefix)
        else:
            form = CodesForm(posted, prefix=prefix)
        rows.append(CodesRow(tier, form, inherited))
    return rows


def _codes_page(
    page: Page, program: Program, rows: list[CodesRow], status_code: int = 200
) -> Response:
    return _show(
        page, "farcards_codes.html", TAB, status_code=status_code, program=program, rows=rows
    )


@router.get(HOME + "/programs/{program_id:int}")
def codes_edit(page: FarcardsPage, program_id: int) -> Response:
    program, codes = _program(page, program_id)
    return _codes_page(page, program, _codes_rows(program, codes))


@router.post(HOME + "/programs/{program_id:int}")
def codes_save(page: FarcardsPage, program_id: int, posted: Posted) -> Response:
    program, codes = _program(page, program_id)
    rows = _codes_rows(program, codes, posted)
    valid = all([row.form.validate() for row in rows])  # every row's errors, not the first
    for row in rows:
        typed = row.form.discount.data is not None or row.form.bonus.data is not None
        if row.tier is not None and typed and not row.form.own.data:
            row.form.add_error("own", _("Tick this to give the tier these numbers, or clear them."))
    if valid and not any(row.form.has_errors for row in rows):
        at = [rows[0].form]  # the row being saved, for a refusal

        def work(conn: Connection) -> bool:
            now = ft.list_codes(conn, page.tenant.id)
            for row in rows:
                at[0] = row.form
                tier_id = row.tier.id if row.tier else None
                key = (program.id, tier_id)
                wanted = (row.form.discount.data, row.form.bonus.data)
                own = bool(row.form.own.data) if row.tier else wanted != (None, None)
                if not own:
                    if key in now:
                        ft.clear_codes(
                            conn,
                            tenant_id=page.tenant.id,
                            program_id=program.id,
                            tier_id=tier_id,
                            actor=page.actor,
                        )
                elif now.get(key) != wanted:
                    ft.set_codes(
                        conn,
                        tenant_id=page.tenant.id,
                        program_id=program.id,
                        tier_id=tier_id,
                        discount_code=wanted[0],
                        bonus_code=wanted[1],
                        actor=page.actor,
                    )
            page.flash_next(
                conn,
                "success",
                _("The r_keeper numbers of “%(name)s” are saved.", name=program.name),
            )
            return True

        def refusals(error: KopilkaError) -> tuple[WebForm, dict[str, tuple[str, str]]]:
            number = _("Enter a whole number from 1 to 2147483647, or leave it empty.")
            return at[0], {
                E.INVALID_DISCOUNT_CODE: ("discount", number),
                E.INVALID_BONUS_CODE: ("bonus", number),
                E.UNKNOWN_TIER: ("", _("The program's tiers have changed; open the page again.")),
            }

        if _save(page, work, refusals):
            return redirect(HOME, page.request)
    return _codes_page(page, program, rows, 422)
