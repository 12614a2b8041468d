"""What the cashier reads: ``err_text`` and screen messages in the tenant's language.

r_keeper shows these texts as they are, so they are short, plain, and say what to do.
Russian and English are kept here side by side (the POS has no use for a catalogue of
the web UI); an error without its own text falls back to its English detail.
"""

from __future__ import annotations

from typing import Any

from kopilka.core.errors import KopilkaError
from kopilka.farcards.error_codes import E

# code -> (Russian, English); ``{name}`` takes the error's params.
_TEXTS: dict[str, tuple[str, str]] = {
    E.NOT_AUTHORISED: (
        "Kopilka: неверный адрес или секрет FarCards; проверьте ExtDllHttp.ini",
        "Kopilka: unknown FarCards address or secret; check ExtDllHttp.ini",
    ),
    E.ADDRESS_NOT_ALLOWED: (
        "Kopilka: запросы с адреса {ip} этой кассе не разрешены",
        "Kopilka: requests from {ip} are not allowed for this terminal",
    ),
    E.UNKNOWN_FUNCTION: (
        "Kopilka: неизвестная функция FarCards {function}",
        "Kopilka: unknown FarCards function {function}",
    ),
    E.BODY_TOO_LARGE: (
        "Kopilka: запрос слишком большой (больше {limit} байт)",
        "Kopilka: the request is too large (over {limit} bytes)",
    ),
    E.NOT_UTF8: (
        "Kopilka: запрос не в кодировке UTF-8",
        "Kopilka: the request is not UTF-8",
    ),
    E.MALFORMED_XML: (
        "Kopilka: запрос не является корректным XML: {reason}",
        "Kopilka: the request is not well-formed XML: {reason}",
    ),
    E.UNEXPECTED_ELEMENT: (
        "Kopilka: неожиданный элемент <{element}> в запросе",
        "Kopilka: unexpected element <{element}> in the request",
    ),
    E.UNKNOWN_ATTRIBUTE: (
        "Kopilka: неизвестный атрибут {attribute} у <{element}>",
        "Kopilka: unknown attribute {attribute} of <{element}>",
    ),
    E.MISSING_ATTRIBUTE: (
        "Kopilka: нет атрибута {attribute} у <{element}>",
        "Kopilka: attribute {attribute} of <{element}> is missing",
    ),
    E.INVALID_NUMBER: (
        "Kopilka: {attribute}={value!r} не целое число",
        "Kopilka: {attribute}={value!r} is not a whole number",
    ),
    E.INVALID_CARD: (
        "Неверный номер карты: {value!r}",
        "Invalid card number: {value!r}",
    ),
    E.UNKNOWN_RESTAURANT: (
        "Kopilka: ресторан {restaurant} не подключён к этой кассе",
        "Kopilka: restaurant {restaurant} is not connected to this terminal",
    ),
    E.UNKNOWN_STATION: (
        "Kopilka: станция {station} не подключена к этой кассе",
        "Kopilka: station {station} is not connected to this terminal",
    ),
    E.INVALID_KIND: (
        "Kopilka: неизвестный вид транзакции Kind={kind}",
        "Kopilka: unknown transaction kind Kind={kind}",
    ),
    E.WRONG_SIGN: (
        "Kopilka: неверный знак суммы {summa} для Kind={kind} ({operation})",
        "Kopilka: wrong sign of {summa} for Kind={kind} ({operation})",
    ),
    E.MIXED_CALL: (
        "Kopilka: в одном вызове транзакции разных карт или чеков",
        "Kopilka: one call carries transactions of different cards or checks",
    ),
    E.NO_TRANSACTIONS: (
        "Kopilka: в запросе нет транзакций",
        "Kopilka: the request carries no transactions",
    ),
    E.NOT_WHOLE_POINTS: (
        "Оплата баллами {amount} не делится на целые баллы",
        "A payment of {amount} is not a whole number of points",
    ),
    E.UNSUPPORTED_CHMODE: (
        "Kopilka не проводит эту операцию (chmode={chmode}): {what}",
        "Kopilka does not post this operation (chmode={chmode}): {what}",
    ),
    E.CALL_CONFLICT: (
        "Этот чек уже проведён с другими суммами; повтор отклонён",
        "This check was posted with other amounts; the repeat is refused",
    ),
    E.RETURN_UNMATCHED: (
        "Возврат: исходный чек этой карты не найден в Kopilka",
        "Return: the original check of this card is not known to Kopilka",
    ),
    E.CARD_MISMATCH: (
        "Чек проведён по другой карте",
        "The check was posted with another card",
    ),
    E.ROOM_CHARGE_UNAVAILABLE: (
        "Оплата на номер пока недоступна: в Kopilka нет гостевых счетов отеля",
        "Room charge is not available yet: Kopilka has no hotel folios",
    ),
    E.INTERNAL: (
        "Kopilka: внутренняя ошибка, операция не проведена; повторите позже",
        "Kopilka: internal error, nothing was posted; try again later",
    ),
    "card_not_found": ("Карта не найдена", "Card not found"),
    "card_blocked": ("Карта заблокирована", "The card is blocked"),
    "card_expired": ("Срок действия карты истёк", "The card has expired"),
    "invalid_card_number": ("Неверный номер карты", "Invalid card number"),
    "loyalty_disabled": (
        "Программа лояльности карты отключена",
        "The card's loyalty program is switched off",
    ),
    "loyalty_module_disabled": (
        "Программа лояльности отключена: карты не принимаются",
        "Loyalty is switched off: cards are not accepted",
    ),
    "points_over_cap": (
        "Баллами можно оплатить не больше {cap} по этому чеку",
        "Points may pay at most {cap} of this check",
    ),
    "insufficient_points": (
        "Недостаточно баллов: доступно {available}",
        "Not enough points: {available} available",
    ),
    "invalid_check": ("Чек не принят: {detail}", "Check refused: {detail}"),
    "check_conflict": (
        "Этот чек уже проведён с другим составом",
        "This check was posted with other content",
    ),
    "check_not_found": (
        "Отмена: этот чек не проводился в Kopilka",
        "Cancellation: this check was never posted to Kopilka",
    ),
    "refund_too_large": (
        "Возврат больше, чем осталось по чеку",
        "The return is larger than what is left of the check",
    ),
    # The room interface (room charge, SPEC P-7) and the hotel domain behind it.
    E.ROOM_KIND_NOT_ALLOWED: (
        "На номер закрывается только оплата (Kind=0), не Kind={kind}",
        "Only a payment (Kind=0) is charged to a room, not Kind={kind}",
    ),
    E.ROOM_RETURN_REFUSED: (
        "Возврат заказа, закрытого на номер, оформляется на ресепшене отеля",
        "A room charge is returned as a refund at the hotel's front desk",
    ),
    E.ROOM_CHECK_MISSING: (
        "Нет состава чека: для закрытия на номер нужен чек с блюдами",
        "The check's lines are missing: a room charge needs the check with its lines",
    ),
    E.ROOM_LINES_MISMATCH: (
        "Блюда чека на {lines}, а на номер закрывается {amount}",
        "The check's lines come to {lines}, but {amount} is charged to the room",
    ),
    E.ROOM_PAYMENT_MISSING: (
        "В чеке нет одной оплаты на {amount} валютой «Закрытие на номер»",
        "The check has no single payment of {amount} to charge to the room",
    ),
    E.ROOM_GUEST_CODE_UNKNOWN: (
        "Гость с кодом {typed} сейчас не проживает в отеле",
        "No guest with code {typed} is staying now",
    ),
    "no_guest_in_room": (
        "В номере {room} никто не проживает",
        "Nobody is staying in room {room}",
    ),
    "guest_not_found": (
        "Этот гость не проживает в номере {room}",
        "This guest is not staying in room {room}",
    ),
    "stay_closed": (
        "Проживание гостя закрыто: на номер больше ничего не закрыть",
        "The guest's stay is closed: nothing more can be charged to the room",
    ),
    "invoice_paid": (
        "Счёт уже оплачен на ресепшене; возврат оформляется там",
        "Already paid at the front desk; refund it there",
    ),
    "invoice_not_found": (
        "Отмена: этот чек не закрывался на номер",
        "Cancellation: this check was never charged to a room",
    ),
    "unknown_payment_code": (
        "Валюта {payment_code} не сопоставлена типу оплаты в Kopilka (Настройки → Типы оплаты)",
        "Currency {payment_code} is not mapped to a payment type in Kopilka "
        "(Settings → Payment types)",
    ),
    "payment_type_disabled": (
        "Тип оплаты валюты {payment_code} отключён в Kopilka",
        "The payment type of currency {payment_code} is switched off in Kopilka",
    ),
    "not_room_charge": (
        "Валюта {payment_code} в Kopilka не «Закрытие на номер» и не депозит",
        "Currency {payment_code} is neither a room charge nor a deposit in Kopilka",
    ),
    "deposit_insufficient": (
        "Депозита гостя хватает только на {deposit}; закройте на номер в кредит",
        "The guest's deposit covers only {deposit}; charge the room on credit instead",
    ),
    "hotel_operation_conflict": (
        "Этот чек уже закрыт на номер с другим составом",
        "This check was charged to a room with other content",
    ),
    "invalid_hotel_input": ("Заказ не принят: {detail}", "Order refused: {detail}"),
}

_GENERIC = ("Операция отклонена: {detail}", "Refused: {detail}")


class _Params(dict[str, Any]):
    """A missing parameter prints as nothing rather than failing the reply."""

    def __missing__(self, key: str) -> str:
        return ""


def language(locale: str | None) -> str:
    """``ru`` for Russian tenants, ``en`` for everyone else."""
    return "ru" if (locale or "ru").lower().startswith("ru") else "en"


def text(code: str, lang: str, **params: Any) -> str:
    """The text for ``code`` in ``lang`` with ``params`` filled in."""
    ru, en = _TEXTS.get(code, _GENERIC)
    template = ru if lang == "ru" else en
    try:
        return template.format_map(_Params(params))
    except (IndexError, ValueError):
        return template


def error_text(error: KopilkaError, lang: str) -> str:
    """What the cashier reads about ``error``."""
    if error.code not in _TEXTS:
        return text("", lang, detail=error.detail)
    return text(error.code, lang, **{**error.params, "detail": error.detail})


def expiring_text(lang: str, amount: str, by: str) -> str:
    if lang == "ru":
        return f"{amount} бонусов сгорят до {by}"
    return f"{amount} points expire by {by}"


def balance_text(lang: str, amount: str) -> str:
    return f"Бонусов на карте: {amount}" if lang == "ru" else f"Points on the card: {amount}"


def accrued_text(lang: str, amount: str) -> str:
    return f"Начислено бонусов: {amount}" if lang == "ru" else f"Points accrued: {amount}"


def spent_text(lang: str, amount: str) -> str:
    return f"Оплачено бонусами: {amount}" if lang == "ru" else f"Paid with points: {amount}"


def mismatch_text(lang: str, what: str, pos_amount: str, ours: str) -> str:
    """A warning: the POS counted ``what`` otherwise than the program's rules."""
    names = {
        "discount": ("скидка", "discount"),
        "bonus": ("начисление бонусов", "bonus accrual"),
        "money": ("оплата деньгами", "money paid"),
    }
    ru, en = names[what]
    if lang == "ru":
        return f"{ru}: касса {pos_amount}, Kopilka по правилам программы {ours}"
    return f"{en}: POS {pos_amount}, Kopilka by the program's rules {ours}"


def room_info_text(lang: str, hotel: str, room: str, departure: str) -> str:
    """Where the guest stays, for the lookup's screen."""
    if lang == "ru":
        return f"{hotel}, номер {room}, выезд {departure}"
    return f"{hotel}, room {room}, leaving {departure}"


def room_guest_text(lang: str, name: str, code: str) -> str:
    """One guest of the room and the code that charges them."""
    return f"{name}: код {code}" if lang == "ru" else f"{name}: code {code}"


def item_text(lang: str, code: str) -> str:
    """A check line the POS sent without its name."""
    return f"блюдо {code}" if lang == "ru" else f"item {code}"


def room_charged_text(lang: str, room: str, name: str, amount: str) -> str:
    if lang == "ru":
        return f"Закрыто на номер {room} ({name}): {amount}"
    return f"Charged to room {room} ({name}): {amount}"


def room_cancelled_text(lang: str, name: str, amount: str) -> str:
    if lang == "ru":
        return f"Отменено закрытие на номер ({name}): {amount}"
    return f"Room charge cancelled ({name}): {amount}"
