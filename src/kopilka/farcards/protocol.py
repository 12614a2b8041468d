"""FarCards HTTP XML: reading requests, writing replies (``protocols/farcards.md``).

Parsing goes through ``defusedxml``: a document with a DTD, entities or external
references is refused before anything is expanded or fetched. Requests are read strictly
where the protocol is ours to know (``QRY``, ``TransactionsEx``: an unknown attribute is
refused, so a typo or a newer POS never goes unnoticed) and leniently inside the check
buffer (``INPBUF``), which is r_keeper's own check description with dozens of attributes
that vary between versions: only what Kopilka uses is read there.

Money in FarCards is whole kopecks (hundredths of the currency), signed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # writing only; reading is defusedxml's
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as safe_fromstring

from kopilka.core.errors import InvalidInput
from kopilka.farcards.error_codes import E

MAX_BODY_BYTES = 1024 * 1024
MAX_TRANSACTIONS = 100
MAX_LINES = 500
MAX_KOPECKS = 10**15
_DIGITS = re.compile(r"^[0-9]{1,32}$")
_CODE = re.compile(r"^[0-9A-Za-z_.:{}-]{1,40}$")
_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)

# Attributes of the protocol's own elements; VAT per rate (A..H) comes as VatSum*/VatPrc*.
_QRY_ATTRIBUTES = frozenset({"Card", "Restaurant", "UnitNo"})
_TRANSACTION_ATTRIBUTES = frozenset(
    {"Card", "PersonID", "Account", "Kind", "Summa", "Restaurant", "RKDate", "RKUni", "RKCheck"}
)
_VAT = re.compile(r"^Vat(Sum|Prc)[A-H]$")
_INPBUF_ATTRIBUTES = frozenset({"InpKind"})


@dataclass(frozen=True, slots=True)
class CheckBuffer:
    """What Kopilka reads of r_keeper's check (``INPBUF/CHECK``)."""

    chmode: int | None
    checkguid: str | None
    orderguid: str | None
    line_sums: tuple[int, ...]  # kopecks, as the POS sent them (a return's may be negative)


@dataclass(frozen=True, slots=True)
class CardQuery:
    card: str
    restaurant: str
    station: str
    check: CheckBuffer | None


@dataclass(frozen=True, slots=True)
class Transaction:
    card: str
    kind: int
    summa: int  # kopecks, signed as the POS sent it
    restaurant: str
    rk_date: str
    rk_uni: str
    rk_check: str


@dataclass(frozen=True, slots=True)
class TransactionsCall:
    transactions: tuple[Transaction, ...]
    check: CheckBuffer | None


def _bad(code: E, detail: str, **params: Any) -> InvalidInput:
    return InvalidInput(code, detail, **params)


def parse_document(body: bytes) -> ET.Element:
    """The root element of a UTF-8 XML body; refused if too large, not UTF-8, not
    well-formed, or declaring a DTD or entities."""
    if len(body) > MAX_BODY_BYTES:
        raise _bad(E.BODY_TOO_LARGE, "the request is too large", limit=MAX_BODY_BYTES)
    declared = _ENCODING.match(body)
    if declared and declared.group(1).decode("ascii", "replace").lower() not in ("utf-8", "utf8"):
        raise _bad(E.NOT_UTF8, "the request declares an encoding other than UTF-8")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _bad(E.NOT_UTF8, "the request is not UTF-8") from error
    try:
        root = safe_fromstring(body, forbid_dtd=True)
    except DefusedXmlException as error:
        raise _bad(
            E.MALFORMED_XML, "DTDs and entities are not accepted", reason="DTD/ENTITY"
        ) from error
    except ParseError as error:
        raise _bad(E.MALFORMED_XML, f"not well-formed XML: {error}", reason=str(error)) from error
    assert isinstance(root, ET.Element)
    if root.tag != "ROOT":
        raise _bad(E.UNEXPECTED_ELEMENT, f"the root is <{root.tag}>", element=root.tag)
    return root


def _strict(element: ET.Element, allowed: frozenset[str], vat: bool = False) -> None:
    for name in element.attrib:
        if name not in allowed and not (vat and _VAT.match(name)):
            raise _bad(
                E.UNKNOWN_ATTRIBUTE,
                f"unknown attribute {name} of <{element.tag}>",
                attribute=name,
                element=element.tag,
            )


def _required(element: ET.Element, name: str) -> str:
    value = element.get(name)
    if value is None or not value.strip():
        raise _bad(
            E.MISSING_ATTRIBUTE,
            f"<{element.tag}> needs {name}",
            attribute=name,
            element=element.tag,
        )
    return value.strip()


def _integer(value: str, name: str) -> int:
    text = value.strip()
    if not re.fullmatch(r"[-+]?[0-9]{1,18}", text) or abs(int(text)) > MAX_KOPECKS:
        raise _bad(
            E.INVALID_NUMBER, f"{name}={value!r} is not a whole number", attribute=name, value=value
        )
    return int(text)


def _card(value: str) -> str:
    text = value.strip()
    if not _DIGITS.match(text):
        raise _bad(E.INVALID_CARD, f"card {value!r} is not a number", value=value)
    return text


def _code(element: ET.Element, name: str, *, required: bool = True) -> str:
    value = _required(element, name) if required else (element.get(name) or "").strip()
    if value and not _CODE.match(value):
        raise _bad(E.INVALID_NUMBER, f"{name}={value!r} is not a code", attribute=name, value=value)
    return value


def _only_children(element: ET.Element, allowed: tuple[str, ...]) -> None:
    for child in element:
        if child.tag not in allowed:
            raise _bad(E.UNEXPECTED_ELEMENT, f"unexpected <{child.tag}>", element=child.tag)


def _check_buffer(inpbuf: ET.Element | None) -> CheckBuffer | None:
    if inpbuf is None:
        return None
    _strict(inpbuf, _INPBUF_ATTRIBUTES)
    _only_children(inpbuf, ("CHECK",))
    check = inpbuf.find("CHECK")
    if check is None:
        return None
    chmode_text = check.get("chmode")
    chmode = None if chmode_text in (None, "") else _integer(chmode_text, "chmode")
    if chmode is not None and not 0 <= chmode <= 7:
        raise _bad(
            E.INVALID_NUMBER, f"chmode={chmode} is not 0..7", attribute="chmode", value=chmode_text
        )
    data = check.find("CHECKDATA")
    sums: list[int] = []
    checkguid = orderguid = None
    if data is not None:
        checkguid = _code(data, "checkguid", required=False) or None
        orderguid = _code(data, "orderguid", required=False) or None
        lines = data.findall("LINE")
        if len(lines) > MAX_LINES:
            raise _bad(
                E.INVALID_NUMBER,
                f"a check has at most {MAX_LINES} lines",
                attribute="LINE",
                value=len(lines),
            )
        sums = [_integer(_required(line, "sum"), "LINE sum") for line in lines]
    return CheckBuffer(chmode, checkguid, orderguid, tuple(sums))


def parse_card_query(body: bytes) -> CardQuery:
    root = parse_document(body)
    _only_children(root, ("QRY",))
    qry = root.find("QRY")
    if qry is None:
        raise _bad(E.MISSING_ATTRIBUTE, "<ROOT> needs <QRY>", attribute="QRY", element="ROOT")
    _strict(qry, _QRY_ATTRIBUTES)
    _only_children(qry, ("INPBUF",))
    return CardQuery(
        card=_card(_required(qry, "Card")),
        restaurant=_code(qry, "Restaurant"),
        station=_code(qry, "UnitNo"),
        check=_check_buffer(qry.find("INPBUF")),
    )


def parse_transactions(body: bytes) -> TransactionsCall:
    root = parse_document(body)
    _only_children(root, ("Transactions", "INPBUF"))
    holder = root.find("Transactions")
    items = [] if holder is None else list(holder)
    if not items:
        raise _bad(E.NO_TRANSACTIONS, "no transactions")
    if len(items) > MAX_TRANSACTIONS:
        raise _bad(E.MIXED_CALL, f"at most {MAX_TRANSACTIONS} transactions in one call")
    transactions = []
    for item in items:
        if item.tag != "TransactionsEx":
            raise _bad(E.UNEXPECTED_ELEMENT, f"unexpected <{item.tag}>", element=item.tag)
        _strict(item, _TRANSACTION_ATTRIBUTES, vat=True)
        _only_children(item, ())
        kind = _integer(_required(item, "Kind"), "Kind")
        if kind not in (0, 1, 2, 3):
            raise _bad(E.INVALID_KIND, f"Kind={kind} is not 0..3", kind=kind)
        transactions.append(
            Transaction(
                card=_card(_required(item, "Card")),
                kind=kind,
                summa=_integer(_required(item, "Summa"), "Summa"),
                restaurant=_code(item, "Restaurant"),
                rk_date=_code(item, "RKDate", required=False),
                rk_uni=_code(item, "RKUni", required=False),
                rk_check=_code(item, "RKCheck", required=False),
            )
        )
    return TransactionsCall(tuple(transactions), _check_buffer(root.find("INPBUF")))


# --------------------------------------------------------------------------- replies


def _document(element: ET.Element) -> bytes:
    root = ET.Element("ROOT")
    root.append(element)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def render_card_info(attributes: dict[str, str]) -> bytes:
    """``<ROOT><GetCardInfoEx Result="0" .../></ROOT>``."""
    assert "Result" in attributes
    return _document(ET.Element("GetCardInfoEx", attributes))


def render_card_failure(message: str) -> bytes:
    """Result 1 (not found / error) with the reason as the screen message."""
    return render_card_info({"Result": "1", "ScrMessage": message})


@dataclass(frozen=True, slots=True)
class ResultLine:
    """One ``TRANSACTION`` of the reply: what happened to the card's account."""

    ext_id: str
    card: str
    num: int
    sub_account: int | None
    value_kopecks: int
    slip: str
    extinfo: str


def render_transactions(
    *,
    result: int,
    error_code: int,
    err_text: str,
    moment: datetime,
    place: str,
    lines: tuple[ResultLine, ...] = (),
) -> bytes:
    """``<ROOT><TransactionsEx Result=".."><TRRESPONSE ..>..</TRRESPONSE></TransactionsEx>``.

    ``result`` 0 with an ``err_text`` is a warning for the cashier (``error_code`` 0)."""
    assert result == 0 or error_code != 0, "a failure carries its number"
    outer = ET.Element("TransactionsEx", {"Result": str(result)})
    response = ET.SubElement(
        outer,
        "TRRESPONSE",
        {
            "error_code": str(error_code),
            "err_text": err_text,
            "dts": moment.strftime("%Y-%m-%dT%H:%M:%S"),
            "placeid": place,
        },
    )
    for line in lines:
        attributes = {
            "ext_id": line.ext_id,
            "cardcode": line.card,
            "num": str(line.num),
            "value": str(line.value_kopecks),
            "slip": line.slip,
            "extinfo": line.extinfo,
        }
        if line.sub_account is not None:
            attributes["subaccount"] = str(line.sub_account)
        ET.SubElement(response, "TRANSACTION", attributes)
    return _document(outer)
