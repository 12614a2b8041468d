"""Where a hotel's points live (SPEC H-5; seed 000: "Администрирование - разное -
стыковки «ППС КОНТУР»"): the own cards or an external centre, set by owners and
administrators in the API and on the Settings tab; the key is written, never shown."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from kopilka.core.errors import InvalidInput
from kopilka.hotel import loyalty_centre as lc
from kopilka.tenancy.actions import create_user, issue_staff_token
from kopilka.tenancy.schema import audit_events
from tests.web.conftest import Web, text_of

from .centre import free_port
from .conftest import Hotel, TestClient, app_for

KEY = "kpt_0123456789ab_Zm9vYmFyYmF6cXV4c2VjcmV0LWtleS1vZi10aGUtY2VudHJl"
HINT = "kpt_0123456789ab_…"
API = "/api/v1/loyalty-centre"
HOME = "/settings/loyalty-centre"


def set_centre(hotel: Hotel, **fields: Any) -> lc.CentreView:
    request: dict[str, Any] = {
        "tenant_id": hotel.t,
        "base_url": "https://kontur.example",
        "api_key": KEY,
        "actor": hotel.actor,
        **fields,
    }
    return hotel.tx(lambda c: lc.set_centre(c, **request))


def test_an_owner_connects_the_kontur_centre_and_goes_back_to_own_cards(hotel: Hotel) -> None:
    assert hotel.read(lambda c: lc.centre_view(c, hotel.t)) is None
    view = set_centre(hotel, base_url="  HTTPS://kontur.example:8443/kopilka/ ", timeout_ms=3000)
    assert (view.base_url, view.key_hint, view.timeout_ms, view.enabled) == (
        "https://kontur.example:8443/kopilka",
        HINT,
        3000,
        True,
    )
    saved = hotel.read(lambda c: lc.get_centre(c, hotel.t))
    assert saved is not None and saved.api_key == KEY and KEY not in repr(saved)

    # Saved again without a key: the key stays.
    set_centre(hotel, api_key=None, enabled=False)
    saved = hotel.read(lambda c: lc.get_centre(c, hotel.t))
    assert saved is not None and saved.api_key == KEY and not saved.enabled
    set_centre(hotel, api_key="another-key-of-twenty-chars")
    assert hotel.read(lambda c: lc.centre_view(c, hotel.t)).key_hint == "…hars"  # type: ignore[union-attr]

    assert hotel.tx(lambda c: lc.clear_centre(c, tenant_id=hotel.t, actor=hotel.actor))
    assert not hotel.tx(lambda c: lc.clear_centre(c, tenant_id=hotel.t, actor=hotel.actor))
    assert hotel.read(lambda c: lc.get_centre(c, hotel.t)) is None

    events = hotel.read(
        lambda c: c.execute(
            select(audit_events.c.action, audit_events.c.details)
            .where(
                audit_events.c.tenant_id == hotel.t,
                audit_events.c.object_type == "loyalty_centre",
            )
            .order_by(audit_events.c.id)
        ).all()
    )
    assert [e.action for e in events] == ["loyalty_centre.set"] * 3 + ["loyalty_centre.clear"]
    assert [e.details["key"] for e in events[:3]] == ["changed", "kept", "changed"]
    assert all(KEY not in str(e.details) and "twenty" not in str(e.details) for e in events)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"base_url": "ftp://kontur.example"}, "invalid_centre_url"),
        ({"base_url": "https://"}, "invalid_centre_url"),
        ({"base_url": "kontur.example"}, "invalid_centre_url"),
        ({"base_url": "https://user:secret@kontur.example"}, "invalid_centre_url"),
        ({"base_url": "https://kontur.example/?key=1"}, "invalid_centre_url"),
        ({"base_url": "https://kontur.example:99999"}, "invalid_centre_url"),
        ({"base_url": "https://kontur.example/" + "a" * 500}, "invalid_centre_url"),
        ({"api_key": None}, "invalid_centre_key"),
        ({"api_key": "two words"}, "invalid_centre_key"),
        ({"api_key": "ключ"}, "invalid_centre_key"),
        ({"timeout_ms": 99}, "invalid_centre_timeout"),
        ({"timeout_ms": 60_001}, "invalid_centre_timeout"),
        ({"timeout_ms": True}, "invalid_centre_timeout"),
    ],
)
def test_a_wrong_setting_is_refused_and_nothing_is_saved(
    hotel: Hotel, fields: dict[str, Any], code: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        set_centre(hotel, **fields)
    assert refused.value.code == code
    assert hotel.read(lambda c: lc.get_centre(c, hotel.t)) is None


def test_keys_are_shown_only_as_a_hint() -> None:
    assert lc.mask_key(KEY) == HINT
    assert lc.mask_key("abcdefghijklmnopqrstuvwxyz") == "…wxyz"
    assert lc.mask_key("short-key") == "…"


# --------------------------------------------------------------------------- the API


def staff(hotel: Hotel, role: str) -> dict[str, str]:
    def make(conn: Any) -> str:
        user = create_user(
            conn,
            tenant_id=hotel.t,
            login=f"{role}-centre",
            password="long enough 1",
            role=role,
            actor=hotel.actor,
        )
        return issue_staff_token(conn, user=user, actor=hotel.actor)[0]

    return {"Authorization": f"Bearer {hotel.tx(make)}"}


def test_the_centre_over_the_api(hotel: Hotel) -> None:
    api = TestClient(app_for(hotel.engine), headers=staff(hotel, "administrator"))
    assert api.get(API).json()["mode"] == "own"
    missing = api.post(f"{API}/check")
    assert missing.status_code == 404 and missing.json()["code"] == "loyalty_centre_not_set"

    bad = api.put(API, json={"base_url": "kontur", "api_key": KEY})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_centre_url"
    nothing_there = f"http://127.0.0.1:{free_port()}"
    saved = api.put(API, json={"base_url": nothing_there, "api_key": KEY, "timeout_ms": 1000})
    assert saved.status_code == 200, saved.text
    assert saved.json() | {"updated_at": None} == {
        "mode": "external",
        "base_url": nothing_there,
        "key_hint": HINT,
        "timeout_ms": 1000,
        "enabled": True,
        "updated_at": None,
    }
    assert KEY not in api.get(API).text

    down = api.post(f"{API}/check", json={"card": "7700000000001"})
    assert down.status_code == 503, down.text
    assert down.headers["content-type"].startswith("application/problem+json")
    assert (down.json()["code"], down.json()["reason"]) == (
        "loyalty_centre_unavailable",
        "unreachable",
    )
    assert KEY not in down.text and KEY[17:] not in down.text

    cashier = TestClient(app_for(hotel.engine), headers=staff(hotel, "cashier"))
    for reply in (
        cashier.get(API),
        cashier.put(API, json={"base_url": nothing_there}),
        cashier.delete(API),
    ):
        assert reply.status_code == 403 and reply.json()["code"] == "forbidden"

    assert api.delete(API).json()["mode"] == "own"
    assert hotel.read(lambda c: lc.get_centre(c, hotel.t)) is None


# --------------------------------------------------------------------------- the screen


def field_error(html: str, name: str) -> str:
    match = re.search(rf'data-testid="error-{name}">(.*?)</p>', html, re.S)
    assert match, f"no error shown by the field {name}"
    return match.group(1).strip()


def test_an_owner_sets_the_centre_on_screen_and_the_key_is_never_shown(desk: Web) -> None:
    owner = desk.sign_in("owner")
    home = owner.get(HOME)
    assert home.status_code == 200
    assert 'data-testid="tab-loyalty-centre" aria-current="page"' in home.text
    assert "Счета оплачиваются баллами собственных карт компании." in text_of(home.text)

    form = {"mode": "external", "base_url": "kontur", "api_key": KEY, "timeout_ms": "5000"}
    wrong = owner.post(HOME, form)
    assert wrong.status_code == 422
    assert field_error(wrong.text, "base_url").startswith("Введите адрес, начинающийся с http://")
    assert KEY not in wrong.text  # not even the key just typed comes back
    slow = owner.post(HOME, {**form, "base_url": "https://kontur.example", "timeout_ms": "50"})
    assert slow.status_code == 422 and field_error(slow.text, "timeout_ms")

    nothing_there = f"http://127.0.0.1:{free_port()}"
    saved = owner.post(HOME, {**form, "base_url": nothing_there, "enabled": "y"})
    page = owner.follow(saved)
    assert "Процессинговый центр сохранён" in text_of(page.text)
    assert nothing_there in page.text and HINT in page.text and KEY not in page.text
    assert 'data-mode="external"' in page.text

    kept = owner.post(HOME, {**form, "base_url": nothing_there, "api_key": "", "enabled": "y"})
    assert kept.status_code == 303
    with desk.engine.begin() as conn:
        centre = lc.get_centre(conn, desk.tenant.id)
    assert centre is not None and centre.api_key == KEY and centre.enabled

    check = owner.post(f"{HOME}/check", {"card": ""})
    assert check.status_code == 200
    assert "Центр недоступен: проверьте его адрес и сеть." in text_of(check.text)

    back = owner.follow(owner.post(HOME, {"mode": "own"}))
    assert 'data-mode="own"' in back.text
    with desk.engine.begin() as conn:
        assert lc.get_centre(conn, desk.tenant.id) is None


def test_only_owners_and_administrators_see_the_tab(desk: Web) -> None:
    assert desk.sign_in("administrator").get(HOME).status_code == 200
    for role in ("cashier", "front_desk"):
        visitor = desk.sign_in(role)
        assert visitor.get(HOME).status_code == 403
        assert visitor.post(HOME, {"mode": "own"}).status_code == 403
        assert visitor.post(f"{HOME}/check", {}).status_code == 403
