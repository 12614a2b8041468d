"""The event types Kopilka emits (SPEC X-3), each with what it means.

A type names its subject and what happened to it, ``subject.verb_in_past``, in the Standard
Webhooks manner. The list is closed: ``emit`` writes only these, and endpoints and the
feed accept only these as filters (``unknown_event_type`` otherwise), so a typing mistake
in a filter is caught rather than silently matching nothing. A domain that starts to
emit a new type adds it here, and to docs/webhooks.md with its payload.
"""

from __future__ import annotations

from collections.abc import Iterable

from kopilka.core.errors import InvalidInput
from kopilka.events.error_codes import EventErrorCode as E

EVENT_TYPES: dict[str, str] = {
    "subscriber.activated": "a subscriber's account started working (first session or by hand)",
    "subscriber.status_changed": "a subscriber's status changed (active, blocked, disabled)",
    "promised_payment.taken": "a subscriber took a promised payment",
    "promised_payment.ended": "a promised payment ended (its days ran out, or it was repaid)",
    "membership.sold": "a membership was sold online",
    "membership.refunded": "a membership's payment was refunded",
}
MAX_TYPE = 64
assert all(len(name) <= MAX_TYPE and name.count(".") == 1 for name in EVENT_TYPES)


def check_event_type(name: object) -> str:
    """``name`` when it is one of ``EVENT_TYPES``; ``unknown_event_type`` otherwise."""
    if not isinstance(name, str) or name not in EVENT_TYPES:
        raise InvalidInput(
            E.UNKNOWN_EVENT_TYPE,
            f"{name!r} is not an event type; the types are {', '.join(EVENT_TYPES)}",
            event_type=str(name)[:MAX_TYPE],
        )
    return name


def check_event_types(names: Iterable[object]) -> list[str]:
    """The types, each checked, without repeats, in the order of ``EVENT_TYPES``."""
    if isinstance(names, str | bytes):
        # One string is not a list of types (it would be read letter by letter).
        raise InvalidInput(E.UNKNOWN_EVENT_TYPE, "event types are a list of type names")
    wanted = {check_event_type(name) for name in names}
    return [name for name in EVENT_TYPES if name in wanted]
