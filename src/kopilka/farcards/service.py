"""FarCards calls as the JSON gateway's actions (SPEC P-2..P-5, P-10).

Nothing here computes what a check is worth: a lookup asks ``pos.calculate`` (or the
card's available points), a sale is ``pos.commit_check``, a cancellation or a return is
``pos.refund_check``. This module only translates.

How one TransactionsEx becomes one check:

* Kind 3 (the guest's own money), kind 0 (paid with points) and kind 1 (discount) add up
  to the check's total when the POS sends no check buffer; with one, the total is the
  sum of its lines. Kind 0 is the points spent; everything else the program decides:
  Kopilka computes the discount and the accrual by its rules and reports what it did.
  When the POS's own figures (kind 1, kind 2, kind 3) differ from Kopilka's, the call
  still succeeds and the cashier gets a warning (``error_code="0"``) naming both.
* The sign of every ``Summa`` must match ``chmode``: 1 (sale) and 4 (return rollback)
  carry the normal signs, 2 (sale rollback, a cancellation) and 3 (return) the opposite.
  Without a check buffer the mode is read from the signs: all normal a sale, all
  opposite a cancellation.
* A check is ``rk:<checkguid>`` (or ``rk:<Restaurant>:<RKDate>:<RKUni>:<RKCheck>``) of
  the terminal, so ``commit_check``'s idempotency by (terminal, check id) holds. Each call
  applied is kept with its reply in ``farcards_calls``: the same call again gets the same
  reply and changes nothing; the same call with other amounts is refused.
* A cancellation refunds all that is left of the check; a return refunds the returned
  part of the sale it belongs to (the same check, or the sale of the same order and
  card). A return rollback (chmode 4) takes that return's refund back
  (``pos.cancel_refund``); a later return of the same check then applies anew. Check
  editing (chmode 5) is refused with a clear text: close the check and post it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, select, update

from kopilka.core.actor import Actor
from kopilka.core.errors import Conflict, Forbidden, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.farcards import messages as m
from kopilka.farcards.error_codes import E, number_for
from kopilka.farcards.protocol import (
    CardQuery,
    ResultLine,
    TransactionsCall,
    render_card_failure,
    render_card_info,
    render_transactions,
)
from kopilka.farcards.schema import farcards_calls
from kopilka.farcards.terminals import ACCUMULATION, Caller, codes_for, sub_accounts
from kopilka.ledger.posting import run_transaction
from kopilka.ledger.schema import lots
from kopilka.loyalty import pos
from kopilka.loyalty.cards import find_card, normalise_number
from kopilka.loyalty.programs import LoyaltyErrorCode, Program, cached_program, rates
from kopilka.loyalty.schema import pos_refunds
from kopilka.tenancy.actions import actor_for_terminal

log = logging.getLogger("kopilka.farcards")

EXPIRY_NOTICE_DAYS = 14
NORMAL_SIGN = {0: -1, 1: -1, 2: 1, 3: 1}  # Summa's sign in a sale, per Kind
SALE, SALE_ROLLBACK, RETURN, RETURN_ROLLBACK, EDITING = 1, 2, 3, 4, 5
NOTHING_TO_POST = (0, 6, 7)  # no check, pre-check, calculation
OPERATIONS = {
    0: "no check",
    1: "sale",
    2: "sale rollback",
    3: "return",
    4: "return rollback",
    5: "editing",
    6: "pre-check",
    7: "calculation",
}


# --------------------------------------------------------------------------- money


HOLDER_BYTES = 40  # FarCards' Holder is at most 40 bytes


def known_reply(
    conn: Connection, caller: Caller, call_key: str, request_hash: str, what: str
) -> bytes | None:
    """The reply a call of this check was answered with before (a repeat gets it again,
    byte for byte), or None; the same check with other ``what`` is a conflict."""
    known = conn.execute(
        select(farcards_calls.c.request_hash, farcards_calls.c.response).where(
            farcards_calls.c.tenant_id == caller.link.tenant_id,
            farcards_calls.c.terminal_id == caller.link.terminal_id,
            farcards_calls.c.call_key == call_key,
        )
    ).first()
    if known is None:
        return None
    if known.request_hash != request_hash:
        raise Conflict(E.CALL_CONFLICT, f"this check was posted with other {what}")
    return str(known.response).encode()


def cut_utf8(text: str, limit_bytes: int) -> str:
    """``text`` in at most ``limit_bytes`` of UTF-8, never cutting a character in two."""
    cut = text.encode("utf-8")[:limit_bytes].decode("utf-8", errors="ignore")
    assert len(cut.encode("utf-8")) <= limit_bytes
    return cut


def to_minor(kopecks: int, exponent: int) -> int:
    """FarCards kopecks (hundredths) as the currency's minor units, exactly."""
    if exponent >= 2:
        return kopecks * 10 ** (exponent - 2)
    step = 10 ** (2 - exponent)
    if kopecks % step:
        raise InvalidInput(
            E.INVALID_NUMBER,
            f"{kopecks} kopecks is not a whole amount of the currency",
            attribute="Summa",
            value=kopecks,
        )
    return kopecks // step


def to_kopecks(minor: int, exponent: int) -> int:
    """The currency's minor units as kopecks, rounded toward zero."""
    if exponent <= 2:
        return minor * 10 ** (2 - exponent)
    step = 10 ** (exponent - 2)
    return minor // step if minor >= 0 else -(-minor // step)


def _shown(kopecks: int) -> str:
    sign = "-" if kopecks < 0 else ""
    return f"{sign}{abs(kopecks) // 100}.{abs(kopecks) % 100:02d}"


def _check_place(caller: Caller, restaurant: str, station: str) -> None:
    link = caller.link
    if restaurant != link.restaurant_code:
        raise NotFound(
            E.UNKNOWN_RESTAURANT,
            f"restaurant {restaurant} is not this terminal's",
            restaurant=restaurant,
        )
    if link.station_codes is not None and station not in link.station_codes:
        raise NotFound(
            E.UNKNOWN_STATION, f"station {station} is not this terminal's", station=station
        )


def _loyalty_on(caller: Caller) -> None:
    if not caller.loyalty_enabled:
        raise Forbidden(
            LoyaltyErrorCode.LOYALTY_MODULE_DISABLED,
            "the loyalty module of this tenant is switched off",
        )


# --------------------------------------------------------------------------- lookup


def _expiring(conn: Connection, account_id: int, now: datetime) -> tuple[int, datetime | None]:
    """Points of the account expiring within the notice period, and the first moment."""
    row = conn.execute(
        select(
            func.coalesce(func.sum(lots.c.remaining_minor), 0), func.min(lots.c.expires_at)
        ).where(
            lots.c.account_id == account_id,
            lots.c.remaining_minor > 0,
            lots.c.expires_at > now,
            lots.c.expires_at <= now + timedelta(days=EXPIRY_NOTICE_DAYS),
        )
    ).one()
    return int(row[0]), row[1]


def card_info(conn: Connection, caller: Caller, query: CardQuery, *, now: datetime) -> bytes:
    """GetCardInfoEx: the card's state, codes, balances and what it may pay now."""
    _check_place(caller, query.restaurant, query.station)
    _loyalty_on(caller)
    tenant_id, lang = caller.link.tenant_id, m.language(caller.locale)
    card = find_card(conn, tenant_id, number=query.card, now=now)
    program = cached_program(conn, tenant_id, card.program_id)
    tier, _, _ = rates(program, card.accumulation_minor)
    exponent = program.currency_exponent
    blocked, expired = card.status == "blocked", card.is_expired(now)
    discount_code, bonus_code = codes_for(conn, tenant_id, program.id, tier.id if tier else None)
    attributes = {
        "Result": "0",
        "Deleted": "0",
        "Seize": "0",
        "StopDate": "1" if expired else "0",
        "Holy": "0" if program.enabled else "1",
        "Manager": "1" if card.debt_minor > 0 else "0",
        "Locked": "1" if blocked else "0",
        "WhyLock": (card.blocked_reason or m.text("card_blocked", lang))[:256] if blocked else "",
        "Holder": cut_utf8(card.holder_name or "", HOLDER_BYTES),
        "PersonID": str(card.id),
        "Account": str(card.account_id),
        "Unpay": "0",
        "Bonus": str(bonus_code or 0),
        "Discount": str(discount_code or 0),
        "Summa": "0",
        "DopInfo": program.name + (f": {tier.name}" if tier else ""),
    }
    if program.enabled and not blocked and not expired:
        lines = [to_minor(s, exponent) for s in (query.check.line_sums if query.check else ())]
        lines = [amount for amount in lines if amount > 0]
        if lines:
            _, _, q = pos.calculate(
                conn,
                tenant_id=tenant_id,
                card_number=card.number,
                lines=lines,
                points_asked=card.available_minor,
                now=now,
            )
            attributes["Summa"] = str(to_kopecks(q.points_money_minor, exponent))
            attributes["DiscLimit"] = str(to_kopecks(q.discount_minor, exponent))
        else:
            available = program.money_for_points(card.available_minor)
            attributes["Summa"] = str(to_kopecks(available, exponent))
    balance = to_kopecks(program.money_for_points(card.balance_minor), exponent)
    for source, number in sub_accounts(conn, tenant_id).items():
        if source == program.unit.code:
            attributes[f"Sum{number}"] = str(balance)
        elif source == ACCUMULATION:
            attributes[f"Sum{number}"] = str(to_kopecks(card.accumulation_minor, exponent))
    printed = [m.balance_text(lang, _shown(balance))]
    soon, first = _expiring(conn, card.account_id, now)
    if soon:
        by = first.astimezone(zoneinfo.ZoneInfo(caller.timezone)) if first else now
        notice = m.expiring_text(
            lang,
            _shown(to_kopecks(program.money_for_points(soon), exponent)),
            by.strftime("%d.%m.%Y"),
        )
        attributes["ScrMessage"] = notice
        printed.append(notice)
    attributes["PrnMessage"] = "\n".join(printed)
    return render_card_info(attributes)


def card_failure(error: KopilkaError, caller_locale: str | None) -> bytes:
    return render_card_failure(m.error_text(error, m.language(caller_locale)))


# --------------------------------------------------------------------------- transactions


@dataclass(frozen=True, slots=True)
class Plan:
    """One TransactionsEx call, checked and reduced to what the gateway needs."""

    chmode: int
    card: str
    restaurant: str
    station: str
    check_id: str  # the pos_checks check id this call is about
    order_key: str | None
    call_key: str
    return_key: str | None  # a return rollback: the call_key of the return it takes back
    request_hash: str
    amounts: dict[int, int]  # Kind -> kopecks, sign removed (>= 0)
    line_sums: tuple[int, ...]


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def plan(caller: Caller, call: TransactionsCall) -> Plan:
    first = call.transactions[0]
    for t in call.transactions:
        if (t.card, t.restaurant, t.rk_date, t.rk_uni, t.rk_check) != (
            first.card,
            first.restaurant,
            first.rk_date,
            first.rk_uni,
            first.rk_check,
        ):
            raise InvalidInput(E.MIXED_CALL, "transactions of different cards or checks")
    _check_place(caller, first.restaurant, first.rk_uni)
    check = call.check
    chmode = check.chmode if check is not None else None
    if chmode is None:
        # No mode sent: the signs say whether this is a sale or its cancellation.
        directions = {NORMAL_SIGN[t.kind] * t.summa > 0 for t in call.transactions if t.summa}
        if len(directions) > 1:
            raise InvalidInput(
                E.WRONG_SIGN,
                "mixed signs",
                summa=first.summa,
                kind=first.kind,
                operation="?",
            )
        chmode = SALE if directions != {False} else SALE_ROLLBACK
    reverse = chmode in (SALE_ROLLBACK, RETURN)
    amounts: dict[int, int] = {}
    for t in call.transactions:
        signed = NORMAL_SIGN[t.kind] * t.summa * (-1 if reverse else 1)
        if signed < 0:
            raise InvalidInput(
                E.WRONG_SIGN,
                f"Summa={t.summa} has the wrong sign for Kind={t.kind} in a {OPERATIONS[chmode]}",
                summa=t.summa,
                kind=t.kind,
                operation=OPERATIONS[chmode],
            )
        amounts[t.kind] = amounts.get(t.kind, 0) + signed
    guid = check.checkguid if check is not None else None
    if guid:
        check_id = f"rk:{guid}"
    elif first.rk_check:
        check_id = f"rk:{first.restaurant}:{first.rk_date}:{first.rk_uni}:{first.rk_check}"
    else:
        raise InvalidInput(
            E.MISSING_ATTRIBUTE,
            "no check identity",
            attribute="RKCheck",
            element="TransactionsEx",
        )
    line_sums = check.line_sums if check is not None else ()
    identity = [chmode, guid or "", first.restaurant, first.rk_date, first.rk_uni, first.rk_check]
    content = [sorted((t.card, t.kind, t.summa) for t in call.transactions), list(line_sums)]
    return Plan(
        chmode=chmode,
        card=normalise_number(first.card),
        restaurant=first.restaurant,
        station=first.rk_uni,
        check_id=check_id[:100],
        order_key=(check.orderguid if check is not None else None),
        call_key=_digest(identity),
        return_key=_digest([RETURN, *identity[1:]]) if chmode == RETURN_ROLLBACK else None,
        request_hash=_digest(content),
        amounts=amounts,
        line_sums=line_sums,
    )


@dataclass(frozen=True, slots=True)
class Applied:
    check_id: str
    refund_id: str | None
    lines: tuple[ResultLine, ...]
    warnings: tuple[str, ...]


def post_transactions(
    engine: Engine,
    caller: Caller,
    call: TransactionsCall,
    *,
    source_ip: str | None,
    now: datetime,
) -> bytes:
    """TransactionsEx: all transactions of the call applied together, or none."""
    p = plan(caller, call)
    _loyalty_on(caller)
    place = f"{p.restaurant}:{p.station}"
    if p.chmode in NOTHING_TO_POST:
        log.info("farcards: nothing to post", extra={"chmode": p.chmode, "check": p.check_id})
        return render_transactions(result=0, error_code=0, err_text="", moment=now, place=place)
    if p.chmode == EDITING:
        raise Refused(
            E.UNSUPPORTED_CHMODE,
            f"{OPERATIONS[p.chmode]} is not posted",
            chmode=p.chmode,
            what="close the check and post it again",
        )
    actor = actor_for_terminal(caller.terminal, source_ip)
    lang = m.language(caller.locale)

    def work(conn: Connection) -> bytes:
        tenant_id, terminal_id = caller.link.tenant_id, caller.link.terminal_id
        known = known_reply(conn, caller, p.call_key, p.request_hash, "amounts")
        if known is not None:
            return known
        if p.chmode == SALE:
            applied = _sale(conn, caller, p, actor, lang, now)
        elif p.chmode == RETURN_ROLLBACK:
            applied = _take_back(conn, caller, p, actor, lang, now)
        else:
            applied = _refund(conn, caller, p, actor, lang, now)
        reply = render_transactions(
            result=0,
            error_code=0,
            err_text="; ".join(applied.warnings),
            moment=now,
            place=place,
            lines=applied.lines,
        )
        conn.execute(
            farcards_calls.insert(),
            {
                "tenant_id": tenant_id,
                "terminal_id": terminal_id,
                "call_key": p.call_key,
                "request_hash": p.request_hash,
                "chmode": p.chmode,
                "order_key": p.order_key,
                "card_number": p.card,
                "check_id": applied.check_id,
                "refund_id": applied.refund_id,
                "response": reply.decode(),
                "created_at": now,
            },
        )
        return reply

    return run_transaction(engine, work)


def _program(conn: Connection, caller: Caller, number: str) -> Program:
    card = find_card(conn, caller.link.tenant_id, number=number)
    return cached_program(conn, caller.link.tenant_id, card.program_id)


def _sub_account(conn: Connection, caller: Caller, program: Program) -> int | None:
    return sub_accounts(conn, caller.link.tenant_id).get(program.unit.code)


def _sale(
    conn: Connection, caller: Caller, p: Plan, actor: Actor, lang: str, now: datetime
) -> Applied:
    program = _program(conn, caller, p.card)
    exponent = program.currency_exponent
    if any(s < 0 for s in p.line_sums):
        raise InvalidInput(LoyaltyErrorCode.INVALID_CHECK, "a sale's lines are not negative")
    lines = [to_minor(s, exponent) for s in p.line_sums if s > 0]
    if not lines:
        total = sum(to_minor(p.amounts.get(kind, 0), exponent) for kind in (0, 1, 3))
        lines = [total] if total > 0 else []
    paid_with_points = to_minor(p.amounts.get(0, 0), exponent)
    points = program.points_for_money(paid_with_points)
    if program.money_for_points(points) != paid_with_points:
        raise InvalidInput(
            E.NOT_WHOLE_POINTS,
            "not a whole number of points",
            amount=_shown(p.amounts.get(0, 0)),
        )
    try:
        check = pos.commit_check(
            conn,
            tenant_id=caller.link.tenant_id,
            terminal_id=caller.link.terminal_id,
            check_id=p.check_id,
            card_number=p.card,
            lines=lines,
            points_minor=points,
            actor=actor,
            now=now,
        )
    except Refused as error:
        # The cashier reads the limits as money, the way r_keeper shows the bill.
        for name in ("cap", "available"):
            if f"{name}_minor" in error.params:
                worth = program.money_for_points(error.params[f"{name}_minor"])
                error.params[name] = _shown(to_kopecks(worth, exponent))
        raise
    warnings = []
    ours = {
        1: to_kopecks(check.discount_minor, exponent),
        2: to_kopecks(program.money_for_points(check.accrued_minor), exponent),
        3: to_kopecks(check.money_minor, exponent),
    }
    for kind, what in ((1, "discount"), (2, "bonus"), (3, "money")):
        if kind in p.amounts and p.amounts[kind] != ours[kind]:
            warnings.append(
                m.mismatch_text(lang, what, _shown(p.amounts[kind]), _shown(ours[kind]))
            )
    sub = _sub_account(conn, caller, program)
    spent = to_kopecks(program.money_for_points(check.spent_minor), exponent)
    result = []
    if spent:
        result.append(
            ResultLine(
                f"{p.check_id}:spend",
                p.card,
                1,
                sub,
                -spent,
                m.spent_text(lang, _shown(spent)),
                "BonusSpent=1",
            )
        )
    if ours[2]:
        result.append(
            ResultLine(
                f"{p.check_id}:accrual",
                p.card,
                len(result) + 1,
                sub,
                ours[2],
                m.accrued_text(lang, _shown(ours[2])),
                "BonusAdded=1",
            )
        )
    return Applied(check.check_id, None, tuple(result), tuple(warnings))


def _original(conn: Connection, caller: Caller, p: Plan) -> pos.CommittedCheck:
    """The sale a cancellation or a return is about: the same check, or (a return) the
    sale of the same order with the same card."""
    tenant_id, terminal_id = caller.link.tenant_id, caller.link.terminal_id
    try:
        check = pos.get_check(conn, tenant_id, terminal_id, p.check_id)
    except NotFound:
        if p.chmode != RETURN:
            raise
        sale = None
        if p.order_key:
            sale = conn.execute(
                select(farcards_calls.c.check_id)
                .where(
                    farcards_calls.c.tenant_id == tenant_id,
                    farcards_calls.c.terminal_id == terminal_id,
                    farcards_calls.c.order_key == p.order_key,
                    farcards_calls.c.chmode == SALE,
                    farcards_calls.c.card_number == p.card,
                )
                .order_by(farcards_calls.c.id.desc())
                .limit(1)
            ).scalar()
        if sale is None:
            raise NotFound(E.RETURN_UNMATCHED, "the returned check is not known") from None
        check = pos.get_check(conn, tenant_id, terminal_id, sale)
    if check.card_number != p.card:
        raise Refused(E.CARD_MISMATCH, "the check was posted with another card")
    return check


def _refund(
    conn: Connection, caller: Caller, p: Plan, actor: Actor, lang: str, now: datetime
) -> Applied:
    check = _original(conn, caller, p)
    program = _program(conn, caller, p.card)
    exponent = program.currency_exponent
    if p.chmode == SALE_ROLLBACK:
        refund_id, amount = "rk-cancel", None
    else:
        refund_id = _return_id(conn, check, p)
        returned = [abs(s) for s in p.line_sums if s]
        kopecks = sum(returned) if returned else sum(p.amounts.get(k, 0) for k in (0, 1, 3))
        amount = to_minor(kopecks, exponent)
    done = pos.refund_check(
        conn,
        tenant_id=caller.link.tenant_id,
        terminal_id=caller.link.terminal_id,
        check_id=check.check_id,
        refund_id=refund_id,
        amount_minor=amount,
        actor=actor,
        now=now,
    )
    sub = _sub_account(conn, caller, program)
    back = to_kopecks(program.money_for_points(done.points_returned_minor), exponent)
    taken = to_kopecks(program.money_for_points(done.accrual_reversed_minor), exponent)
    result = []
    if back:
        result.append(
            ResultLine(
                f"{check.check_id}:{refund_id}:return",
                p.card,
                1,
                sub,
                back,
                m.spent_text(lang, _shown(-back)),
                "BonusReturned=1",
            )
        )
    if taken:
        result.append(
            ResultLine(
                f"{check.check_id}:{refund_id}:reverse",
                p.card,
                len(result) + 1,
                sub,
                -taken,
                m.accrued_text(lang, _shown(-taken)),
                "BonusRemoved=1",
            )
        )
    return Applied(check.check_id, refund_id, tuple(result), ())


def _return_id(conn: Connection, check: pos.CommittedCheck, p: Plan) -> str:
    """The refund id of a return: its call's key, numbered on when an earlier return of
    the same identity was taken back (a refund id is never used twice)."""
    base = f"rk-return:{p.call_key[:40]}"
    taken = conn.execute(
        select(func.count())
        .select_from(pos_refunds)
        .where(
            pos_refunds.c.pos_check_id == check.id,
            pos_refunds.c.refund_id.like(f"{base}%"),
        )
    ).scalar_one()
    return base if not taken else f"{base}:{taken + 1}"


def _take_back(
    conn: Connection, caller: Caller, p: Plan, actor: Actor, lang: str, now: datetime
) -> Applied:
    """A return rollback: the refund its return made, taken back."""
    tenant_id, terminal_id = caller.link.tenant_id, caller.link.terminal_id
    assert p.return_key is not None
    returned = conn.execute(
        select(farcards_calls.c.id, farcards_calls.c.check_id, farcards_calls.c.refund_id).where(
            farcards_calls.c.tenant_id == tenant_id,
            farcards_calls.c.terminal_id == terminal_id,
            farcards_calls.c.call_key == p.return_key,
        )
    ).first()
    if returned is None or returned.refund_id is None:
        raise NotFound(E.RETURN_UNMATCHED, "the return rolled back was never posted here")
    check = pos.get_check(conn, tenant_id, terminal_id, returned.check_id)
    if check.card_number != p.card:
        raise Refused(E.CARD_MISMATCH, "the check was posted with another card")
    done = pos.cancel_refund(
        conn,
        tenant_id=tenant_id,
        terminal_id=terminal_id,
        check_id=check.check_id,
        refund_id=returned.refund_id,
        actor=actor,
        now=now,
    )
    # The return is no longer what that key answers: the same return again applies anew.
    conn.execute(
        update(farcards_calls)
        .where(farcards_calls.c.id == returned.id)
        .values(call_key=_digest([p.return_key, "taken back", p.call_key]))
    )
    program = _program(conn, caller, p.card)
    exponent = program.currency_exponent
    sub = _sub_account(conn, caller, program)
    back = to_kopecks(program.money_for_points(done.points_returned_minor), exponent)
    given = to_kopecks(program.money_for_points(done.accrual_reversed_minor), exponent)
    result = []
    if back:
        result.append(
            ResultLine(
                f"{check.check_id}:{done.refund_id}:cancel:return",
                p.card,
                1,
                sub,
                -back,
                m.spent_text(lang, _shown(back)),
                "BonusReturned=0",
            )
        )
    if given:
        result.append(
            ResultLine(
                f"{check.check_id}:{done.refund_id}:cancel:accrual",
                p.card,
                len(result) + 1,
                sub,
                given,
                m.accrued_text(lang, _shown(given)),
                "BonusAdded=1",
            )
        )
    return Applied(check.check_id, done.refund_id, tuple(result), ())


def transactions_failure(error: KopilkaError, locale: str | None, now: datetime) -> bytes:
    """Result 1 and the reason for the cashier (FarCards 6.04+ shows ``err_text``)."""
    return render_transactions(
        result=1,
        error_code=number_for(error.code),
        err_text=m.error_text(error, m.language(locale)),
        moment=now,
        place="",
    )
