"""The nightly routine's clock in `kopilka serve`: once a day per tenant, after the hour
in the tenant's own time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from kopilka.core.clock import utcnow
from kopilka.loyalty.billing import set_loyalty_enabled
from kopilka.loyalty.scheduler import due_tenants, tick

from .conftest import Shop


def test_runs_once_a_day_after_its_hour(shop: Shop) -> None:
    only = [shop.tenant.id]
    local = datetime.now(ZoneInfo(shop.tenant.timezone))
    if local.hour < 23:
        # Before the hour in the tenant's zone: not yet.
        assert due_tenants(shop.engine, 23, tenant_ids=only) == []
    # From midnight on (hour 0) it is due, runs once, and is not due again that day.
    assert [t.id for t in due_tenants(shop.engine, 0, tenant_ids=only)] == only
    assert tick(shop.engine, 0, tenant_ids=only) == only
    assert due_tenants(shop.engine, 0, now=utcnow(), tenant_ids=only) == []
    assert tick(shop.engine, 0, tenant_ids=only) == []


def test_a_tenant_with_loyalty_switched_off_is_never_due(shop: Shop) -> None:
    only = [shop.tenant.id]
    shop.tx(
        lambda c: set_loyalty_enabled(c, tenant_id=shop.tenant.id, enabled=False, actor=shop.actor)
    )
    assert due_tenants(shop.engine, 0, tenant_ids=only) == []
    assert tick(shop.engine, 0, tenant_ids=only) == []
    shop.tx(
        lambda c: set_loyalty_enabled(c, tenant_id=shop.tenant.id, enabled=True, actor=shop.actor)
    )
    assert [t.id for t in due_tenants(shop.engine, 0, tenant_ids=only)] == only


def test_the_server_runs_the_scheduler_only_when_asked(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import warnings

    from starlette.exceptions import StarletteDeprecationWarning

    from kopilka.api.app import create_app
    from kopilka.core.settings import get_settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient

    url = shop.engine.url.render_as_string(hide_password=False)

    def running() -> bool:
        return any(t.name == "kopilka-nightly" and t.is_alive() for t in threading.enumerate())

    for enabled in (False, True):
        monkeypatch.setenv("KOPILKA_NIGHTLY_SCHEDULER", "true" if enabled else "false")
        get_settings.cache_clear()
        try:
            app = create_app(url)
            with TestClient(app):
                assert running() is enabled
            assert not running(), "stopped with the server"
            app.state.engine.dispose()
        finally:
            get_settings.cache_clear()
