"""What can go wrong at the FarCards door, each with the number shown to r_keeper.

FarCards 6.04+ shows ``TRRESPONSE err_text`` to the cashier next to ``error_code``; the
number lets support find the reason in the log line quickly. Errors of the loyalty domain
(and, on the room interface, of the hotel domain) travel with their own codes and get
numbers here too (``number_for``).
"""

from __future__ import annotations

from enum import StrEnum


class FarcardsErrorCode(StrEnum):
    NOT_AUTHORISED = "farcards_not_authorised"
    ADDRESS_NOT_ALLOWED = "farcards_address_not_allowed"
    UNKNOWN_FUNCTION = "farcards_unknown_function"
    BODY_TOO_LARGE = "farcards_body_too_large"
    NOT_UTF8 = "farcards_not_utf8"
    MALFORMED_XML = "farcards_malformed_xml"
    UNEXPECTED_ELEMENT = "farcards_unexpected_element"
    UNKNOWN_ATTRIBUTE = "farcards_unknown_attribute"
    MISSING_ATTRIBUTE = "farcards_missing_attribute"
    INVALID_NUMBER = "farcards_invalid_number"
    INVALID_CARD = "farcards_invalid_card"
    UNKNOWN_RESTAURANT = "farcards_unknown_restaurant"
    UNKNOWN_STATION = "farcards_unknown_station"
    INVALID_KIND = "farcards_invalid_kind"
    WRONG_SIGN = "farcards_wrong_sign"
    MIXED_CALL = "farcards_mixed_call"
    NO_TRANSACTIONS = "farcards_no_transactions"
    NOT_WHOLE_POINTS = "farcards_not_whole_points"
    UNSUPPORTED_CHMODE = "farcards_unsupported_chmode"
    CALL_CONFLICT = "farcards_call_conflict"
    RETURN_UNMATCHED = "farcards_return_unmatched"
    CARD_MISMATCH = "farcards_card_mismatch"
    ROOM_CHARGE_UNAVAILABLE = "farcards_room_charge_unavailable"
    # Settings (the screen, the CLI): each names the field that is wrong.
    INVALID_RESTAURANT_CODE = "farcards_invalid_restaurant_code"
    INVALID_STATION_CODE = "farcards_invalid_station_code"
    INVALID_ALLOW_LIST = "farcards_invalid_allow_list"
    TERMINAL_REVOKED = "farcards_terminal_revoked"
    INVALID_SOURCE = "farcards_invalid_source"
    INVALID_SUB_ACCOUNT = "farcards_invalid_sub_account"
    UNKNOWN_TIER = "farcards_unknown_tier"
    INVALID_DISCOUNT_CODE = "farcards_invalid_discount_code"
    INVALID_BONUS_CODE = "farcards_invalid_bonus_code"
    NOT_CONFIGURED = "farcards_not_configured"
    INTERNAL = "farcards_internal"
    # Room charge (the room interface, SPEC P-7).
    ROOM_KIND_NOT_ALLOWED = "farcards_room_kind_not_allowed"
    ROOM_RETURN_REFUSED = "farcards_room_return_refused"
    ROOM_CHECK_MISSING = "farcards_room_check_missing"
    ROOM_LINES_MISMATCH = "farcards_room_lines_mismatch"
    ROOM_PAYMENT_MISSING = "farcards_room_payment_missing"
    ROOM_GUEST_CODE_UNKNOWN = "farcards_room_guest_code_unknown"


E = FarcardsErrorCode

_NUMBERS: dict[str, int] = {
    # The door: 100..199.
    E.NOT_AUTHORISED: 101,
    E.ADDRESS_NOT_ALLOWED: 102,
    E.UNKNOWN_FUNCTION: 103,
    E.BODY_TOO_LARGE: 110,
    E.NOT_UTF8: 111,
    E.MALFORMED_XML: 112,
    E.UNEXPECTED_ELEMENT: 113,
    E.UNKNOWN_ATTRIBUTE: 114,
    E.MISSING_ATTRIBUTE: 115,
    E.INVALID_NUMBER: 116,
    E.INVALID_CARD: 117,
    E.UNKNOWN_RESTAURANT: 120,
    E.UNKNOWN_STATION: 121,
    E.INVALID_KIND: 130,
    E.WRONG_SIGN: 131,
    E.MIXED_CALL: 132,
    E.NO_TRANSACTIONS: 133,
    E.NOT_WHOLE_POINTS: 134,
    E.UNSUPPORTED_CHMODE: 135,
    E.CALL_CONFLICT: 140,
    E.RETURN_UNMATCHED: 141,
    E.CARD_MISMATCH: 142,
    E.ROOM_CHARGE_UNAVAILABLE: 150,
    E.INTERNAL: 199,
    # The loyalty domain: 200..299.
    "card_not_found": 201,
    "card_blocked": 202,
    "card_expired": 203,
    "invalid_card_number": 204,
    "loyalty_disabled": 205,
    "loyalty_module_disabled": 206,
    "points_over_cap": 210,
    "insufficient_points": 211,
    "invalid_check": 212,
    "check_lines_mismatch": 213,
    "check_conflict": 214,
    "check_not_found": 215,
    "refund_too_large": 216,
    "refund_conflict": 217,
    # The room interface: 151..159.
    E.ROOM_KIND_NOT_ALLOWED: 151,
    E.ROOM_RETURN_REFUSED: 152,
    E.ROOM_CHECK_MISSING: 153,
    E.ROOM_LINES_MISMATCH: 154,
    E.ROOM_PAYMENT_MISSING: 155,
    E.ROOM_GUEST_CODE_UNKNOWN: 156,
    # The hotel domain (and the payment codes it resolves): 300..399.
    "no_guest_in_room": 301,
    "guest_not_found": 302,
    "stay_closed": 303,
    "invoice_paid": 304,
    "invoice_not_found": 305,
    "unknown_payment_code": 306,
    "payment_type_disabled": 307,
    "not_room_charge": 308,
    "deposit_insufficient": 309,
    "hotel_operation_conflict": 310,
    "invalid_hotel_input": 311,
}
OTHER = 299


def number_for(code: str) -> int:
    """The number r_keeper shows for ``code`` (299: a refusal without its own number)."""
    return _NUMBERS.get(code, OTHER)
