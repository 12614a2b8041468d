"""Stable codes of the hotel domain's refusals (what integrators match on).

=============================  =============  ==========================================
code                           class          when
=============================  =============  ==========================================
invalid_hotel_input            InvalidInput   a name, number, date, line or field out of
                                              its rules
property_not_found             NotFound       no such property in the tenant
property_exists                Conflict       the property's name is taken
room_not_found                 NotFound       no such room (or no room of that number)
room_exists                    Conflict       the number is taken in the property
guest_not_found                NotFound       no such guest (or not of this stay)
stay_not_found                 NotFound       no such stay
stay_state                     Refused        a check-in, check-out or cancellation the
                                              stay's state does not allow
room_occupied                  Refused        a check-in into a room someone is in
stay_closed                    Refused        a charge to a stay checked out or cancelled
folio_not_found                NotFound       no such folio
invoice_not_found              NotFound       no such invoice (or not on this folio)
invoice_void                   Refused        a payment or refund on a void invoice
invoice_paid                   Refused        a POS order cancelled once payments touch it
payment_not_found              NotFound       no such payment on the folio
payment_type_not_usable        Refused        a switched-off payment type, or a kind that
                                              cannot pay here (room charge, points
                                              through the plain payment form)
overpayment                    Refused        more than an invoice still owes
refund_too_large               Refused        more than the payment (less its refunds),
                                              or than the invoice holds of it
invalid_direction              InvalidInput   a refund direction not cash, card,
                                              deposit, bank transfer
folio_not_in_debt              Refused        paying with points while the guest owes
                                              nothing (seed 000)
points_above_cap               Refused        more points than may be spent (H-4)
not_room_charge                InvalidInput   a terminal's payment code that is neither
                                              a room charge nor a deposit
no_guest_in_room               Refused        room charge to a room nobody stays in
deposit_insufficient           Refused        a deposit payment above the folio's credit
hotel_operation_conflict       Conflict       an operation id reused with other content
pos_order_terminal_only        Refused        staff voiding a POS order (only its terminal
                                              cancels it, P-7)
=============================  =============  ==========================================
"""

from __future__ import annotations

from enum import StrEnum


class HotelErrorCode(StrEnum):
    INVALID_HOTEL_INPUT = "invalid_hotel_input"
    PROPERTY_NOT_FOUND = "property_not_found"
    PROPERTY_EXISTS = "property_exists"
    ROOM_NOT_FOUND = "room_not_found"
    ROOM_EXISTS = "room_exists"
    GUEST_NOT_FOUND = "guest_not_found"
    STAY_NOT_FOUND = "stay_not_found"
    STAY_STATE = "stay_state"
    ROOM_OCCUPIED = "room_occupied"
    STAY_CLOSED = "stay_closed"
    FOLIO_NOT_FOUND = "folio_not_found"
    INVOICE_NOT_FOUND = "invoice_not_found"
    INVOICE_VOID = "invoice_void"
    INVOICE_PAID = "invoice_paid"
    PAYMENT_NOT_FOUND = "payment_not_found"
    PAYMENT_TYPE_NOT_USABLE = "payment_type_not_usable"
    OVERPAYMENT = "overpayment"
    REFUND_TOO_LARGE = "refund_too_large"
    INVALID_DIRECTION = "invalid_direction"
    FOLIO_NOT_IN_DEBT = "folio_not_in_debt"
    POINTS_ABOVE_CAP = "points_above_cap"
    NOT_ROOM_CHARGE = "not_room_charge"
    NO_GUEST_IN_ROOM = "no_guest_in_room"
    DEPOSIT_INSUFFICIENT = "deposit_insufficient"
    HOTEL_OPERATION_CONFLICT = "hotel_operation_conflict"
    POS_ORDER_TERMINAL_ONLY = "pos_order_terminal_only"
