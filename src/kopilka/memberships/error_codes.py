"""Stable codes of the membership domain's refusals.

==============================  ============  =========================================
code                            class         when
==============================  ============  =========================================
invalid_membership_input        InvalidInput  a name, price, colour, size, date or field
                                              out of its rules
invalid_commission              InvalidInput  a commission outside 0 to 100 %
membership_type_not_found       NotFound      no such membership type
membership_type_exists          Conflict      the type's name is taken
not_sold_online                 Refused       a checkout of a type not sold online (or
                                              not permanent, or switched off)
online_sale_off                 Refused       the tenant's online sale module is off
invalid_email                   InvalidInput  not an e-mail address
order_not_found                 NotFound      no such order (or token)
payment_not_found               NotFound      a notification or return for a payment no
                                              order knows
payment_mismatch                Refused       the provider's payment is not the order's
                                              (another amount, currency or order): a
                                              tampered amount
forged_notification             Refused       a notification the provider does not vouch
                                              for
provider_unavailable            Unavailable   the payment provider did not answer
provider_refused                Refused       the provider refused a refund for good (the
                                              refund is canceled)
membership_not_found            NotFound      no such membership (number or code)
membership_state                Refused       attaching one attached or refunded, and the
                                              like
code_used                       Refused       an activation code already used to attach
group_not_found                 NotFound      no such group
group_exists                    Conflict      the group's name is taken
class_not_found                 NotFound      no such class (or not of the chosen groups)
visitor_not_found               NotFound      no such visitor
refund_too_large                Refused       more than was paid, less what was refunded
order_not_paid                  Refused       a refund of an order not paid
membership_operation_conflict   Conflict      an operation id reused with other content
too_many_checkouts              Throttled     too many checkouts begun from one address
                                              lately (429, with ``retry_after_seconds``)
==============================  ============  =========================================
"""

from __future__ import annotations

from enum import StrEnum


class MembershipErrorCode(StrEnum):
    INVALID_MEMBERSHIP_INPUT = "invalid_membership_input"
    INVALID_COMMISSION = "invalid_commission"
    MEMBERSHIP_TYPE_NOT_FOUND = "membership_type_not_found"
    MEMBERSHIP_TYPE_EXISTS = "membership_type_exists"
    NOT_SOLD_ONLINE = "not_sold_online"
    ONLINE_SALE_OFF = "online_sale_off"
    INVALID_EMAIL = "invalid_email"
    ORDER_NOT_FOUND = "order_not_found"
    PAYMENT_NOT_FOUND = "payment_not_found"
    PAYMENT_MISMATCH = "payment_mismatch"
    FORGED_NOTIFICATION = "forged_notification"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_REFUSED = "provider_refused"
    GROUP_EXISTS = "group_exists"
    MEMBERSHIP_NOT_FOUND = "membership_not_found"
    MEMBERSHIP_STATE = "membership_state"
    CODE_USED = "code_used"
    GROUP_NOT_FOUND = "group_not_found"
    CLASS_NOT_FOUND = "class_not_found"
    VISITOR_NOT_FOUND = "visitor_not_found"
    REFUND_TOO_LARGE = "refund_too_large"
    ORDER_NOT_PAID = "order_not_paid"
    MEMBERSHIP_OPERATION_CONFLICT = "membership_operation_conflict"
    TOO_MANY_CHECKOUTS = "too_many_checkouts"
