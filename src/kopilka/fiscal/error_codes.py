"""Stable codes of the fiscal receipts domain's refusals (what integrators match on).

Which error class carries each code (and so which HTTP status):

==========================  =============  ==============================================
code                        class          when
==========================  =============  ==============================================
invalid_cash_register       InvalidInput   a register's name, adapter or switch out of
                                           its rules
invalid_register_setting    InvalidInput   one of a register's settings out of its rules
                                           (the ``field`` parameter names it: base_url,
                                           login, password, group_code, inn,
                                           payment_address, sno, company_email,
                                           timeout_ms)
cash_register_not_found     NotFound       no such register in the tenant
cash_register_exists        Conflict       the name is taken in the tenant
cash_register_disabled      Refused        a receipt asked on a switched-off register
invalid_receipt             InvalidInput   an operation, source or payload out of its
                                           rules (the detail says which)
receipt_sum_mismatch        InvalidInput   items, payments and total do not add up
receipt_contact_required    InvalidInput   neither an e-mail nor a phone for the
                                           receipt's electronic copy
invalid_contact             InvalidInput   an e-mail or phone that is not one
receipt_not_found           NotFound       no such receipt in the tenant
receipt_conflict            Conflict       a receipt for this source exists already,
                                           with another register, operation, contact or
                                           payload
receipt_not_retryable       Refused        a retry of a receipt that is done
==========================  =============  ==============================================

A receipt the register refuses is not an error of the request that asked for it: the
receipt is kept as ``failed`` with the register's own words in ``last_error`` and may be
retried; the payment it belongs to stands.
"""

from __future__ import annotations

from enum import StrEnum


class FiscalErrorCode(StrEnum):
    INVALID_CASH_REGISTER = "invalid_cash_register"
    INVALID_REGISTER_SETTING = "invalid_register_setting"
    CASH_REGISTER_NOT_FOUND = "cash_register_not_found"
    CASH_REGISTER_EXISTS = "cash_register_exists"
    CASH_REGISTER_DISABLED = "cash_register_disabled"
    INVALID_RECEIPT = "invalid_receipt"
    RECEIPT_SUM_MISMATCH = "receipt_sum_mismatch"
    RECEIPT_CONTACT_REQUIRED = "receipt_contact_required"
    INVALID_CONTACT = "invalid_contact"
    RECEIPT_NOT_FOUND = "receipt_not_found"
    RECEIPT_CONFLICT = "receipt_conflict"
    RECEIPT_NOT_RETRYABLE = "receipt_not_retryable"
