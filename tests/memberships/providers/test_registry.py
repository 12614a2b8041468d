"""The tenant's provider from its settings, and what the settings screen checks and shows."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from kopilka.core.errors import InvalidInput
from kopilka.memberships.providers import registry
from kopilka.memberships.providers.base import PaymentRequest, PaymentState
from kopilka.memberships.providers.sandbox import SandboxProvider
from kopilka.memberships.providers.stripe import StripeProvider
from kopilka.memberships.providers.yookassa import YooKassaProvider
from kopilka.tenancy.actions import Tenant
from tests.memberships.providers.conftest import PUBLIC_BASE, make_request
from tests.memberships.providers.stripe_stand_in import StripeStandIn
from tests.memberships.providers.yookassa_stand_in import YooKassaStandIn

YOOKASSA = {"shop_id": "100500", "secret_key": "test_secret"}
STRIPE = {"secret_key": "sk_test_secret", "webhook_secret": "whsec_secret"}


def test_each_provider_by_its_name(engine: Engine, tenant: Tenant) -> None:
    def build(name: str, config: dict[str, str]) -> object:
        return registry.provider_for(
            name, config, engine=engine, public_base=PUBLIC_BASE, tenant_id=tenant.id
        )

    assert isinstance(build("sandbox", registry.default_config("sandbox")), SandboxProvider)
    assert isinstance(build("yookassa", YOOKASSA), YooKassaProvider)
    assert isinstance(build("stripe", STRIPE), StripeProvider)
    with pytest.raises(InvalidInput) as refusal:
        build("paypal", {})
    assert refusal.value.code == "unknown_provider"
    with pytest.raises(InvalidInput) as refusal:
        build("yookassa", {"shop_id": "100500"})
    assert refusal.value.params["field"] == "secret_key"


def test_the_sandbox_needs_its_tenant(engine: Engine) -> None:
    with pytest.raises(TypeError, match="tenant_id"):
        registry.provider_for("sandbox", {}, engine=engine, public_base=PUBLIC_BASE)


@pytest.mark.parametrize("name", ["yookassa", "stripe"])
def test_real_providers_pay_through_the_registry(
    name: str,
    sqlite_engine: Engine,
    yookassa: YooKassaStandIn,
    stripe_api: StripeStandIn,
) -> None:
    stand_in = yookassa if name == "yookassa" else stripe_api
    provider = registry.provider_for(
        name, stand_in.config(), engine=sqlite_engine, public_base=PUBLIC_BASE
    )
    request: PaymentRequest = make_request()
    payment = provider.create_payment(request)
    stand_in.pay(payment.provider_payment_id)
    assert provider.get_payment(payment.provider_payment_id).state is PaymentState.SUCCEEDED
    assert provider.name == name


def test_settings_as_stored_and_as_shown() -> None:
    stored = registry.check_config("yookassa", {**YOOKASSA, "shop_id": " 100500 ", "api_base": ""})
    assert stored == {"shop_id": "100500", "secret_key": "test_secret"}
    assert registry.public_config("yookassa", stored) == {
        "shop_id": "100500",
        "secret_key_set": True,
    }
    assert registry.public_config("stripe", {"secret_key": "sk_x"}) == {
        "secret_key_set": True,
        "webhook_secret_set": False,
    }
    assert registry.secret_keys("sandbox") == {"secret"}
    assert registry.default_config("stripe") == {}
    with pytest.raises(InvalidInput):
        registry.check_config("stripe", {"secret_key": "sk_x"})
