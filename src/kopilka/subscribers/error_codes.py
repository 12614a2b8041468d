"""Stable codes of the subscriber domain's refusals (what integrators and the cabinet
match on; the cabinet shows each in the subscriber's language).

================================  ============  ========================================
code                              class         when
================================  ============  ========================================
invalid_subscriber_input          InvalidInput  a name, number, price, day count, rule
                                                or field out of its rules
invalid_commission                InvalidInput  a commission outside 0 to 100 %
tariff_not_found                  NotFound      no such tariff in the tenant
tariff_exists                     Conflict      the tariff's name is taken
service_not_found                 NotFound      no such promised payment service
service_exists                    Conflict      the service's name is taken
subscriber_not_found              NotFound      no such subscriber
subscriber_exists                 Conflict      the account number is taken
subscriber_operation_conflict     Conflict      an operation id reused with other content
subscriber_state                  Refused       an activation, disabling or enabling the
                                                subscriber's status does not allow
pp_subscriber_disabled            Refused       a promised payment for a disabled
                                                subscriber
pp_not_activated                  Refused       … for a subscriber not activated yet
pp_service_inactive               Refused       … by a service switched off
pp_not_self_service               Refused       … ordered in the cabinet by a service
                                                the cabinet may not order
pp_tariff_not_allowed             Refused       … by a service not allowed on the
                                                subscriber's tariff
pp_already_active                 Refused       … while another one is active
pp_only_when_blocked              Refused       … while not blocked for debt, when the
                                                operator allows it only then (S-5)
pp_amount_below_price             Refused       … of a fixed amount below the tariff's
                                                price (S-3)
pp_not_needed                     Refused       … of the automatic amount when the
                                                balance covers the next charge
pp_rule_no_topup                  Refused       S-4 (a): no top-up since the previous one
pp_rule_once_a_month              Refused       S-4 (b): one taken this calendar month
pp_rule_no_recent_payment         Refused       S-4 (c): no payment in the last n days
pp_rule_no_recent_charge          Refused       S-4 (d): no non-zero charge in n days
pp_rule_monthly_limit             Refused       S-4 (e): N taken this calendar month
pp_rule_month_since_previous      Refused       no rule set: less than a month since
                                                the previous one
pp_not_enough                     Refused       a fixed amount that would not bring a
                                                blocked subscriber's service back
pp_connection_unaffordable        Refused       the connection price does not fit even
                                                under the raised threshold
================================  ============  ========================================
"""

from __future__ import annotations

from enum import StrEnum


class SubscriberErrorCode(StrEnum):
    INVALID_SUBSCRIBER_INPUT = "invalid_subscriber_input"
    INVALID_COMMISSION = "invalid_commission"
    TARIFF_NOT_FOUND = "tariff_not_found"
    TARIFF_EXISTS = "tariff_exists"
    SERVICE_NOT_FOUND = "service_not_found"
    SERVICE_EXISTS = "service_exists"
    SUBSCRIBER_NOT_FOUND = "subscriber_not_found"
    SUBSCRIBER_EXISTS = "subscriber_exists"
    SUBSCRIBER_OPERATION_CONFLICT = "subscriber_operation_conflict"
    SUBSCRIBER_STATE = "subscriber_state"
    PP_SUBSCRIBER_DISABLED = "pp_subscriber_disabled"
    PP_NOT_ACTIVATED = "pp_not_activated"
    PP_SERVICE_INACTIVE = "pp_service_inactive"
    PP_NOT_SELF_SERVICE = "pp_not_self_service"
    PP_TARIFF_NOT_ALLOWED = "pp_tariff_not_allowed"
    PP_ALREADY_ACTIVE = "pp_already_active"
    PP_ONLY_WHEN_BLOCKED = "pp_only_when_blocked"
    PP_AMOUNT_BELOW_PRICE = "pp_amount_below_price"
    PP_NOT_NEEDED = "pp_not_needed"
    PP_RULE_NO_TOPUP = "pp_rule_no_topup"
    PP_RULE_ONCE_A_MONTH = "pp_rule_once_a_month"
    PP_RULE_NO_RECENT_PAYMENT = "pp_rule_no_recent_payment"
    PP_RULE_NO_RECENT_CHARGE = "pp_rule_no_recent_charge"
    PP_RULE_MONTHLY_LIMIT = "pp_rule_monthly_limit"
    PP_RULE_MONTH_SINCE_PREVIOUS = "pp_rule_month_since_previous"
    PP_NOT_ENOUGH = "pp_not_enough"
    PP_CONNECTION_UNAFFORDABLE = "pp_connection_unaffordable"
