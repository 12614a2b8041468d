"""Stable codes of the payment providers' own refusals (the settings screen and the
sandbox's card page show them; a provider's answers travel as ``ProviderError``).

===========================  ============  ===========================================
code                         class         when
===========================  ============  ===========================================
invalid_provider_config      InvalidInput  a provider's setting out of its rules (the
                                           ``field`` parameter names it)
unknown_provider             InvalidInput  no adapter of that name
invalid_card_number          InvalidInput  the sandbox's card form: not 12 to 19
                                           digits, or the check digit is wrong (Luhn)
not_a_test_card              InvalidInput  a valid number that is not one of the
                                           sandbox's test cards
invalid_card_expiry          InvalidInput  not MM/YY, or a month gone by
invalid_card_cvc             InvalidInput  not 3 or 4 digits
sandbox_payment_not_found    NotFound      no such sandbox payment
sandbox_payment_state        Refused       paying a canceled payment, canceling a paid
                                           one
===========================  ============  ===========================================
"""

from __future__ import annotations

from enum import StrEnum


class ProviderErrorCode(StrEnum):
    INVALID_PROVIDER_CONFIG = "invalid_provider_config"
    UNKNOWN_PROVIDER = "unknown_provider"
    INVALID_CARD_NUMBER = "invalid_card_number"
    NOT_A_TEST_CARD = "not_a_test_card"
    INVALID_CARD_EXPIRY = "invalid_card_expiry"
    INVALID_CARD_CVC = "invalid_card_cvc"
    SANDBOX_PAYMENT_NOT_FOUND = "sandbox_payment_not_found"
    SANDBOX_PAYMENT_STATE = "sandbox_payment_state"
