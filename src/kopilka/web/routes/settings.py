"""Settings (SPEC X-1, X-2, X-4): the company, branches, staff, terminals, units.

Each tab has its own permission; the sub-navigation shows only the tabs the role may
open. Writes go through the domain actions, which keep the rules (an administrator makes
no owners, nobody demotes or deactivates themselves, the last owner stays an owner), in
one transaction with the message shown after the redirect: a refusal writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.core.money import MoneyErrorCode, UnitKind
from kopilka.ledger.accounts import create_unit, list_units
from kopilka.ledger.error_codes import LedgerErrorCode
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import (
    TenancyErrorCode,
    User,
    create_branch,
    create_terminal,
    create_user,
    get_terminal,
    get_user,
    list_branches,
    list_terminals,
    list_users,
    rename_branch,
    revoke_terminal,
    set_password,
    update_tenant,
    update_user,
)
from kopilka.tenancy.roles import ADMINISTRATOR, CASHIER, FRONT_DESK, OWNER, roles_assignable_by
from kopilka.web import i18n
from kopilka.web.deps import Page, PageDep, WebForbidden, redirect, render, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.paging import paging_of

router = APIRouter(include_in_schema=False)
E = TenancyErrorCode
T = TypeVar("T")

TenantPage = Annotated[Page, Depends(require("settings.tenant"))]
BranchesPage = Annotated[Page, Depends(require("settings.branches"))]
UsersPage = Annotated[Page, Depends(require("settings.users"))]
TerminalsPage = Annotated[Page, Depends(require("settings.terminals"))]
UnitsPage = Annotated[Page, Depends(require("settings.units"))]


async def _form_data(request: Request) -> FormData:
    # Read here (already parsed for the CSRF check) so the routes can stay synchronous
    # and run in the thread pool: they hash passwords and talk to the database.
    return await request.form()


Posted = Annotated[FormData, Depends(_form_data)]

# (key, permission, address, label): the tabs, in the order shown.
TABS = (
    ("tenant", "settings.tenant", "/settings/tenant", lazy("Company")),
    ("branches", "settings.branches", "/settings/branches", lazy("Branches")),
    ("users", "settings.users", "/settings/users", lazy("Staff")),
    ("terminals", "settings.terminals", "/settings/terminals", lazy("Terminals")),
    ("units", "settings.units", "/settings/units", lazy("Currencies and points")),
    (
        "payment-types",
        "settings.payment_types",
        "/settings/payment-types",
        lazy("Payment types"),
    ),
    (
        "cash-registers",
        "settings.payment_types",
        "/settings/cash-registers",
        lazy("Cash registers"),
    ),
    (
        "loyalty-centre",
        "settings.payment_types",
        "/settings/loyalty-centre",
        lazy("Loyalty centre"),
    ),
    ("hotel", "settings.payment_types", "/settings/hotel", lazy("Hotel")),
    ("subscribers", "settings.subscribers", "/settings/subscribers", lazy("Subscribers")),
    ("memberships", "settings.memberships", "/settings/memberships", lazy("Memberships")),
    # The names of two products, the same in every language.
    ("farcards", "settings.farcards", "/settings/farcards", "r_keeper (FarCards)"),
    ("webhooks", "settings.webhooks", "/settings/webhooks", lazy("Webhooks")),
    ("mail", "settings.mail", "/settings/mail", lazy("E-mail")),
    ("loyalty", "settings.loyalty", "/settings/loyalty", lazy("Loyalty module")),
)

ROLE_LABELS = {
    OWNER: lazy("Owner"),
    ADMINISTRATOR: lazy("Administrator"),
    CASHIER: lazy("Cashier"),
    FRONT_DESK: lazy("Front desk"),
}

# The languages of the screens (their names are written in themselves).
_LANGUAGES = [SelectChoice(code, name) for code, name in i18n.LOCALE_NAMES.items()]

# Offered in the time zone field; any other IANA name may be typed.
TIME_ZONES = (
    "Europe/Kaliningrad",
    "Europe/Moscow",
    "Europe/Volgograd",
    "Europe/Samara",
    "Asia/Yekaterinburg",
    "Asia/Omsk",
    "Asia/Novosibirsk",
    "Asia/Barnaul",
    "Asia/Krasnoyarsk",
    "Asia/Irkutsk",
    "Asia/Yakutsk",
    "Asia/Vladivostok",
    "Asia/Magadan",
    "Asia/Kamchatka",
    "Europe/Minsk",
    "Asia/Almaty",
    "Asia/Tashkent",
    "Asia/Bishkek",
    "Asia/Dushanbe",
    "Asia/Ashgabat",
    "Asia/Baku",
    "Asia/Tbilisi",
    "Asia/Yerevan",
    "Europe/Chisinau",
    "UTC",
)


def _show(
    page: Page, template: str, tab: str, *, status_code: int = 200, **context: Any
) -> Response:
    tabs = [(key, label, href) for key, permission, href, label in TABS if page.can(permission)]
    return render(
        page, f"settings/{template}", status_code=status_code, tabs=tabs, tab=tab, **context
    )


def _save(
    page: Page,
    form: WebForm,
    work: Callable[[Connection], T],
    refusals: Callable[[], dict[str, tuple[str, str]]],
) -> T | None:
    """Runs ``work`` in one transaction; a domain refusal lands on the form (``None``)."""
    try:
        return run_transaction(page.engine, work)
    except KopilkaError as error:
        fields = refusals()
        if isinstance(error, NotFound) and error.code not in fields:
            raise HTTPException(404) from error
        form.refuse(error, fields)
        return None


def _name_errors() -> dict[str, tuple[str, str]]:
    return {E.INVALID_NAME: ("name", _("Enter 1 to 200 characters."))}


@router.get("/settings")
def settings_home(page: PageDep) -> Response:
    for _key, permission, href, _label in TABS:
        if page.can(permission):
            return redirect(href)
    raise WebForbidden("settings.users")


# --------------------------------------------------------------------------- company


class TenantForm(WebForm):
    name = StringField(lazy("Company name"), validators=[DataRequired(), Length(max=200)])
    locale = SelectField(lazy("Language"), choices=_LANGUAGES)
    timezone = StringField(
        lazy("Time zone"),
        validators=[DataRequired(), Length(max=64)],
        render_kw={"list": "time-zones", "autocomplete": "off", "spellcheck": "false"},
    )
    currency = StringField(
        lazy("Home currency"),
        validators=[DataRequired(), Length(max=3)],
        render_kw={"maxlength": 3, "autocapitalize": "characters", "spellcheck": "false"},
    )


def _tenant_page(page: Page, form: TenantForm, status_code: int = 200) -> Response:
    return _show(
        page, "tenant.html", "tenant", status_code=status_code, form=form, time_zones=TIME_ZONES
    )


@router.get("/settings/tenant")
def tenant_form(page: TenantPage) -> Response:
    t = page.tenant
    data = {"name": t.name, "locale": t.locale, "timezone": t.timezone, "currency": t.currency}
    return _tenant_page(page, TenantForm(data=data))


@router.post("/settings/tenant")
def tenant_save(page: TenantPage, posted: Posted) -> Response:
    form = TenantForm(posted)
    if form.validate():
        locale = form.locale.data or ""

        def work(conn: Connection) -> bool:
            update_tenant(
                conn,
                tenant_id=page.tenant.id,
                name=form.name.data or "",
                locale=locale,
                timezone=form.timezone.data or "",
                currency=form.currency.data or "",
                actor=page.actor,
            )
            if page.user.locale is None:
                # The next page speaks the new language; so does this message.
                i18n.set_locale(locale)
            page.flash_next(conn, "success", _("The company's settings are saved."))
            return True

        if _save(
            page,
            form,
            work,
            lambda: {
                **_name_errors(),
                E.INVALID_LOCALE: ("locale", _("Choose a language from the list.")),
                E.INVALID_TIMEZONE: (
                    "timezone",
                    _("Unknown time zone. Use a name such as Europe/Moscow."),
                ),
                MoneyErrorCode.UNKNOWN_CURRENCY: (
                    "currency",
                    _("Not an ISO 4217 currency code (such as RUB, KZT, USD)."),
                ),
            },
        ):
            return redirect("/settings/tenant", page.request)
    return _tenant_page(page, form, 422)


# --------------------------------------------------------------------------- branches


class BranchForm(WebForm):
    name = StringField(lazy("Name"), validators=[DataRequired(), Length(max=200)])


def _branch_errors() -> dict[str, tuple[str, str]]:
    return {
        **_name_errors(),
        E.BRANCH_EXISTS: ("name", _("A branch with this name exists already.")),
    }


def _branches_page(
    page: Page,
    form: BranchForm | None = None,
    *,
    rename: tuple[int, BranchForm] | None = None,
    status_code: int = 200,
) -> Response:
    with read_only(page.engine) as conn:
        rows = list_branches(conn, page.tenant.id)
    return _show(
        page,
        "branches.html",
        "branches",
        status_code=status_code,
        branches=rows,
        form=form or BranchForm(),
        rename_id=rename[0] if rename else None,
        rename_form=rename[1] if rename else None,
    )


@router.get("/settings/branches")
def branches_list(page: BranchesPage) -> Response:
    return _branches_page(page)


@router.post("/settings/branches")
def branch_create(page: BranchesPage, posted: Posted) -> Response:
    form = BranchForm(posted)
    if form.validate():
        name = (form.name.data or "").strip()

        def work(conn: Connection) -> bool:
            create_branch(conn, tenant_id=page.tenant.id, name=name, actor=page.actor)
            page.flash_next(conn, "success", _("Branch “%(name)s” is added.", name=name))
            return True

        if _save(page, form, work, _branch_errors):
            return redirect("/settings/branches", page.request)
    return _branches_page(page, form, status_code=422)


@router.post("/settings/branches/{branch_id}")
def branch_rename(page: BranchesPage, branch_id: int, posted: Posted) -> Response:
    form = BranchForm(posted)
    if form.validate():
        name = (form.name.data or "").strip()

        def work(conn: Connection) -> bool:
            rename_branch(
                conn, tenant_id=page.tenant.id, branch_id=branch_id, name=name, actor=page.actor
            )
            page.flash_next(conn, "success", _("The branch is now called “%(name)s”.", name=name))
            return True

        if _save(page, form, work, _branch_errors):
            return redirect("/settings/branches", page.request)
    return _branches_page(page, rename=(branch_id, form), status_code=422)


# --------------------------------------------------------------------------- staff


def _role_choices(page: Page) -> list[SelectChoice]:
    return [SelectChoice(role, ROLE_LABELS[role]) for role in roles_assignable_by(page.user.role)]


class NewUserForm(WebForm):
    login = StringField(
        lazy("Login"),
        validators=[DataRequired(), Length(max=100)],
        render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"},
    )
    full_name = StringField(lazy("Full name"), validators=[Length(max=200)])
    role = SelectField(lazy("Role"))
    password = PasswordField(
        lazy("Password"),
        validators=[DataRequired(), Length(min=8, max=200)],
        render_kw={"autocomplete": "new-password"},
    )
    locale = SelectField(
        lazy("Language"),
        choices=[SelectChoice("", lazy("The company's language")), *_LANGUAGES],
        default="",
    )


class EditUserForm(WebForm):
    full_name = StringField(lazy("Full name"), validators=[Length(max=200)])
    role = SelectField(lazy("Role"))
    is_active = BooleanField(lazy("Active: may sign in"))


class PasswordForm(WebForm):
    password = PasswordField(
        lazy("New password"),
        validators=[DataRequired(), Length(min=8, max=200)],
        render_kw={"autocomplete": "new-password"},
    )


def _user_errors() -> dict[str, tuple[str, str]]:
    return {
        E.INVALID_LOGIN: (
            "login",
            _("A login is 2 to 100 latin letters, digits or the signs . _ @ + -"),
        ),
        E.USER_EXISTS: ("login", _("This login is taken already.")),
        E.WEAK_PASSWORD: ("password", _("A password has at least 8 characters.")),
        E.INVALID_ROLE: ("role", _("Choose a role from the list.")),
        E.INVALID_LOCALE: ("locale", _("Choose a language from the list.")),
        E.INVALID_NAME: ("full_name", _("A name has at most 200 characters.")),
        E.ROLE_NOT_ASSIGNABLE: ("role", _("You may not give this role.")),
        E.OWNER_PROTECTED: ("", _("Only an owner may change an owner.")),
        E.CANNOT_CHANGE_SELF: ("", _("You cannot change your own role or deactivate yourself.")),
        E.LAST_OWNER: (
            "",
            _("This is the last active owner. Make someone else an owner first."),
        ),
    }


@router.get("/settings/users")
def users_list(page: UsersPage, q: str = "", role: str = "", status: str = "") -> Response:
    paging = paging_of(page.request)
    role = role if role in ROLE_LABELS else ""
    active = {"active": True, "inactive": False}.get(status)
    with read_only(page.engine) as conn:
        found = list_users(
            conn,
            tenant_id=page.tenant.id,
            search=q[:100],
            role=role or None,
            active=active,
            offset=paging.offset,
            limit=paging.limit,
        )
    filters = [
        ("role", _("Role"), [(key, str(label)) for key, label in ROLE_LABELS.items()], role),
        (
            "status",
            _("Status"),
            [("active", _("Active")), ("inactive", _("Inactive"))],
            status if active is not None else "",
        ),
    ]
    return _show(
        page,
        "users.html",
        "users",
        users=found.items,
        paging=paging.with_total(found.total),
        q=q,
        filters=filters,
        role_labels=ROLE_LABELS,
        filtered=bool(q or role or active is not None),
    )


def _new_user_page(page: Page, form: NewUserForm, status_code: int = 200) -> Response:
    return _show(page, "user_new.html", "users", status_code=status_code, form=form)


@router.get("/settings/users/new")
def user_new(page: UsersPage) -> Response:
    form = NewUserForm(data={"role": CASHIER})
    form.role.choices = _role_choices(page)
    return _new_user_page(page, form)


@router.post("/settings/users/new")
def user_create(page: UsersPage, posted: Posted) -> Response:
    form = NewUserForm(posted)
    form.role.choices = _role_choices(page)
    if form.validate():

        def work(conn: Connection) -> User:
            user = create_user(
                conn,
                tenant_id=page.tenant.id,
                login=form.login.data or "",
                password=form.password.data or "",
                role=form.role.data or "",
                full_name=form.full_name.data or "",
                locale=form.locale.data or None,
                actor=page.actor,
            )
            page.flash_next(
                conn, "success", _("User %(login)s is created and may sign in.", login=user.login)
            )
            return user

        if _save(page, form, work, _user_errors):
            return redirect("/settings/users", page.request)
    return _new_user_page(page, form, 422)


def _target(page: Page, user_id: int) -> User:
    with read_only(page.engine) as conn:
        try:
            return get_user(conn, page.tenant.id, user_id)
        except NotFound as error:
            raise HTTPException(404) from error


def _user_page(
    page: Page,
    target: User,
    *,
    form: EditUserForm | None = None,
    password_form: PasswordForm | None = None,
    status_code: int = 200,
) -> Response:
    if form is None:
        form = EditUserForm(
            data={"full_name": target.full_name, "role": target.role, "is_active": target.is_active}
        )
        form.role.choices = _role_choices(page)
    return _show(
        page,
        "user_edit.html",
        "users",
        status_code=status_code,
        target=target,
        form=form,
        password_form=password_form or PasswordForm(),
        editable=target.role in roles_assignable_by(page.user.role),
        is_self=target.id == page.user.id,
        role_labels=ROLE_LABELS,
    )


@router.get("/settings/users/{user_id}")
def user_edit(page: UsersPage, user_id: int) -> Response:
    return _user_page(page, _target(page, user_id))


@router.post("/settings/users/{user_id}")
def user_update(page: UsersPage, user_id: int, posted: Posted) -> Response:
    target = _target(page, user_id)
    form = EditUserForm(posted)
    form.role.choices = _role_choices(page)
    if target.role not in roles_assignable_by(page.user.role):
        # An administrator looking at an owner: the role list cannot hold the owner's role;
        # the domain refuses below with a clear message.
        form.role.choices = [
            *_role_choices(page),
            SelectChoice(target.role, ROLE_LABELS[target.role]),
        ]
    if form.validate():

        def work(conn: Connection) -> User:
            user = update_user(
                conn,
                tenant_id=page.tenant.id,
                user_id=user_id,
                full_name=form.full_name.data or "",
                role=form.role.data or target.role,
                is_active=bool(form.is_active.data),
                actor=page.actor,
            )
            page.flash_next(conn, "success", _("User %(login)s is saved.", login=user.login))
            return user

        if _save(page, form, work, _user_errors):
            return redirect("/settings/users", page.request)
    return _user_page(page, target, form=form, status_code=422)


@router.post("/settings/users/{user_id}/password")
def user_password(page: UsersPage, user_id: int, posted: Posted) -> Response:
    target = _target(page, user_id)
    form = PasswordForm(posted)
    if form.validate():

        def work(conn: Connection) -> bool:
            set_password(
                conn,
                tenant_id=page.tenant.id,
                user_id=user_id,
                password=form.password.data or "",
                actor=page.actor,
            )
            page.flash_next(
                conn,
                "success",
                _(
                    "The password of %(login)s is changed; they are signed out everywhere.",
                    login=target.login,
                ),
            )
            return True

        if _save(page, form, work, _user_errors):
            return redirect(f"/settings/users/{user_id}", page.request)
    return _user_page(page, target, password_form=form, status_code=422)


# --------------------------------------------------------------------------- terminals


class TerminalForm(WebForm):
    name = StringField(lazy("Name"), validators=[DataRequired(), Length(max=200)])
    branch_id = SelectField(lazy("Branch"))


def _terminal_form(page: Page, data: FormData | None = None) -> TerminalForm:
    form = TerminalForm(data)
    form.branch_id.choices = [
        SelectChoice("", _("Any branch")),
        *(SelectChoice(str(b.id), b.name) for b in page.branches),
    ]
    return form


def _terminals_page(page: Page, form: TerminalForm, status_code: int = 200) -> Response:
    with read_only(page.engine) as conn:
        rows = list_terminals(conn, page.tenant.id)
    return _show(
        page,
        "terminals.html",
        "terminals",
        status_code=status_code,
        terminals=rows,
        branch_names={b.id: b.name for b in page.branches},
        form=form,
    )


@router.get("/settings/terminals")
def terminals_list(page: TerminalsPage) -> Response:
    return _terminals_page(page, _terminal_form(page))


@router.post("/settings/terminals")
def terminal_create(page: TerminalsPage, posted: Posted) -> Response:
    form = _terminal_form(page, posted)
    if form.validate():
        branch = form.branch_id.data or ""

        def work(conn: Connection) -> tuple[Any, str]:
            return create_terminal(
                conn,
                tenant_id=page.tenant.id,
                name=form.name.data or "",
                branch_id=int(branch) if branch else None,
                actor=page.actor,
            )

        created = _save(
            page,
            form,
            work,
            lambda: {
                **_name_errors(),
                E.TERMINAL_EXISTS: ("name", _("A terminal with this name exists already.")),
                E.BRANCH_NOT_FOUND: ("branch_id", _("Choose a branch from the list.")),
            },
        )
        if created is not None:
            terminal, key = created
            # Shown here, once: the key is kept only as a digest and never shown again.
            page.flash.append(
                {"kind": "success", "text": _("Terminal “%(name)s” is added.", name=terminal.name)}
            )
            return _show(
                page,
                "terminal_created.html",
                "terminals",
                terminal=terminal,
                key=key,
                branch_names={b.id: b.name for b in page.branches},
            )
    return _terminals_page(page, form, 422)


def _terminal_of(page: Page, terminal_id: int) -> Any:
    with read_only(page.engine) as conn:
        try:
            return get_terminal(conn, page.tenant.id, terminal_id)
        except NotFound as error:
            raise HTTPException(404) from error


@router.get("/settings/terminals/{terminal_id}/revoke")
def terminal_revoke_confirm(page: TerminalsPage, terminal_id: int) -> Response:
    terminal = _terminal_of(page, terminal_id)
    return _show(page, "terminal_revoke.html", "terminals", terminal=terminal)


@router.post("/settings/terminals/{terminal_id}/revoke")
def terminal_revoke(page: TerminalsPage, terminal_id: int) -> Response:
    terminal = _terminal_of(page, terminal_id)

    def work(conn: Connection) -> None:
        revoke_terminal(conn, tenant_id=page.tenant.id, terminal_id=terminal_id, actor=page.actor)
        page.flash_next(
            conn,
            "success",
            _("Terminal “%(name)s” is revoked; its key no longer works.", name=terminal.name),
        )

    run_transaction(page.engine, work)
    return redirect("/settings/terminals", page.request)


# --------------------------------------------------------------------------- units


class CurrencyForm(WebForm):
    code = StringField(
        lazy("Currency code"),
        validators=[DataRequired(), Length(max=3)],
        render_kw={"maxlength": 3, "autocapitalize": "characters", "spellcheck": "false"},
    )


class PointsForm(WebForm):
    code = StringField(
        lazy("Code"),
        validators=[DataRequired(), Length(max=16)],
        render_kw={"maxlength": 16, "autocapitalize": "characters", "spellcheck": "false"},
    )
    name = StringField(lazy("Name"), validators=[Length(max=200)])
    decimals = IntegerField(
        lazy("Decimal places"),
        default=0,
        validators=[InputRequired(), NumberRange(min=0, max=6)],
        render_kw={"min": 0, "max": 6},
    )


def _unit_errors() -> dict[str, tuple[str, str]]:
    return {
        MoneyErrorCode.UNKNOWN_CURRENCY: (
            "code",
            _("Not an ISO 4217 currency code (such as RUB, KZT, USD)."),
        ),
        LedgerErrorCode.INVALID_UNIT: (
            "code",
            _(
                "A code is 2 to 16 latin capitals, digits or _, starting with a letter, "
                "and not a currency's code."
            ),
        ),
        LedgerErrorCode.UNIT_EXISTS: ("code", _("This unit exists already.")),
    }


def _units_page(
    page: Page,
    currency: CurrencyForm | None = None,
    points: PointsForm | None = None,
    status_code: int = 200,
) -> Response:
    with read_only(page.engine) as conn:
        rows = list_units(conn, page.tenant.id)
    return _show(
        page,
        "units.html",
        "units",
        status_code=status_code,
        units=rows,
        currency_form=currency or CurrencyForm(prefix="currency"),
        points_form=points or PointsForm(prefix="points"),
    )


@router.get("/settings/units")
def units_list(page: UnitsPage) -> Response:
    return _units_page(page)


@router.post("/settings/units/currency")
def unit_currency_create(page: UnitsPage, posted: Posted) -> Response:
    form = CurrencyForm(posted, prefix="currency")
    if form.validate():

        def work(conn: Connection) -> bool:
            unit = create_unit(
                conn,
                tenant_id=page.tenant.id,
                code=form.code.data or "",
                kind=UnitKind.CURRENCY,
                actor=page.actor,
            )
            page.flash_next(conn, "success", _("Currency %(code)s is enabled.", code=unit.code))
            return True

        if _save(page, form, work, _unit_errors):
            return redirect("/settings/units", page.request)
    return _units_page(page, currency=form, status_code=422)


@router.post("/settings/units/points")
def unit_points_create(page: UnitsPage, posted: Posted) -> Response:
    form = PointsForm(posted, prefix="points")
    if form.validate():

        def work(conn: Connection) -> bool:
            unit = create_unit(
                conn,
                tenant_id=page.tenant.id,
                code=form.code.data or "",
                kind=UnitKind.POINTS,
                name=(form.name.data or "").strip(),
                exponent=form.decimals.data,
                actor=page.actor,
            )
            page.flash_next(conn, "success", _("Point unit %(code)s is added.", code=unit.code))
            return True

        if _save(page, form, work, _unit_errors):
            return redirect("/settings/units", page.request)
    return _units_page(page, points=form, status_code=422)
