"""The Settings tab "Memberships" (SPEC M-1, M-2, M-5, M-8; seed 004): owners and
administrators set up the online sale and what is sold.

* **Online sale**: the module switched on or off (M-8), the commission % the client pays
  on top of the price (M-5), the payment provider (the built-in sandbox, YooKassa with its
  shop id and secret key, Stripe with its secret key and webhook signing secret) and the
  address to give the provider for its notifications. A stored secret is never shown back
  whole (its last four characters at most); a field left empty keeps it.
* **The buttons' design**: the nine parameters of M-2, a preview that follows the fields
  as they change (``/static/memberships.js``: the pages' policy allows no inline style,
  so the script sets the preview's style property by property), and for each type sold
  online the HTML to put on the studio's own site, with a "Copy" button.
* **Membership types** (seed 004 "Настройка абонементов для продажи онлайн"): name,
  permanent or not, price, classes (empty: unlimited), days of validity, "Allow online
  sale" (permanent types only) and the button's text, locked until the sale is allowed.
* **Groups and classes**: what a membership admits to and the classes that may be booked.

Every write is one transaction through ``kopilka.memberships.catalogue``; a refusal lands
next to its field in the user's language, what was typed kept, and writes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from markupsafe import escape
from sqlalchemy import Connection
from starlette.exceptions import HTTPException
from wtforms import BooleanField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length

from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput, KopilkaError
from kopilka.core.money import currency_exponent
from kopilka.ledger.posting import run_transaction
from kopilka.memberships import catalogue
from kopilka.memberships.catalogue import ButtonDesign, OnlineSettings
from kopilka.memberships.error_codes import MembershipErrorCode as E
from kopilka.memberships.providers import registry
from kopilka.web import i18n
from kopilka.web.deps import Page, redirect, render, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.front_desk import Posted, read_money, today, typed
from kopilka.web.routes.memberships import (
    COLOUR_FIELDS,
    DESIGN_LIMITS,
    PROVIDER_NAMES,
    colour_message,
    currency_ns,
    public_base,
    refuse,
    save,
)
from kopilka.web.routes.settings import TABS
from kopilka.web.routes.subscribers import commission_message, read_count

router = APIRouter(include_in_schema=False)

SettingsPage = Annotated[Page, Depends(require("settings.memberships"))]
HOME = "/settings/memberships"
TAB = "memberships"
SUB_TABS = (
    ("online", HOME, lazy("Online sale")),
    ("types", HOME + "/types", lazy("Membership types")),
    ("groups", HOME + "/groups", lazy("Groups and classes")),
)
# The settings typed on the form (keys of ``provider_config``): (key, form field, secret).
PROVIDER_FIELDS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "sandbox": (),
    "yookassa": (("shop_id", "yk_shop_id", False), ("secret_key", "yk_secret_key", True)),
    "stripe": (
        ("secret_key", "stripe_secret_key", True),
        ("webhook_secret", "stripe_webhook_secret", True),
    ),
}
SECRET_SHOWN = 4  # the last characters of a stored secret shown, so one can tell which


def _show(
    page: Page, template: str, sub: str, *, status_code: int = 200, **context: Any
) -> Response:
    tabs = [(key, label, href) for key, permission, href, label in TABS if page.can(permission)]
    return render(
        page,
        f"memberships/{template}",
        status_code=status_code,
        active_section="settings",
        tabs=tabs,
        tab=TAB,
        sub_tabs=SUB_TABS,
        sub=sub,
        provider_names=PROVIDER_NAMES,
        currency=currency_ns(page.tenant.currency),
        percent=lambda bp: i18n.format_number(bp, 2) + "\u00a0%",
        **context,
    )


def snippet(base: str, slug: str, type_id: int, design: ButtonDesign, text: str) -> str:
    """The HTML of a type's buy button for the studio's own site (seed 004, M-2). The
    design's values are checked (colours, whole pixels); the text is escaped."""
    href = escape(f"{base}/buy/{slug}/{type_id}")
    return f'<a href="{href}" style="{escape(design.css())}">{escape(text)}</a>'


def notify_url(base: str, slug: str, provider: str) -> str:
    return f"{base}/pay/{slug}/notify/{provider}"


def masked(secret: str) -> str:
    """A stored secret as a screen may show it: its last characters, if it is long."""
    if len(secret) >= 3 * SECRET_SHOWN:
        return "••••" + secret[-SECRET_SHOWN:]
    return "••••"


# --------------------------------------------------------------------------- online sale


class OnlineForm(WebForm):
    online_enabled = BooleanField(lazy("Sell memberships online"))
    commission = StringField(
        lazy("Commission of the payment service, paid by the client, %"),
        default="0",
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )
    provider = SelectField(lazy("Payment provider"), validate_choice=False)
    yk_shop_id = StringField(
        lazy("Shop ID"), validators=[Length(max=500)], render_kw={"autocomplete": "off"}
    )
    yk_secret_key = PasswordField(
        lazy("Secret key"), validators=[Length(max=500)], render_kw={"autocomplete": "off"}
    )
    stripe_secret_key = PasswordField(
        lazy("Secret key"), validators=[Length(max=500)], render_kw={"autocomplete": "off"}
    )
    stripe_webhook_secret = PasswordField(
        lazy("Webhook signing secret"),
        validators=[Length(max=500)],
        render_kw={"autocomplete": "off"},
    )


def _design_field(label: Any, name: str) -> StringField:
    low, high = DESIGN_LIMITS[name]
    return StringField(
        label,
        render_kw={"type": "number", "min": low, "max": high, "step": 1, "inputmode": "numeric"},
    )


class DesignForm(WebForm):
    text_color = StringField(lazy("Text colour"), render_kw={"type": "color"})
    text_size = _design_field(lazy("Text size (pixels)"), "text_size")
    bold = BooleanField(lazy("Bold text"))
    bg_color = StringField(lazy("Background colour"), render_kw={"type": "color"})
    border_color = StringField(lazy("Border colour"), render_kw={"type": "color"})
    border_width = _design_field(lazy("Border width (pixels)"), "border_width")
    radius = _design_field(lazy("Corner radius (pixels)"), "radius")
    width = _design_field(lazy("Button width (pixels)"), "width")
    height = _design_field(lazy("Button height (pixels)"), "height")


def _provider_choices() -> list[SelectChoice]:
    return [SelectChoice(key, str(label)) for key, label in PROVIDER_NAMES.items()]


def _online_form(settings: OnlineSettings, data: Any = None) -> OnlineForm:
    if data is not None:
        form = OnlineForm(data)
    else:
        config = settings.provider_config if settings.provider == "yookassa" else {}
        form = OnlineForm(
            online_enabled=settings.online_enabled,
            commission=typed(settings.commission_bp, 2) if settings.commission_bp else "0",
            provider=settings.provider,
            yk_shop_id=str(config.get("shop_id", "")),
        )
    form.provider.choices = _provider_choices()
    return form


def _design_form(design: ButtonDesign, data: Any = None) -> DesignForm:
    if data is not None:
        return DesignForm(data)
    values = dataclasses.asdict(design)
    return DesignForm(**{k: v if isinstance(v, bool | str) else str(v) for k, v in values.items()})


def _stored_secrets(settings: OnlineSettings) -> dict[str, str]:
    """What each secret field has stored, as it may be shown (``masked``)."""
    shown: dict[str, str] = {}
    for key, field_name, secret in PROVIDER_FIELDS.get(settings.provider, ()):
        value = str(settings.provider_config.get(key, ""))
        if secret and value:
            shown[field_name] = masked(value)
    return shown


def _online_page(
    page: Page,
    *,
    online: OnlineForm | None = None,
    design: DesignForm | None = None,
    status_code: int = 200,
) -> Response:
    with read_only(page.engine) as conn:
        settings = catalogue.get_settings(conn, page.tenant.id)
        sold_online = catalogue.list_types(conn, page.tenant.id, online_only=True)
    base = public_base(page)
    slug = page.tenant.slug
    return _show(
        page,
        "online.html",
        "online",
        status_code=status_code,
        settings=settings,
        online=online or _online_form(settings),
        design=design or _design_form(settings.button),
        stored=_stored_secrets(settings),
        notify={p: notify_url(base, slug, p) for p in PROVIDER_FIELDS},
        https=base.startswith("https://"),
        snippets=[
            (t, snippet(base, slug, t.id, settings.button, t.button_text)) for t in sold_online
        ],
        preview_text=sold_online[0].button_text if sold_online else _("Buy a membership"),
    )


@router.get(HOME)
def online_settings(page: SettingsPage) -> Response:
    return _online_page(page)


def _commission(form: OnlineForm) -> int | None:
    """The commission typed as ``3`` or ``2,5`` (``%`` allowed) in hundredths of a %."""
    text = str(form.commission.data or "").strip().rstrip("%").strip()
    text = text.replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        return catalogue.commission_bp_of(text or "0")
    except InvalidInput:
        form.add_error("commission", commission_message())
        return None


def _provider_config(form: OnlineForm, current: OnlineSettings, provider: str) -> dict[str, str]:
    """The provider's settings as typed; a secret left empty keeps the stored one (of the
    same provider: another provider's secret is never carried over). The sandbox gets a
    secret of its own for its notifications. Checked by the provider's rules when the
    sale is switched on (a setting refused is said by its field)."""
    if provider == current.provider:
        config = {k: str(v) for k, v in current.provider_config.items()}
    else:
        config = registry.default_config(provider)
    if provider == "sandbox" and not config.get("secret"):
        config.update(registry.default_config(provider))
    for key, field_name, secret in PROVIDER_FIELDS[provider]:
        value = str(getattr(form, field_name).data or "").strip()
        if value:
            config[key] = value
        elif not secret:
            config.pop(key, None)
    if not form.online_enabled.data:
        return {k: v for k, v in config.items() if v.strip()}
    missing = [(k, name) for k, name, _secret in PROVIDER_FIELDS[provider] if not config.get(k)]
    for key, field_name in missing:
        form.add_error(field_name, _provider_message(provider, key))
    if missing:
        return config
    try:
        return registry.check_config(provider, config)
    except InvalidInput as error:
        wrong = str(error.params.get("field", ""))
        on_form = {key: name for key, name, _secret in PROVIDER_FIELDS[provider]}
        form.add_error(on_form.get(wrong, "provider"), _provider_message(provider, wrong))
        return config


def _provider_message(provider: str, wrong: str) -> str:
    """What is wrong with a provider's setting, in the words of its account's pages."""
    if provider == "yookassa" and wrong == "shop_id":
        return _("Enter the shop ID from the YooKassa account: digits, such as 123456.")
    if provider == "stripe" and wrong == "secret_key":
        return _("Enter the secret key from the Stripe account: it starts with sk_.")
    if provider == "stripe" and wrong == "webhook_secret":
        return _("Enter the webhook signing secret from the Stripe account: it starts with whsec_.")
    if wrong == "secret_key":
        return _("Enter the secret key from the provider's account.")
    return _("Check the payment provider's settings.")


ONLINE_FIELDS: dict[str, str] = {
    E.INVALID_COMMISSION: "commission",
    "provider": "provider",
    "provider_config": "provider",
}


@router.post(HOME + "/online")
def online_save(page: SettingsPage, posted: Posted) -> Response:
    with read_only(page.engine) as conn:
        current = catalogue.get_settings(conn, page.tenant.id)
    form = _online_form(current, posted)
    form.validate()
    commission = _commission(form)
    provider = str(form.provider.data or "")
    if provider not in PROVIDER_FIELDS:
        form.add_error("provider", _("Choose a payment provider from the list."))
    config = _provider_config(form, current, provider) if provider in PROVIDER_FIELDS else {}
    if not form.has_errors and commission is not None:

        def work(conn: Connection) -> OnlineSettings:
            now = catalogue.get_settings(conn, page.tenant.id)
            done = catalogue.update_settings(
                conn,
                tenant_id=page.tenant.id,
                settings=dataclasses.replace(
                    now,
                    online_enabled=bool(form.online_enabled.data),
                    commission_bp=commission,
                    provider=provider,
                    provider_config=config,
                ),
                actor=page.actor,
            )
            page.flash_next(
                conn,
                "success",
                _("The online sale is switched on and saved.")
                if done.online_enabled
                else _("The online sale is saved; it is switched off."),
            )
            return done

        if save(page, form, work, ONLINE_FIELDS) is not None:
            return redirect(HOME, page.request)
    return _online_page(page, online=form, status_code=422)


def _design_of(form: DesignForm) -> ButtonDesign | None:
    """The nine parameters as typed, or ``None`` with the errors by their fields."""
    values: dict[str, Any] = {"bold": bool(form.bold.data)}
    for name in COLOUR_FIELDS:
        text = str(getattr(form, name).data or "").strip()
        if len(text) != 7 or not text.startswith("#") or not _hex(text[1:]):
            form.add_error(name, colour_message())
        values[name] = text
    for name, (low, high) in DESIGN_LIMITS.items():
        _ok, number = read_count(form, name, low, high)
        values[name] = number
    return None if form.has_errors else ButtonDesign(**values)


def _hex(text: str) -> bool:
    return all(ch in "0123456789abcdefABCDEF" for ch in text)


DESIGN_FIELDS: dict[str, str] = {name: name for name in (*COLOUR_FIELDS, *DESIGN_LIMITS)}


@router.post(HOME + "/design")
def design_save(page: SettingsPage, posted: Posted) -> Response:
    form = DesignForm(posted)
    design = _design_of(form)
    if design is not None:

        def work(conn: Connection) -> OnlineSettings:
            now = catalogue.get_settings(conn, page.tenant.id)
            done = catalogue.update_settings(
                conn,
                tenant_id=page.tenant.id,
                settings=dataclasses.replace(now, button=design),
                actor=page.actor,
            )
            page.flash_next(
                conn,
                "success",
                _("The buttons' design is saved; copy the buttons' HTML again for your site."),
            )
            return done

        if save(page, form, work, DESIGN_FIELDS) is not None:
            return redirect(HOME + "#design", page.request)
    return _online_page(page, design=form, status_code=422)


# --------------------------------------------------------------------------- types


class TypeForm(WebForm):
    name = StringField(
        lazy("Name"),
        validators=[DataRequired(), Length(max=catalogue.MAX_NAME)],
        render_kw={"maxlength": catalogue.MAX_NAME},
    )
    is_permanent = BooleanField(lazy("Permanent"), default=True)
    price = StringField(
        lazy("Price"), validators=[DataRequired()], render_kw={"inputmode": "decimal"}
    )
    classes = StringField(lazy("Classes"), render_kw={"inputmode": "numeric"})
    validity_days = StringField(
        lazy("Valid, days"), validators=[DataRequired()], render_kw={"inputmode": "numeric"}
    )
    sell_online = BooleanField(lazy("Allow online sale"), render_kw={"data-enables": "button_text"})
    button_text = StringField(
        lazy("Button text"), validators=[Length(max=100)], render_kw={"maxlength": 100}
    )
    is_active = BooleanField(lazy("On sale"), default=True)


TYPE_FIELDS: dict[str, str] = {
    E.MEMBERSHIP_TYPE_EXISTS: "name",
    "name": "name",
    "price": "price",
    "classes": "classes",
    "validity_days": "validity_days",
    "sell_online": "sell_online",
    "button_text": "button_text",
}


def _type_data(
    form: TypeForm, exponent: int, target: catalogue.TypeView | None
) -> catalogue.TypeIn | None:
    """The type as typed, or ``None`` with the errors by their fields."""
    valid = form.validate()
    price = read_money(form, "price", exponent) if form.price.data else None
    ok_classes, classes = read_count(form, "classes", 1, 10_000, optional=True)
    ok_days, days = (
        read_count(form, "validity_days", 1, 3660) if form.validity_days.data else (False, None)
    )
    sell_online = bool(form.sell_online.data)
    text = " ".join(str(form.button_text.data or "").split())
    if not sell_online and not text and target is not None:
        # The text field is locked while the sale is not allowed: the text is kept.
        text = target.button_text
    if sell_online and not form.is_permanent.data:
        form.add_error("sell_online", _("Only permanent membership types are sold online."))
    elif sell_online and not text:
        form.add_error(
            "button_text", _("A type sold online needs its button's text: 1 to 100 characters.")
        )
    if not (valid and ok_classes and ok_days) or form.has_errors or price is None:
        return None
    assert days is not None
    return catalogue.TypeIn(
        name=str(form.name.data or ""),
        price_minor=price,
        validity_days=days,
        classes=classes,
        is_permanent=bool(form.is_permanent.data),
        sell_online=sell_online,
        button_text=text,
        is_active=bool(form.is_active.data),
    )


def _type_page(
    page: Page, form: TypeForm, target: catalogue.TypeView | None = None, status_code: int = 200
) -> Response:
    if not form.sell_online.data:
        # Locked until the online sale is allowed, as in the seed (the script unlocks it
        # as the box is ticked; without scripts, the page sent back with it ticked does).
        form.button_text.render_kw = {**(form.button_text.render_kw or {}), "disabled": True}
    return _show(page, "type.html", "types", status_code=status_code, form=form, target=target)


def _type(page: Page, type_id: int) -> catalogue.TypeView:
    with read_only(page.engine) as conn:
        try:
            return catalogue.get_type(conn, page.tenant.id, type_id)
        except KopilkaError as error:
            raise HTTPException(404) from error


@router.get(HOME + "/types")
def types_list(page: SettingsPage) -> Response:
    with read_only(page.engine) as conn:
        found = catalogue.list_types(conn, page.tenant.id)
    return _show(page, "types.html", "types", types=found)


@router.get(HOME + "/types/new")
def type_new(page: SettingsPage) -> Response:
    return _type_page(page, TypeForm())


@router.post(HOME + "/types/new")
def type_create(page: SettingsPage, posted: Posted) -> Response:
    form = TypeForm(posted)
    data = _type_data(form, currency_exponent(page.tenant.currency), None)
    if data is not None:

        def work(conn: Connection) -> catalogue.TypeView:
            made = catalogue.create_type(
                conn, tenant_id=page.tenant.id, data=data, actor=page.actor
            )
            page.flash_next(
                conn, "success", _("Membership type “%(name)s” is added.", name=made.name)
            )
            return made

        if save(page, form, work, TYPE_FIELDS) is not None:
            return redirect(HOME + "/types", page.request)
    return _type_page(page, form, status_code=422)


@router.get(HOME + "/types/{type_id:int}")
def type_edit(page: SettingsPage, type_id: int) -> Response:
    target = _type(page, type_id)
    exponent = currency_exponent(page.tenant.currency)
    form = TypeForm(
        name=target.name,
        is_permanent=target.is_permanent,
        price=typed(target.price_minor, exponent),
        classes="" if target.classes is None else str(target.classes),
        validity_days=str(target.validity_days),
        sell_online=target.sell_online,
        button_text=target.button_text,
        is_active=target.is_active,
    )
    return _type_page(page, form, target)


@router.post(HOME + "/types/{type_id:int}")
def type_update(page: SettingsPage, type_id: int, posted: Posted) -> Response:
    target = _type(page, type_id)
    form = TypeForm(posted)
    data = _type_data(form, currency_exponent(page.tenant.currency), target)
    if data is not None:

        def work(conn: Connection) -> catalogue.TypeView:
            done = catalogue.update_type(
                conn, tenant_id=page.tenant.id, type_id=type_id, data=data, actor=page.actor
            )
            page.flash_next(
                conn, "success", _("Membership type “%(name)s” is saved.", name=done.name)
            )
            return done

        if save(page, form, work, TYPE_FIELDS) is not None:
            return redirect(HOME + "/types", page.request)
    return _type_page(page, form, target, 422)


# --------------------------------------------------------------------------- groups, classes


class GroupForm(WebForm):
    name = StringField(
        lazy("Name"),
        validators=[DataRequired(), Length(max=catalogue.MAX_NAME)],
        render_kw={"maxlength": catalogue.MAX_NAME, "autocomplete": "off"},
    )


class ClassForm(WebForm):
    starts_at = StringField(
        lazy("Starts"), validators=[DataRequired()], render_kw={"type": "datetime-local"}
    )
    minutes = StringField(
        lazy("Minutes"),
        default="60",
        validators=[DataRequired()],
        render_kw={"inputmode": "numeric"},
    )
    capacity = StringField(lazy("Places"), render_kw={"inputmode": "numeric"})


def _groups_page(page: Page, form: GroupForm | None = None, status_code: int = 200) -> Response:
    with read_only(page.engine) as conn:
        groups = catalogue.list_groups(conn, page.tenant.id)
        ahead = catalogue.list_classes(conn, page.tenant.id, since=_today_start())
    counts: dict[int, int] = {}
    for c in ahead:
        counts[c.group_id] = counts.get(c.group_id, 0) + 1
    return _show(
        page,
        "groups.html",
        "groups",
        status_code=status_code,
        groups=groups,
        counts=counts,
        form=form or GroupForm(),
    )


def _today_start() -> datetime:
    return datetime.combine(today(), datetime.min.time(), i18n.current_zone())


@router.get(HOME + "/groups")
def groups_list(page: SettingsPage) -> Response:
    return _groups_page(page)


@router.post(HOME + "/groups")
def group_create(page: SettingsPage, posted: Posted) -> Response:
    form = GroupForm(posted)
    if form.validate():

        def work(conn: Connection) -> catalogue.GroupView:
            made = catalogue.create_group(
                conn, tenant_id=page.tenant.id, name=str(form.name.data or ""), actor=page.actor
            )
            page.flash_next(conn, "success", _("Group “%(name)s” is added.", name=made.name))
            return made

        made = _save_group(page, form, work)
        if made is not None:
            return redirect(f"{HOME}/groups/{made.id}", page.request)
    return _groups_page(page, form, 422)


def _save_group(
    page: Page, form: GroupForm, work: Callable[[Connection], catalogue.GroupView]
) -> catalogue.GroupView | None:
    try:
        return run_transaction(page.engine, work)
    except KopilkaError as error:
        if error.code == E.GROUP_EXISTS:
            form.add_error("name", _("A group with this name exists already."))
        else:
            refuse(form, error, {"name": "name"}, page.tenant.currency)
        return None


def _group(page: Page, group_id: int) -> catalogue.GroupView:
    with read_only(page.engine) as conn:
        try:
            (group,) = catalogue.get_groups(conn, page.tenant.id, [group_id])
        except KopilkaError as error:
            raise HTTPException(404) from error
    return group


def _group_page(
    page: Page, group: catalogue.GroupView, form: ClassForm | None = None, status_code: int = 200
) -> Response:
    with read_only(page.engine) as conn:
        classes = catalogue.list_classes(
            conn, page.tenant.id, group_ids=[group.id], since=_today_start()
        )
    return _show(
        page,
        "group.html",
        "groups",
        status_code=status_code,
        group=group,
        classes=classes,
        form=form or ClassForm(),
    )


@router.get(HOME + "/groups/{group_id:int}")
def group_view(page: SettingsPage, group_id: int) -> Response:
    return _group_page(page, _group(page, group_id))


def _read_start(form: ClassForm) -> datetime | None:
    """The class's start as typed on the screen, in the company's time zone."""
    text = str(form.starts_at.data or "").strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        form.add_error("starts_at", _("Enter a date and a time, such as 2026-03-31 18:00."))
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=i18n.current_zone())
    return moment


@router.post(HOME + "/groups/{group_id:int}/classes")
def class_create(page: SettingsPage, group_id: int, posted: Posted) -> Response:
    group = _group(page, group_id)
    form = ClassForm(posted)
    valid = form.validate()
    starts_at = _read_start(form) if form.starts_at.data else None
    ok_minutes, minutes = (
        read_count(form, "minutes", 1, 24 * 60) if form.minutes.data else (False, None)
    )
    ok_capacity, capacity = read_count(form, "capacity", 1, 10_000, optional=True)
    if valid and ok_minutes and ok_capacity and starts_at is not None and minutes is not None:

        def work(conn: Connection) -> catalogue.ClassView:
            made = catalogue.create_class(
                conn,
                tenant_id=page.tenant.id,
                group_id=group.id,
                starts_at=starts_at,
                minutes=minutes,
                capacity=capacity,
                actor=page.actor,
            )
            page.flash_next(
                conn,
                "success",
                _(
                    "A class of %(group)s on %(when)s is added.",
                    group=group.name,
                    when=i18n.format_datetime(made.starts_at, "short"),
                ),
            )
            return made

        fields = {"minutes": "minutes", "capacity": "capacity", E.GROUP_NOT_FOUND: "starts_at"}
        if save(page, form, work, fields) is not None:
            return redirect(f"{HOME}/groups/{group.id}", page.request)
    return _group_page(page, group, form, 422)
