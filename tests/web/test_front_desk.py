"""The front desk on screen (SPEC H-1; seeds 000, 001): finding a stay by room or name as
one types, a new stay with its guests made on the spot, checking in, out and cancelling,
a stay's guests and folios, the hotel's properties and rooms in Settings, and who may
come in. The folio's screen is ``test_front_desk_folio.py``, which shares what is here:
the hotel of ``tests.hotel.conftest`` built in the web test's own tenant, and a form sent
the way a browser sends it (every field as the page shows it, hidden operation id
included, with what the person changed)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.fiscal.registers import create_register
from kopilka.hotel import folios, stays
from kopilka.tenancy.actions import Tenant, create_tenant, create_user
from tests.hotel.conftest import Resort, lines, op
from tests.hotel.conftest import resort as resort  # the fixture, in this tenant
from tests.web.conftest import PASSWORD, Visitor, Web, text_of

ACTOR = Actor.cli("tests")
NBSP = "\u00a0"
HOME = "/front-desk"


@pytest.fixture
def tenant(web: Web) -> Tenant:
    """The hotel (``resort``) is built in the tenant whose staff sign in."""
    return web.tenant


class _FormReader(HTMLParser):
    """The fields of one ``<form data-testid=...>`` with the values a browser sends."""

    def __init__(self, testid: str) -> None:
        super().__init__(convert_charrefs=True)
        self.testid = testid
        self.inside = False
        self.found = False
        self.action = ""
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._select_first: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("data-testid") == self.testid:
            self.inside, self.found, self.action = True, True, a.get("action", "")
            return
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.values[name] = a.get("value", "y")
            elif kind not in ("submit", "button"):
                self.values[name] = a.get("value", "")
        elif tag == "select" and name:
            self._select, self._select_first = name, None
        elif tag == "option" and self._select is not None:
            if self._select_first is None:
                self._select_first = a.get("value", "")
                self.values.setdefault(self._select, self._select_first)
            if "selected" in a:
                self.values[self._select] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.inside:
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.values[self._textarea] += data


def form_of(html: str, testid: str) -> tuple[str, dict[str, str]]:
    """The action and the fields of the form ``testid`` as the page shows them."""
    reader = _FormReader(testid)
    reader.feed(html)
    assert reader.found, f"no form {testid} on the page"
    return reader.action, reader.values


def submit(visitor: Visitor, html: str, testid: str, **changes: str | None) -> httpx.Response:
    """Send the form ``testid`` of ``html`` as shown, with ``changes`` (field name with
    ``-`` written ``__``; ``None`` leaves a field out, as an unticked box)."""
    action, values = form_of(html, testid)
    for key, value in changes.items():
        name = key.replace("__", "-")
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return visitor.post(action, values)


def field_error(html: str, name: str) -> str:
    match = re.search(rf'data-testid="error-{re.escape(name)}">(.*?)</p>', html, re.S)
    assert match, f"no error shown by the field {name}"
    return re.sub(r"\s+", " ", match.group(1)).strip()


def form_error(html: str) -> str:
    match = re.search(r'data-testid="form-error">(.*?)</div>', html, re.S)
    assert match, "no error on top of the form"
    return re.sub(r"\s+", " ", match.group(1)).strip()


def block(html: str, testid: str) -> str:
    """The element marked ``testid`` with all it holds (tables inside tables too)."""
    start = re.search(rf'<(\w+)[^>]*data-testid="{re.escape(testid)}"', html)
    assert start, f"nothing marked {testid}"
    tag, depth, at = start.group(1), 0, start.start()
    for found in re.finditer(rf"<(/?){tag}\b[^>]*>", html[at:]):
        depth += -1 if found.group(1) else 1
        if depth == 0:
            return html[at : at + found.end()]
    raise AssertionError(f"{testid} is not closed")


def text_by_testid(html: str, testid: str) -> str:
    match = re.search(rf'data-testid="{re.escape(testid)}"[^>]*>(.*?)</', html, re.S)
    assert match, f"nothing marked {testid}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def charge(resort: Resort, *items: tuple[str, int], **kw: Any) -> folios.InvoiceView:
    """A charge made at the desk by the domain (what another screen or the API did)."""
    return resort.tx(
        lambda c: folios.charge(
            c,
            tenant_id=resort.t,
            folio_id=kw.pop("folio_id", resort.folio_id),
            kind=kw.pop("kind", "accommodation"),
            description=kw.pop("description", "Проживание"),
            lines=lines(*items),
            operation_id=op(),
            actor=resort.actor,
            **kw,
        )
    )


def register(
    resort: Resort,
    base_url: str,
    name: str = "Касса ресепшн",
    settings: dict[str, Any] | None = None,
) -> int:
    """A cash register of the ATOL Online kind at ``base_url`` (or with ``settings``)."""
    settings = settings or {
        "base_url": base_url,
        "login": "hotel-login",
        "password": "hotel-secret",
        "group_code": "hotel-group",
        "inn": "7707083893",
        "payment_address": "hotel.example.ru",
        "sno": "osn",
        "company_email": "cash@hotel.example.ru",
        "timeout_ms": 1000,
    }
    made = resort.tx(
        lambda c: create_register(
            c, tenant_id=resort.t, name=name, settings=settings, actor=resort.actor
        )
    )
    return made.id


def stay_in(
    resort: Resort, room_id: int, *, check_in: bool = False, name: str = "Олег Смирнов"
) -> stays.StayView:
    today = utcnow().date()

    def work(conn: Any) -> stays.StayView:
        guest = stays.create_guest(conn, tenant_id=resort.t, full_name=name, actor=resort.actor)
        return stays.create_stay(
            conn,
            tenant_id=resort.t,
            room_id=room_id,
            arrival=today + timedelta(days=1),
            departure=today + timedelta(days=4),
            guest_ids=[guest.id],
            check_in=check_in,
            actor=resort.actor,
        )

    return resort.tx(work)


def english(web: Web, role: str = "front_desk") -> Visitor:
    visitor = web.sign_in(role)
    visitor.post("/language", {"locale": "en", "next": "/"})
    return visitor


# --------------------------------------------------------------------------- the home screen


def test_the_desk_lists_the_stays_and_finds_one_by_room_or_name(web: Web, resort: Resort) -> None:
    booked = stay_in(resort, resort.room_12a)
    desk = web.sign_in("front_desk")
    home = desk.get(HOME)
    assert home.status_code == 200
    assert 'href="/front-desk" aria-current="page"' in home.text  # the sidebar's item
    rows = text_of(home.text)
    assert "Анна Петрова, Иван Петров" in rows and "Олег Смирнов" in rows
    assert "Заселён" in rows and "Забронирован" in rows
    assert f'data-testid="check-out-{resort.stay.id}"' in home.text
    assert f'data-testid="check-in-{booked.id}"' in home.text
    assert f'data-testid="cancel-{booked.id}"' in home.text

    by_room = desk.get(f"{HOME}?q=12a")
    assert 'data-room="12A"' in by_room.text and 'data-room="90"' not in by_room.text
    by_name = desk.get(HOME, params={"q": "петров"})
    assert 'data-room="90"' in by_name.text and 'data-room="12A"' not in by_name.text
    nobody = desk.get(HOME, params={"q": "Сидоров"})
    assert "Ни одно проживание не подходит под поиск." in text_of(nobody.text)

    # As one types, htmx asks for the table alone.
    live = desk.get(
        HOME, params={"q": "Олег"}, headers={"HX-Request": "true", "HX-Target": "stays"}
    )
    assert live.status_code == 200
    assert "<html" not in live.text and 'data-testid="stays-table"' in live.text
    assert 'data-room="12A"' in live.text and 'data-room="90"' not in live.text


def test_the_home_screen_speaks_english_and_shows_balances(web: Web, resort: Resort) -> None:
    charge(resort, ("Night", 3_500_00))
    desk = english(web)
    home = desk.get(HOME)
    rows = text_of(home.text)
    assert "Front desk" in rows and "New stay" in rows and "Checked in" in rows
    assert text_by_testid(home.text, f"stay-balance-{resort.stay.id}") == "-₽3,500.00"
    assert "Check out" in rows and "Folio" in rows


def test_stays_checked_out_and_cancelled_are_found_by_the_filter(web: Web, resort: Resort) -> None:
    booked = stay_in(resort, resort.room_12a)
    resort.tx(lambda c: stays.cancel_stay(c, tenant_id=resort.t, stay_id=booked.id, actor=ACTOR))
    desk = web.sign_in("front_desk")
    assert f'data-testid="stay-{booked.id}"' not in desk.get(HOME).text
    cancelled = desk.get(HOME, params={"status": "cancelled"})
    assert f'data-testid="stay-{booked.id}"' in cancelled.text
    assert f'data-testid="stay-{resort.stay.id}"' not in cancelled.text
    every = desk.get(HOME, params={"status": "all"})
    assert f'data-testid="stay-{booked.id}"' in every.text
    assert f'data-testid="stay-{resort.stay.id}"' in every.text


# --------------------------------------------------------------------------- a new stay


def test_a_new_stay_makes_its_guests_and_checks_them_in(web: Web, resort: Resort) -> None:
    desk = web.sign_in("front_desk")
    form = desk.get(f"{HOME}/stays/new")
    assert form.status_code == 200
    today = utcnow().date()
    made = submit(
        desk,
        form.text,
        "new-stay-form",
        room_id=str(resort.room_12a),
        arrival=today.isoformat(),
        departure=(today + timedelta(days=2)).isoformat(),
        guest_name="Мария  Иванова",
        guest_phone="+7 903 111-22-33",
        guest_email="maria@example.ru",
        other_guests="Пётр Иванов\n\n  Ольга Иванова ",
        check_in="y",
    )
    assert made.status_code == 303, text_of(made.text)[:500]
    page = desk.follow(made)
    assert "Мария Иванова заселена в номер 12A." in text_of(page.text) or "12A" in text_of(
        page.text
    )
    found = resort.read(lambda c: stays.find_stays(c, resort.t, text="12A"))
    assert len(found) == 1 and found[0].status == "checked_in"
    assert [g.full_name for g in found[0].guests] == [
        "Мария Иванова",
        "Пётр Иванов",
        "Ольга Иванова",
    ]
    assert found[0].main_guest is not None and found[0].main_guest.phone == "+79031112233"
    guests = text_of(page.text)
    assert "Пётр Иванов" in guests and "maria@example.ru" in guests


def test_a_new_stay_says_what_is_wrong_and_makes_nothing(web: Web, resort: Resort) -> None:
    desk = web.sign_in("front_desk")
    form = desk.get(f"{HOME}/stays/new").text
    today = utcnow().date().isoformat()
    backwards = submit(
        desk,
        form,
        "new-stay-form",
        room_id=str(resort.room_12a),
        arrival=today,
        departure=today,
        guest_name="Мария Иванова",
    )
    assert backwards.status_code == 422
    assert field_error(backwards.text, "departure") == "Выезд должен быть позже заезда."
    no_name = submit(desk, form, "new-stay-form", room_id=str(resort.room_12a), guest_name="")
    assert no_name.status_code == 422
    assert field_error(no_name.text, "guest_name")
    bad_phone = submit(
        desk,
        form,
        "new-stay-form",
        room_id=str(resort.room_12a),
        guest_name="Мария",
        guest_phone="позвонить",
    )
    assert bad_phone.status_code == 422
    assert "Введите номер телефона" in field_error(bad_phone.text, "guest_phone")
    # Room 90 is taken: checking a second stay into it is refused, and nothing is written.
    taken = submit(
        desk,
        form,
        "new-stay-form",
        room_id=str(resort.room_90),
        guest_name="Мария Иванова",
        check_in="y",
    )
    assert taken.status_code == 422
    assert field_error(taken.text, "room_id") == (
        "В этом номере уже живут; сначала выселите то проживание."
    )
    assert resort.read(lambda c: stays.find_stays(c, resort.t, text="Мария")) == []


# --------------------------------------------------------------------------- check in, out


def test_check_in_out_and_cancel_from_the_list_and_the_stay(web: Web, resort: Resort) -> None:
    booked = stay_in(resort, resort.room_12a)
    other = stay_in(resort, resort.room_12a, name="Гость Второй")
    charge(resort, ("Проживание", 7_000_00))
    desk = web.sign_in("front_desk")
    listing = desk.get(HOME).text
    assert f'data-testid="check-in-{booked.id}"' in listing
    reply = desk.post(f"{HOME}/stays/{booked.id}/check-in", {"next": HOME})
    assert reply.status_code == 303 and reply.headers["location"] == HOME
    assert "Номер 12A: гости заселены." in text_of(desk.follow(reply).text)
    # The room is taken now: the other booking cannot check in.
    refused = desk.follow(desk.post(f"{HOME}/stays/{other.id}/check-in", {"next": HOME}))
    assert "В этом номере уже живут; сначала выселите то проживание." in text_of(refused.text)
    # A booking that was never checked in cannot check out.
    wrong = desk.follow(desk.post(f"{HOME}/stays/{other.id}/check-out", {"next": HOME}))
    assert "Невозможно, пока проживание «Забронирован»." in text_of(wrong.text)
    cancelled = desk.follow(desk.post(f"{HOME}/stays/{other.id}/cancel", {"next": HOME}))
    assert "Номер 12A: бронь отменена." in text_of(cancelled.text)

    # Checking out a guest who still owes is allowed, and said.
    out = desk.follow(desk.post(f"{HOME}/stays/{resort.stay.id}/check-out", {}))
    assert "Номер 90: гости выехали, но ещё должны 7 000,00 ₽." in text_of(out.text)
    assert out.url.path == f"{HOME}/stays/{resort.stay.id}"
    assert (
        resort.read(lambda c: stays.get_stay(c, resort.t, resort.stay.id)).status == "checked_out"
    )


def test_a_stays_page_shows_its_guests_and_opens_a_guests_own_folio(
    web: Web, resort: Resort
) -> None:
    desk = web.sign_in("front_desk")
    page = desk.get(f"{HOME}/stays/{resort.stay.id}")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert "Номер 90" in shown and "Анна Петрова" in shown and "Иван Петров" in shown
    assert "+79161234567" in shown and "anna@example.ru" in shown
    assert "Общий счёт проживания" in shown

    opened = desk.post(
        f"{HOME}/stays/{resort.stay.id}/folios", {"guest_id": str(resort.partner.id)}
    )
    assert opened.status_code == 303
    own = resort.read(lambda c: stays.get_stay(c, resort.t, resort.stay.id)).folios
    assert [f.guest_id for f in own] == [None, resort.partner.id]
    assert opened.headers["location"] == f"{HOME}/folios/{own[1].id}"
    again = desk.post(f"{HOME}/stays/{resort.stay.id}/folios", {"guest_id": str(resort.partner.id)})
    assert again.headers["location"] == opened.headers["location"]  # the same folio
    page = desk.get(f"{HOME}/stays/{resort.stay.id}")
    assert f'data-testid="open-guest-folio-{resort.partner.id}"' not in page.text
    assert f'data-testid="open-guest-folio-{resort.guest.id}"' in page.text

    added = desk.post(
        f"{HOME}/stays/{resort.stay.id}/guests", {"full_name": "Сын Петровых", "phone": ""}
    )
    assert "Гость Сын Петровых добавлен к проживанию." in text_of(desk.follow(added).text)
    bad = desk.post(f"{HOME}/stays/{resort.stay.id}/guests", {"full_name": "Х", "email": "нет"})
    assert bad.status_code == 422
    assert "Введите адрес эл. почты" in field_error(bad.text, "email")

    english_page = english(web).get(f"{HOME}/stays/{resort.stay.id}")
    assert "Room 90" in text_of(english_page.text) and "Open a folio for this guest" in text_of(
        english_page.text
    )


# --------------------------------------------------------------------------- who may


def test_only_the_hotels_staff_come_in_and_only_to_their_own_tenant(
    web: Web, resort: Resort
) -> None:
    cashier = web.sign_in("cashier")
    assert cashier.get(HOME).status_code == 403
    assert cashier.get(f"{HOME}/stays/{resort.stay.id}").status_code == 403
    assert cashier.get(f"{HOME}/folios/{resort.folio_id}").status_code == 403
    refused = cashier.post(f"{HOME}/stays/{resort.stay.id}/check-out", {})
    assert refused.status_code == 403
    assert resort.read(lambda c: stays.get_stay(c, resort.t, resort.stay.id)).status == "checked_in"
    assert 'href="/front-desk"' not in cashier.get("/").text  # no sidebar item either
    for role in ("owner", "administrator", "front_desk"):
        visitor = web.sign_in(role)
        assert 'href="/front-desk"' in visitor.get("/").text
        assert visitor.get(HOME).status_code == 200

    # Another company's staff: its stays and folios do not exist for them.
    stranger = other_tenant(web)
    assert stranger.get(f"{HOME}/stays/{resort.stay.id}").status_code == 404
    assert stranger.get(f"{HOME}/folios/{resort.folio_id}").status_code == 404
    assert stranger.post(f"{HOME}/stays/{resort.stay.id}/check-out", {}).status_code == 404
    assert 'data-room="90"' not in stranger.get(HOME, params={"status": "all"}).text


def other_tenant(web: Web) -> Visitor:
    """The front desk of another company, on the same server."""
    with web.engine.begin() as conn:
        tenant = create_tenant(
            conn, slug=f"w-{uuid.uuid4().hex[:10]}", name="Другой отель", actor=ACTOR
        )
        user = create_user(
            conn,
            tenant_id=tenant.id,
            login="desk2",
            password=PASSWORD,
            role="front_desk",
            full_name="Desk Two",
            actor=ACTOR,
        )
    return Web(web.engine, tenant, {"front_desk": user}).sign_in("front_desk")


# --------------------------------------------------------------------------- settings


def test_an_owner_adds_the_hotels_properties_and_rooms(web: Web, resort: Resort) -> None:
    owner = web.sign_in("owner")
    page = owner.get("/settings/hotel")
    assert page.status_code == 200
    assert 'data-testid="tab-hotel" aria-current="page"' in page.text
    assert "Отель «Берег»" in text_of(page.text) and "12A" in text_of(page.text)
    made = submit(owner, page.text, "new-property-form", property__name="Корпус Б")
    assert "Объект «Корпус Б» добавлен." in text_of(owner.follow(made).text)
    twice = submit(owner, page.text, "new-property-form", property__name="Корпус Б")
    assert twice.status_code == 422
    assert field_error(twice.text, "property-name") == "Объект с таким названием уже есть."

    page = owner.get("/settings/hotel")
    building_b = next(
        p for p in resort.read(lambda c: stays.list_properties(c, resort.t)) if p.name == "Корпус Б"
    )
    room = submit(
        owner,
        page.text,
        "new-room-form",
        room__property_id=str(building_b.id),
        room__number="201",
        room__description="Люкс",
    )
    assert "Номер 201 добавлен в «Корпус Б»." in text_of(owner.follow(room).text)
    taken = submit(
        owner, page.text, "new-room-form", room__property_id=str(building_b.id), room__number="201"
    )
    assert taken.status_code == 422
    assert field_error(taken.text, "room-number") == "Такой номер в этом объекте уже есть."
    wrong = submit(owner, page.text, "new-room-form", room__number="№ 5!")
    assert wrong.status_code == 422
    assert field_error(wrong.text, "room-number") == "Проверьте введённые данные."
    assert [
        r.number
        for r in resort.read(lambda c: stays.list_rooms(c, resort.t, property_id=building_b.id))
    ] == ["201"]

    assert web.sign_in("front_desk").get("/settings/hotel").status_code == 403
    assert web.sign_in("administrator").get("/settings/hotel").status_code == 200
