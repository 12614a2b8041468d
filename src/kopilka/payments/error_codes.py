"""Stable codes of the payments domain's refusals (what integrators match on).

Which error class carries each code (and so which HTTP status):

=========================  =============  ===============================================
code                       class          when
=========================  =============  ===============================================
invalid_payment_type       InvalidInput   a name, kind or field out of its rules
invalid_percent            InvalidInput   "pay with points at most" not 0 to 100 %
invalid_exchange_rate      InvalidInput   a rate not above zero, too precise, too large
unit_not_points            InvalidInput   a points type's unit is a currency
payment_type_not_found     NotFound       no such type in the tenant
payment_type_exists        Conflict       the name is taken in the tenant
points_type_exists         Conflict       the point unit has its points type already
payment_type_disabled      Refused        a code resolves to a switched-off type
invalid_payment_code       InvalidInput   a code not 1 to 32 visible characters, a
                                          revoked terminal
unknown_payment_code       InvalidInput   a terminal sent a code nothing maps (it is a
                                          bad value in the terminal's request, not a
                                          missing resource: 422, never 404)
payment_code_exists        Conflict       the code is mapped already (for that terminal,
                                          or tenant-wide)
payment_code_not_found     NotFound       no such mapping in the tenant
=========================  =============  ===============================================
"""

from __future__ import annotations

from enum import StrEnum


class PaymentErrorCode(StrEnum):
    INVALID_PAYMENT_TYPE = "invalid_payment_type"
    INVALID_PERCENT = "invalid_percent"
    INVALID_EXCHANGE_RATE = "invalid_exchange_rate"
    UNIT_NOT_POINTS = "unit_not_points"
    PAYMENT_TYPE_NOT_FOUND = "payment_type_not_found"
    PAYMENT_TYPE_EXISTS = "payment_type_exists"
    POINTS_TYPE_EXISTS = "points_type_exists"
    PAYMENT_TYPE_DISABLED = "payment_type_disabled"
    INVALID_PAYMENT_CODE = "invalid_payment_code"
    UNKNOWN_PAYMENT_CODE = "unknown_payment_code"
    PAYMENT_CODE_EXISTS = "payment_code_exists"
    PAYMENT_CODE_NOT_FOUND = "payment_code_not_found"
