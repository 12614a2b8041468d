"""Malformed, huge and malicious XML to both FarCards functions (issue 9): the answer is
always a FarCards document (HTTP 200) that a station can show, never a server error,
and a refused request writes nothing. ``test_bad_input.py`` names each refusal's reason;
here the input is generated or built to hurt."""

from __future__ import annotations

import time
from xml.etree import ElementTree as ET

from defusedxml.ElementTree import fromstring as safe_fromstring
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kopilka.farcards.protocol import MAX_BODY_BYTES
from kopilka.loyalty.cards import CardView

from .conftest import RESTAURANT, STATION, Restaurant, Station, check_buffer
from .test_bad_input import _written

FUNCTIONS = ("GetCardInfoEx", "TransactionsEx")
_CARDS: dict[int, CardView] = {}  # one card per restaurant, for all of hypothesis' examples


def _reply(station: Station, function: str, body: bytes) -> ET.Element:
    response = station.client.post(f"{station.base}/{function}", content=body)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith("application/xml")
    root = safe_fromstring(response.content)
    assert root.tag == "ROOT" and len(root) == 1
    return root[0]


def _refused(reply: ET.Element) -> bool:
    if reply.attrib.get("Result") != "1":
        return False
    if reply.tag == "GetCardInfoEx":
        return bool(reply.attrib.get("ScrMessage"))
    answer = reply.find("TRRESPONSE")
    return answer is not None and bool(answer.attrib.get("err_text"))


def _valid_lookup(card: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ROOT><QRY Card="{card}" '
        f'Restaurant="{RESTAURANT}" UnitNo="{STATION}"/></ROOT>'
    ).encode()


def _valid_sale(card: str) -> bytes:
    sale = check_buffer(chmode=1, lines=[10000], checkguid="{H-1}")
    return (
        f'<ROOT><Transactions><TransactionsEx Card="{card}" Kind="3" Summa="10000" '
        f'Restaurant="{RESTAURANT}" RKDate="1" RKUni="{STATION}" RKCheck="1"/>'
        f"</Transactions>{sale}</ROOT>"
    ).encode()


BOMBS: dict[str, bytes] = {
    "billion laughs": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
            for i in range(1, 10)
        )
        + b']><ROOT><QRY Card="&lol9;"/></ROOT>'
    ),
    "quadratic blowup": (
        b'<!DOCTYPE r [<!ENTITY a "' + b"x" * 50_000 + b'">]><ROOT>' + b"&a;" * 5_000 + b"</ROOT>"
    ),
    "external entity": b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><ROOT>&x;</ROOT>',
    "external DTD": b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd"><ROOT/>',
    "parameter entity": (b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x">%p;]><ROOT/>'),
    "xinclude": (
        b'<ROOT xmlns:xi="http://www.w3.org/2001/XInclude">'
        b'<xi:include href="file:///etc/passwd" parse="text"/></ROOT>'
    ),
    "deep nesting": b"<ROOT>" + b"<a>" * 120_000 + b"</a>" * 120_000 + b"</ROOT>",
    "many attributes": (
        b"<ROOT><QRY " + b" ".join(f'a{i}="{i}"'.encode() for i in range(20_000)) + b"/></ROOT>"
    ),
    "long attribute": b'<ROOT><QRY Card="' + b"9" * 900_000 + b'"/></ROOT>',
    "many elements": b"<ROOT><Transactions>"
    + b"<TransactionsEx/>" * 50_000
    + b"</Transactions></ROOT>",
    "NUL bytes": b"<ROOT>\x00\x00<QRY Card='1'/>\x00</ROOT>",
    "UTF-16": '<?xml version="1.0" encoding="UTF-16"?><ROOT/>'.encode("utf-16"),
    "not XML at all": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 100,
    "processing instruction": b'<?xml-stylesheet href="http://127.0.0.1:9/x.xsl"?><ROOT/>',
    "CDATA script": b"<ROOT><QRY Card='1'><![CDATA[<script>alert(1)</script>]]></QRY></ROOT>",
    "empty": b"",
}


def test_bombs_are_refused_quickly_and_write_nothing(
    restaurant: Restaurant, station: Station
) -> None:
    slowest = 0.0
    for function in FUNCTIONS:
        for name, body in BOMBS.items():
            assert len(body) <= MAX_BODY_BYTES, name
            started = time.perf_counter()
            reply = _reply(station, function, body)
            slowest = max(slowest, time.perf_counter() - started)
            assert _refused(reply), (function, name, ET.tostring(reply)[:300])
            text = ET.tostring(reply, encoding="unicode")
            assert "root:" not in text and "lollol" not in text, (function, name)
    assert _written(restaurant) == (0, 0, 0)
    # No bomb goes off: each is refused in about the time it takes to read it.
    print(f"\nFarCards: {len(BOMBS) * 2} hostile documents refused, slowest {slowest:.2f} s")


def test_a_body_past_the_limit_is_refused_without_its_length_declared(
    restaurant: Restaurant, station: Station
) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b"<ROOT>"
        for _ in range(40):
            yield b" " * 64 * 1024  # 2.5 MiB in all, sent chunked
        yield b"</ROOT>"

    response = station.client.post(f"{station.base}/TransactionsEx", content=chunks())
    assert response.status_code == 200
    assert _refused(safe_fromstring(response.content)[0])
    assert _written(restaurant) == (0, 0, 0)


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """The valid document with a stretch cut out, repeated or replaced by random bytes."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        start = draw(st.integers(0, len(seed)))
        end = draw(st.integers(start, min(len(seed), start + 40)))
        kind = draw(st.sampled_from(["cut", "repeat", "replace", "insert"]))
        if kind == "cut":
            return seed[:start] + seed[end:]
        if kind == "repeat":
            return seed[:end] + seed[start:end] * draw(st.integers(2, 50)) + seed[end:]
        noise = draw(st.binary(min_size=1, max_size=40))
        if kind == "replace":
            return seed[:start] + noise + seed[end:]
        return seed[:start] + noise + seed[start:]

    return mutate()


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mangled_documents_get_a_farcards_answer(
    restaurant: Restaurant, station: Station, data: st.DataObject
) -> None:
    card = _CARDS.get(restaurant.tenant.id) or _CARDS.setdefault(
        restaurant.tenant.id, restaurant.card()
    )
    function = data.draw(st.sampled_from(FUNCTIONS))
    seed = _valid_lookup(card.number) if function == "GetCardInfoEx" else _valid_sale(card.number)
    body = data.draw(st.one_of(_mutations(seed), st.binary(max_size=2_000)))
    reply = _reply(station, function, body)
    assert reply.tag == function
    assert reply.attrib.get("Result") in ("0", "1")
