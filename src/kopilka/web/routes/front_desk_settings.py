"""The Settings tab "Hotel" (SPEC H-1): owners and administrators add the hotel's
properties and their rooms, which the front desk then books and checks guests into.

Every write is one transaction through ``kopilka.hotel.stays``; a refusal (a name or
number taken, a number out of its rules) lands next to its field and writes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy import Connection
from wtforms import SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length

from kopilka.core.db import read_only
from kopilka.hotel import stays
from kopilka.hotel.error_codes import HotelErrorCode as E
from kopilka.web.deps import Page, redirect, render, require
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.front_desk import Posted, object_id, save
from kopilka.web.routes.settings import TABS

router = APIRouter(include_in_schema=False)

# Who sets the hotel up: the same people as its payment types (owners, administrators).
HotelSettingsPage = Annotated[Page, Depends(require("settings.payment_types"))]
HOME = "/settings/hotel"
TAB = "hotel"


class PropertyForm(WebForm):
    name = StringField(
        lazy("Name"),
        validators=[DataRequired(), Length(max=stays.MAX_NAME)],
        render_kw={"maxlength": stays.MAX_NAME},
    )


class RoomForm(WebForm):
    property_id = SelectField(lazy("Property"), validate_choice=False)
    number = StringField(
        lazy("Room number"),
        validators=[DataRequired(), Length(max=stays.MAX_ROOM)],
        render_kw={"maxlength": stays.MAX_ROOM, "autocomplete": "off", "spellcheck": "false"},
    )
    description = StringField(lazy("Description"), validators=[Length(max=stays.MAX_NAME)])


def _room_form(properties: list[stays.PropertyView], data: Any = None) -> RoomForm:
    form = RoomForm(data, prefix="room")
    form.property_id.choices = [SelectChoice(str(p.id), p.name) for p in properties]
    return form


def _home(
    page: Page,
    *,
    property_form: PropertyForm | None = None,
    room_form: RoomForm | None = None,
    status_code: int = 200,
) -> Response:
    with read_only(page.engine) as conn:
        properties = stays.list_properties(conn, page.tenant.id)
        rooms = stays.list_rooms(conn, page.tenant.id)
    by_property: dict[int, list[stays.RoomView]] = {p.id: [] for p in properties}
    for room in rooms:
        by_property[room.property_id].append(room)
    tabs = [(key, label, href) for key, permission, href, label in TABS if page.can(permission)]
    return render(
        page,
        "front_desk/hotel_settings.html",
        status_code=status_code,
        active_section="settings",
        tabs=tabs,
        tab=TAB,
        properties=properties,
        rooms=by_property,
        property_form=property_form or PropertyForm(prefix="property"),
        room_form=room_form or _room_form(properties),
    )


@router.get(HOME)
def hotel_settings(page: HotelSettingsPage) -> Response:
    return _home(page)


@router.post(HOME + "/properties")
def property_create(page: HotelSettingsPage, posted: Posted) -> Response:
    form = PropertyForm(posted, prefix="property")
    if form.validate():

        def work(conn: Connection) -> stays.PropertyView:
            made = stays.create_property(
                conn, tenant_id=page.tenant.id, name=form.name.data or "", actor=page.actor
            )
            page.flash_next(conn, "success", _("Property “%(name)s” is added.", name=made.name))
            return made

        fields: dict[str, str] = {E.PROPERTY_EXISTS: "name", E.INVALID_HOTEL_INPUT: "name"}
        if save(page, form, work, fields) is not None:
            return redirect(HOME, page.request)
    return _home(page, property_form=form, status_code=422)


@router.post(HOME + "/rooms")
def room_create(page: HotelSettingsPage, posted: Posted) -> Response:
    with read_only(page.engine) as conn:
        properties = stays.list_properties(conn, page.tenant.id)
    form = _room_form(properties, posted)
    valid = form.validate()
    property_id = object_id(form.property_id.data)
    if property_id is None:
        form.add_error("property_id", _("Choose a property from the list."))
    if valid and property_id is not None:

        def work(conn: Connection) -> stays.RoomView:
            made = stays.create_room(
                conn,
                tenant_id=page.tenant.id,
                property_id=property_id,
                number=form.number.data or "",
                description=form.description.data or "",
                actor=page.actor,
            )
            page.flash_next(
                conn,
                "success",
                _(
                    "Room %(room)s is added to “%(name)s”.",
                    room=made.number,
                    name=made.property_name,
                ),
            )
            return made

        fields: dict[str, str] = {
            E.ROOM_EXISTS: "number",
            E.INVALID_HOTEL_INPUT: "number",
            E.PROPERTY_NOT_FOUND: "property_id",
        }
        if save(page, form, work, fields) is not None:
            return redirect(HOME, page.request)
    return _home(page, room_form=form, status_code=422)
