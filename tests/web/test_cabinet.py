"""The subscriber's self-service cabinet over HTTP (SPEC S-7, seed 003): signing in with
the account number (bad, throttled, another tenant's subscriber), its sessions apart from
the staff's, CSRF, the overview and its history, "Activate promised payment" with every
reason a rule refuses it shown in Russian, a double click that takes one, the change of
password, and names that stay text.

The internet provider is ``tests.subscribers.conftest``'s, built in the web test's own
tenant; what happened before today is written through the domain at named moments
(``now=``), and the cabinet itself acts at the real moment."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.errors import Refused
from kopilka.ledger.posting import run_transaction
from kopilka.subscribers import billing, cabinet, promised
from kopilka.subscribers.common import open_system_accounts
from kopilka.subscribers.error_codes import SubscriberErrorCode as E
from kopilka.subscribers.registry import SubscriberView
from kopilka.subscribers.schema import sub_promised_payments, sub_sessions
from kopilka.subscribers.tariffs import ServiceView, TariffView, update_settings
from kopilka.tenancy.actions import Tenant, create_tenant
from kopilka.tenancy.schema import login_failures
from tests.subscribers.conftest import Isp
from tests.subscribers.conftest import isp as isp  # the fixture, in this tenant
from tests.web.conftest import Visitor, Web, csrf_of, text_of

SECRET = "subscriber secret 1"
ACTOR = Actor.cli("tests")
NBSP = "\u00a0"


@pytest.fixture
def tenant(web: Web) -> Tenant:
    """The provider (``isp``) is built in the tenant whose cabinet is opened."""
    return web.tenant


def home(slug: str) -> str:
    return f"/cabinet/{slug}"


def plain(html: str) -> str:
    """What a person reads, with no-break spaces as spaces."""
    return text_of(html).replace(NBSP, " ").replace("\u202f", " ")


def browser(web: Web) -> Visitor:
    """A visitor who sees each redirect (rather than following it)."""
    visitor = web.visitor()
    visitor.client.follow_redirects = False
    return visitor


def try_sign_in(
    web: Web, account_no: str, password: str = SECRET, *, slug: str | None = None
) -> tuple[Visitor, httpx.Response]:
    visitor = browser(web)
    url = home(slug or web.tenant.slug) + "/login"
    form = visitor.get(url)
    assert form.status_code == 200, form.text[:300]
    answer = visitor.client.post(
        url,
        data={"csrf_token": csrf_of(form.text), "account_no": account_no, "password": password},
        follow_redirects=False,
    )
    return visitor, answer


def sign_in(web: Web, sub: SubscriberView, password: str = SECRET) -> Visitor:
    visitor, answer = try_sign_in(web, sub.account_no, password)
    assert answer.status_code == 303, plain(answer.text)[:500]
    assert answer.headers["location"] == home(web.tenant.slug)
    page = visitor.get(home(web.tenant.slug))
    assert page.status_code == 200
    visitor.csrf = csrf_of(page.text)
    return visitor


def active(
    isp: Isp, tariff: TariffView, *, money: int = 1000, days_ago: int = 1, **kw: Any
) -> SubscriberView:
    """A subscriber activated ``days_ago`` with ``money`` paid in a minute later (no
    charging routine runs here, so nothing falls due after it unless a test says so)."""
    sub = isp.subscriber(tariff, password=SECRET, **kw)
    started = utcnow() - timedelta(days=days_ago)
    isp.activate(sub, started)
    if money:
        isp.top_up(sub, money, started + timedelta(minutes=1))
    return isp.get(sub)


def offer_service(isp: Isp, **kw: Any) -> ServiceView:
    kw.setdefault("self_service", True)
    return isp.service(**kw)


def take_form(html: str, service: ServiceView) -> dict[str, str]:
    match = re.search(rf'<form[^>]*data-testid="take-{service.id}".*?</form>', html, re.S)
    assert match, f"no button for service {service.id}"
    return dict(re.findall(r'name="([^"]+)" value="([^"]*)"', match.group(0)))


def promised_count(engine: Engine, sub: SubscriberView) -> int:
    query = select(func.count()).where(sub_promised_payments.c.subscriber_id == sub.id)
    with engine.connect() as conn:
        return int(conn.execute(query.select_from(sub_promised_payments)).scalar_one())


def other_isp(engine: Engine, name: str = "Другой провайдер") -> Isp:
    with engine.begin() as conn:
        tenant = create_tenant(conn, slug=f"o-{uuid.uuid4().hex[:10]}", name=name, actor=ACTOR)
        open_system_accounts(conn, tenant.id, ACTOR)
    return Isp(engine, tenant, ACTOR)


# --------------------------------------------------------------------------- signing in


def test_a_subscriber_signs_in_and_sees_the_account(web: Web, isp: Isp) -> None:
    tariff = isp.tariff(name="Домашний 100", price=600, method="monthly")
    sub = active(isp, tariff, money=1000, days_ago=3, full_name="Пётр Абонентов")
    visitor = sign_in(web, sub)
    page = visitor.get(home(web.tenant.slug))
    text = plain(page.text)
    assert "Личный кабинет" in text and web.tenant.name in text
    assert "Пётр Абонентов" in text and f"лицевой счёт № {sub.account_no}" in text
    assert "Остаток 400,00 ₽" in text
    assert "Порог отключения сейчас 0,00 ₽" in text
    assert "Состояние Активен" in text
    assert "Ваш тариф Домашний 100 · 600,00 ₽ в месяц" in text
    assert "Следующее списание по тарифу" in text
    assert "Поступила оплата 1 000,00 ₽" in text and "-600,00 ₽" in text
    assert "Тариф за " in text and "Статус изменён: Активен" in text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_the_session_cookie_is_the_cabinets_own(web: Web, isp: Isp) -> None:
    sub = active(isp, isp.tariff(price=100))
    _, answer = try_sign_in(web, sub.account_no)
    assert answer.status_code == 303
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("kopilka_cabinet=")
    )
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert f"path={home(web.tenant.slug)}" in attributes
    assert "httponly" in attributes and "samesite=lax" in attributes
    assert "secure" not in attributes
    assert "max-age=43200" in attributes  # 12 hours
    secret = cookie.split(";")[0].split("=", 1)[1]
    with web.engine.connect() as conn:
        stored = conn.execute(select(sub_sessions.c.token_hash)).scalars().all()
    assert secret not in stored and cabinet._digest(secret) in stored

    secure = browser(web)
    secure.client.base_url = httpx.URL("https://testserver")
    form = secure.get(home(web.tenant.slug) + "/login")
    answer = secure.client.post(
        home(web.tenant.slug) + "/login",
        data={"csrf_token": csrf_of(form.text), "account_no": sub.account_no, "password": SECRET},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert "secure" in answer.headers["set-cookie"].lower()


def test_a_wrong_password_and_an_unknown_account_are_refused_alike(web: Web, isp: Isp) -> None:
    sub = active(isp, isp.tariff(price=100))
    for account_no, password in ((sub.account_no, "wrong password"), ("NOBODY-1", SECRET)):
        visitor, answer = try_sign_in(web, account_no, password)
        assert answer.status_code == 401
        assert "Неверный номер лицевого счёта или пароль." in plain(answer.text)
        assert "kopilka_cabinet=" not in answer.headers.get("set-cookie", "")
        assert visitor.get(home(web.tenant.slug)).status_code == 303
    # Lower case and spaces around the number are the same account.
    visitor, answer = try_sign_in(web, f"  {sub.account_no.lower()} ")
    assert answer.status_code == 303


def test_guessing_is_throttled_apart_from_the_staff(web: Web, isp: Isp) -> None:
    sub = active(isp, isp.tariff(price=100))
    for _ in range(5):
        assert try_sign_in(web, sub.account_no, "guess guess")[1].status_code == 401
    _, answer = try_sign_in(web, sub.account_no)  # even the right password now
    assert answer.status_code == 429
    assert "Слишком много неудачных попыток" in plain(answer.text)
    with web.engine.connect() as conn:
        names = set(
            conn.execute(
                select(login_failures.c.login).where(
                    login_failures.c.tenant_slug == web.tenant.slug
                )
            ).scalars()
        )
    assert names == {f"subscriber:{sub.account_no.lower()}"}
    web.sign_in("owner")  # the staff's sign-in is not throttled by it


def test_another_tenants_subscriber_cannot_sign_in_here(web: Web, isp: Isp) -> None:
    tariff = isp.tariff(price=100)
    mine = active(isp, tariff)
    elsewhere = other_isp(web.engine)
    theirs = active(elsewhere, elsewhere.tariff(price=100), account_no="B-777")
    assert try_sign_in(web, theirs.account_no)[1].status_code == 401
    # Their session is nobody's here, even if the cookie is carried over by hand.
    there, answer = try_sign_in(web, theirs.account_no, slug=elsewhere.tenant.slug)
    assert answer.status_code == 303
    secret = there.client.cookies.get("kopilka_cabinet", path=home(elsewhere.tenant.slug))
    here = browser(web)
    here.client.cookies.set("kopilka_cabinet", secret, path=home(web.tenant.slug))
    assert here.get(home(web.tenant.slug)).status_code == 303
    assert sign_in(web, mine).get(home(elsewhere.tenant.slug)).status_code == 303


def test_staff_and_cabinet_sessions_open_nothing_of_each_other(web: Web, isp: Isp) -> None:
    sub = active(isp, isp.tariff(price=100))
    staff = web.sign_in("owner")
    staff.client.follow_redirects = False
    answer = staff.get(home(web.tenant.slug))
    assert answer.status_code == 303
    assert answer.headers["location"] == home(web.tenant.slug) + "/login"
    subscriber = sign_in(web, sub)
    answer = subscriber.get("/")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    # Swapped by hand, each secret is unknown to the other table.
    staff_secret = staff.client.cookies.get("kopilka_session")
    cabinet_secret = subscriber.client.cookies.get("kopilka_cabinet")
    assert staff_secret and cabinet_secret
    forged = browser(web)
    forged.client.cookies.set("kopilka_cabinet", staff_secret, path=home(web.tenant.slug))
    forged.client.cookies.set("kopilka_session", cabinet_secret)
    assert forged.get(home(web.tenant.slug)).status_code == 303
    assert forged.get("/").status_code == 303


def test_sign_out_ends_the_session_and_an_old_one_expires(web: Web, isp: Isp) -> None:
    sub = active(isp, isp.tariff(price=100))
    visitor = sign_in(web, sub)
    secret = visitor.client.cookies.get("kopilka_cabinet")
    answer = visitor.post(home(web.tenant.slug) + "/logout")
    assert answer.status_code == 303
    assert answer.headers["location"] == home(web.tenant.slug) + "/login"
    again = browser(web)
    again.client.cookies.set("kopilka_cabinet", secret, path=home(web.tenant.slug))
    assert again.get(home(web.tenant.slug)).status_code == 303

    past = utcnow() - cabinet.SESSION_TTL - timedelta(minutes=1)
    old = run_transaction(
        web.engine,
        lambda c: cabinet.open_session(
            c, tenant_id=web.tenant.id, subscriber=sub, actor=ACTOR, now=past
        ),
    )
    with web.engine.connect() as conn:
        assert cabinet.resolve_session(conn, tenant_id=web.tenant.id, secret=old) is None
        assert (
            cabinet.resolve_session(
                conn, tenant_id=web.tenant.id, secret=old, now=past + timedelta(hours=11)
            )
            is not None
        )


def test_an_unknown_cabinet_is_not_found(web: Web) -> None:
    assert browser(web).get("/cabinet/no-such-provider").status_code == 404
    assert browser(web).get(home(web.tenant.slug.upper()) + "/login").status_code == 404


# --------------------------------------------------------------------------- CSRF


def test_every_post_needs_the_csrf_token(web: Web, isp: Isp) -> None:
    tariff = isp.tariff(price=600)
    service = offer_service(isp, amount=600, days=5)
    sub = active(isp, tariff)
    visitor = sign_in(web, sub)
    page = visitor.get(home(web.tenant.slug) + "/promised")
    fields = take_form(page.text, service)
    fields.pop("csrf_token")
    url = home(web.tenant.slug)
    answer = visitor.client.post(url + "/promised", data=fields, follow_redirects=False)
    assert answer.status_code == 403 and "Форма устарела" in plain(answer.text)
    for forged in ("forged", "токен"):
        answer = visitor.client.post(
            url + "/promised", data={**fields, "csrf_token": forged}, follow_redirects=False
        )
        assert answer.status_code == 403
    assert promised_count(web.engine, sub) == 0
    for path, data in (
        ("/logout", {}),
        ("/password", {"old_password": SECRET, "new_password": "x" * 9}),
        ("/language", {"locale": "en"}),
    ):
        answer = visitor.client.post(url + path, data=data, follow_redirects=False)
        assert answer.status_code == 403, path
    assert visitor.get(url).status_code == 200  # still signed in, still Russian
    assert "Личный кабинет" in plain(visitor.get(url).text)
    # The sign-in form's token is a double-submit cookie: without it, refused.
    stranger = browser(web)
    answer = stranger.client.post(
        url + "/login",
        data={"csrf_token": "x", "account_no": sub.account_no, "password": SECRET},
        follow_redirects=False,
    )
    assert answer.status_code == 403


# --------------------------------------------------------------------------- promised payment


def test_taking_a_promised_payment_raises_the_threshold_and_a_double_click_takes_one(
    web: Web, isp: Isp
) -> None:
    tariff = isp.tariff(price=600, method="monthly")
    service = offer_service(
        isp, amount=700, days=5, connection_price=50, commission_bp=100, name="Доверие 700"
    )
    sub = active(isp, tariff, money=0, days_ago=2)
    assert sub.status == "blocked"
    visitor = sign_in(web, sub)
    url = home(web.tenant.slug)
    overview = plain(visitor.get(url).text)
    assert "Заблокирован за неуплату" in overview and "Услуга заблокирована за долг" in overview
    page = visitor.get(url + "/promised")
    text = plain(page.text)
    assert "Доверие 700" in text
    assert "Сумма 700,00 ₽" in text
    assert "Стоимость подключения, списывается сразу 50,00 ₽" in text
    assert "7,00 ₽ за каждый день пользования, не более 35,00 ₽" in text
    assert "Действует до" in text and "Активировать обещанный платёж" in text
    fields = take_form(page.text, service)
    first = visitor.client.post(url + "/promised", data=fields, follow_redirects=False)
    second = visitor.client.post(url + "/promised", data=fields, follow_redirects=False)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert promised_count(web.engine, sub) == 1
    after = isp.get(sub)
    assert after.status == "active" and after.threshold_minor == -700_00
    assert after.balance_minor == -650_00  # the tariff and the connection price
    done = plain(visitor.get(first.headers["location"]).text)
    assert "Обещанный платёж активирован." in done
    assert "Порог отключения теперь -700,00 ₽, до " in done
    assert "Доверие 700" in done
    overview = plain(visitor.get(url).text)
    assert "Состояние Активен" in overview
    assert "Действует обещанный платёж на 700,00 ₽ до " in overview
    assert "Обещанный платёж на 700,00 ₽ до " in overview  # in the history
    assert "Обещанный платёж: стоимость подключения" in overview
    # The page shown again refuses another, with the reason, and has no button.
    again = visitor.get(url + "/promised")
    assert "уже действует обещанный платёж" in plain(again.text)
    assert 'data-testid="take-promised"' not in again.text
    isp.assert_clean()


def test_two_clicks_at_once_take_one(web: Web, isp: Isp) -> None:
    tariff = isp.tariff(price=100, method="monthly")
    service = offer_service(isp, amount=600, days=5)
    sub = active(isp, tariff)
    visitor = sign_in(web, sub)
    url = home(web.tenant.slug)
    fields = take_form(visitor.get(url + "/promised").text, service)
    twin = browser(web)
    twin.client.cookies.set(
        "kopilka_cabinet", visitor.client.cookies.get("kopilka_cabinet"), path=url
    )

    def click(who: Visitor) -> httpx.Response:
        return who.client.post(url + "/promised", data=fields, follow_redirects=False)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(click, (visitor, twin)))
    assert [a.status_code for a in answers] == [303, 303], [plain(a.text)[:300] for a in answers]
    assert answers[0].headers["location"] == answers[1].headers["location"]
    assert promised_count(web.engine, sub) == 1


def test_a_click_refused_only_because_its_twin_won_answers_as_the_twin(
    web: Web, isp: Isp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race two clicks may run on PostgreSQL: the second passes the operation id
    check before the first commits, waits for the subscriber's lock, then finds one in
    force. It answers with the first's promised payment, not with the refusal."""
    sub = active(isp, isp.tariff(price=100))
    service = offer_service(isp)
    operation = cabinet.operation_id(sub.id, "a" * 32)
    first = isp.take(sub, service, utcnow(), operation_id=operation, source="cabinet")

    def refused(conn: Any, **kw: Any) -> Any:
        raise Refused(E.PP_ALREADY_ACTIVE, "a promised payment is active already")

    monkeypatch.setattr(promised, "take", refused)
    answer = cabinet.take_promised(
        web.engine,
        tenant_id=isp.t,
        subscriber_id=sub.id,
        service_id=service.id,
        operation=operation,
        actor=ACTOR,
    )
    assert answer.id == first.id and answer.replayed
    with pytest.raises(Refused):  # a refusal of its own stays one
        cabinet.take_promised(
            web.engine,
            tenant_id=isp.t,
            subscriber_id=sub.id,
            service_id=service.id,
            operation=cabinet.operation_id(sub.id, "b" * 32),
            actor=ACTOR,
        )


def _ended_one_this_month(isp: Isp, sub: SubscriberView, service: ServiceView) -> None:
    """A promised payment taken a moment ago and repaid at once (so none is in force)."""
    now = utcnow()
    isp.take(sub, service, now - timedelta(seconds=2))
    isp.top_up(sub, 1, now - timedelta(seconds=1))


def _setup(isp: Isp, case: str) -> tuple[SubscriberView, ServiceView]:
    """A subscriber and a service the cabinet refuses for ``case``."""
    now = utcnow()
    if case == "pp_subscriber_disabled":
        tariff = isp.tariff(price=100)
        sub = active(isp, tariff)
        isp.tx(lambda c: billing.disable(c, tenant_id=isp.t, subscriber_id=sub.id, actor=isp.actor))
        return sub, offer_service(isp)
    if case == "pp_not_activated":
        return isp.subscriber(isp.tariff(price=100), password=SECRET), offer_service(isp)
    if case == "pp_service_inactive":
        return active(isp, isp.tariff(price=100)), offer_service(isp, is_active=False)
    if case == "pp_not_self_service":
        return active(isp, isp.tariff(price=100)), offer_service(isp, self_service=False)
    if case == "pp_tariff_not_allowed":
        other = isp.tariff(price=100)
        return active(isp, isp.tariff(price=100)), offer_service(isp, tariff_ids=(other.id,))
    if case == "pp_already_active":
        sub, service = active(isp, isp.tariff(price=100)), offer_service(isp)
        isp.take(sub, service, now - timedelta(seconds=1))
        return sub, service
    if case == "pp_only_when_blocked":
        isp.tx(
            lambda c: update_settings(
                c, tenant_id=isp.t, pp_only_when_blocked=True, actor=isp.actor
            )
        )
        return active(isp, isp.tariff(price=100)), offer_service(isp)
    if case == "pp_amount_below_price":
        return active(isp, isp.tariff(price=600)), offer_service(isp, amount=500)
    if case == "pp_not_needed":
        return active(isp, isp.tariff(price=100)), offer_service(isp, amount=0)
    if case == "pp_rule_no_topup":
        sub = active(isp, isp.tariff(price=100, pp_requires_topup=True), days_ago=60)
        service = offer_service(isp, days=1)
        isp.take(sub, service, now - timedelta(days=40))
        isp.run(now)  # its day is over: it ended
        return sub, service
    if case == "pp_rule_once_a_month":
        sub, service = active(isp, isp.tariff(price=100, pp_once_a_month=True)), offer_service(isp)
        _ended_one_this_month(isp, sub, service)
        return sub, service
    if case == "pp_rule_no_recent_payment":
        tariff = isp.tariff(price=100, pp_payment_within_days=3)
        return active(isp, tariff, days_ago=10), offer_service(isp)
    if case == "pp_rule_no_recent_charge":
        tariff = isp.tariff(price=100, pp_charge_within_days=2)
        return active(isp, tariff, days_ago=10), offer_service(isp)
    if case == "pp_rule_monthly_limit":
        sub, service = active(isp, isp.tariff(price=100, pp_max_per_month=1)), offer_service(isp)
        _ended_one_this_month(isp, sub, service)
        return sub, service
    if case == "pp_rule_month_since_previous":
        sub, service = active(isp, isp.tariff(price=100)), offer_service(isp)
        _ended_one_this_month(isp, sub, service)
        return sub, service
    if case == "pp_not_enough":
        sub = active(isp, isp.tariff(price=600), money=0)
        assert sub.status == "blocked"
        return sub, offer_service(isp, amount=600, connection_price=100)
    assert case == "pp_connection_unaffordable", case
    sub = active(isp, isp.tariff(price=100), money=100)
    return sub, offer_service(isp, amount=600, connection_price=1000)


# Each refusal, and whether the page shows it on the service (True) or only when the
# form is sent (False: the service is not offered, or only taking it finds out).
REFUSALS = [
    ("pp_subscriber_disabled", True, "Ваш лицевой счёт отключён, поэтому обещанный платёж"),
    ("pp_not_activated", True, "Услуга ещё не подключена: обещанный платёж можно взять после"),
    ("pp_service_inactive", False, "Этот обещанный платёж больше не предоставляется."),
    ("pp_not_self_service", False, "Этот обещанный платёж нельзя подключить в личном кабинете"),
    ("pp_tariff_not_allowed", False, "Этот обещанный платёж недоступен на вашем тарифе."),
    ("pp_already_active", True, "У вас уже действует обещанный платёж; новый можно взять"),
    ("pp_only_when_blocked", True, "Обещанный платёж доступен только при блокировке услуги"),
    (
        "pp_amount_below_price",
        True,
        "Этот обещанный платёж (500,00 ₽) меньше цены вашего тарифа (600,00 ₽)",
    ),
    ("pp_not_needed", True, "Баланса хватает на следующее списание: обещанный платёж не нужен."),
    ("pp_rule_no_topup", True, "только после пополнения счёта с момента предыдущего"),
    ("pp_rule_once_a_month", True, "один обещанный платёж в календарный месяц"),
    ("pp_rule_no_recent_payment", True, "только если за последние 3 дня была оплата."),
    ("pp_rule_no_recent_charge", True, "только если за последние 2 дня со счёта были списания."),
    ("pp_rule_monthly_limit", True, "не более 1 обещанного платежа в календарный месяц"),
    ("pp_rule_month_since_previous", True, "можно взять через месяц после предыдущего: с "),
    ("pp_not_enough", True, "(600,00 ₽) не хватит, чтобы возобновить услугу: нужно 700,00 ₽."),
    ("pp_connection_unaffordable", False, "Стоимость подключения этого обещанного платежа"),
]


@pytest.mark.parametrize(("case", "on_the_page", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_refusal_is_shown_in_russian_without_a_button(
    web: Web, isp: Isp, case: str, on_the_page: bool, reason: str
) -> None:
    sub, service = _setup(isp, case)
    visitor = sign_in(web, sub)
    url = home(web.tenant.slug) + "/promised"
    page = visitor.get(url)
    assert page.status_code == 200
    before = promised_count(web.engine, sub)
    if on_the_page:
        assert reason in plain(page.text), plain(page.text)[:1500]
        assert f'data-testid="take-{service.id}"' not in page.text
        fields = {"service_id": str(service.id), "operation_id": uuid.uuid4().hex}
    elif f'data-testid="take-{service.id}"' in page.text:
        fields = take_form(page.text, service)  # only taking it finds out
    else:
        assert f'data-testid="offer-{service.id}"' not in page.text
        fields = {"service_id": str(service.id), "operation_id": uuid.uuid4().hex}
    answer = visitor.post(url, fields)
    assert answer.status_code == 422
    assert reason in plain(answer.text), plain(answer.text)[:1500]
    assert promised_count(web.engine, sub) == before
    isp.assert_clean()


def test_a_post_for_no_such_service_is_refused_in_words(web: Web, isp: Isp) -> None:
    sub = active(isp, isp.tariff(price=100))
    visitor = sign_in(web, sub)
    url = home(web.tenant.slug) + "/promised"
    for service_id in ("", "abc", "999999999"):
        answer = visitor.post(url, {"service_id": service_id, "operation_id": "x" * 16})
        assert answer.status_code == 422
        assert "Этот обещанный платёж больше не предоставляется." in plain(answer.text)
    # Another subscriber's promised payment is not shown as one's own.
    other = active(isp, isp.tariff(price=100))
    theirs = isp.take(other, offer_service(isp), utcnow() - timedelta(seconds=1))
    page = plain(visitor.get(f"{url}?taken={theirs.id}").text)
    assert "Обещанный платёж активирован." not in page


# --------------------------------------------------------------------------- the rest


def test_the_history_is_paged(web: Web, isp: Isp) -> None:
    sub = active(isp, isp.tariff(price=100), days_ago=40)
    start = utcnow() - timedelta(days=30)
    for n in range(25):
        isp.top_up(sub, 1, start + timedelta(hours=n))
    visitor = sign_in(web, sub)
    url = home(web.tenant.slug)
    first = visitor.get(url)
    rows = re.findall(r"<tr>\s*<td>", first.text)
    assert len(rows) == 20
    assert 'data-testid="history-next"' in first.text
    assert 'data-testid="history-prev"' not in first.text
    second = visitor.get(url + "?page=2")
    assert 'data-testid="history-prev"' in second.text
    assert len(re.findall(r"<tr>\s*<td>", second.text)) >= 8  # 25 top-ups, charges, statuses
    assert visitor.get(url + "?page=abc").status_code == 200
    assert visitor.get(url + "?page=99999").status_code == 200


def test_changing_the_password(web: Web, isp: Isp) -> None:
    sub = active(isp, isp.tariff(price=100))
    visitor = sign_in(web, sub)
    elsewhere = sign_in(web, sub)  # another device
    url = home(web.tenant.slug) + "/password"
    assert "Смена пароля" in plain(visitor.get(url).text)
    wrong = visitor.post(
        url,
        {"old_password": "not it", "new_password": "brand new 1", "new_password_again": "x"},
    )
    assert wrong.status_code == 422
    assert "Новый пароль введён по-разному." in plain(wrong.text)
    wrong = visitor.post(
        url,
        {
            "old_password": "not it",
            "new_password": "brand new 1",
            "new_password_again": "brand new 1",
        },
    )
    assert wrong.status_code == 422 and "Текущий пароль неверен." in plain(wrong.text)
    short = visitor.post(
        url, {"old_password": SECRET, "new_password": "short", "new_password_again": "short"}
    )
    assert short.status_code == 422
    done = visitor.post(
        url,
        {
            "old_password": SECRET,
            "new_password": "brand new 1",
            "new_password_again": "brand new 1",
        },
    )
    assert done.status_code == 303
    assert "Пароль изменён." in plain(visitor.follow(done).text)
    assert visitor.get(home(web.tenant.slug)).status_code == 200  # this session goes on
    assert elsewhere.get(home(web.tenant.slug)).status_code == 303  # the other one ended
    assert try_sign_in(web, sub.account_no, SECRET)[1].status_code == 401
    assert try_sign_in(web, sub.account_no, "brand new 1")[1].status_code == 303


def test_the_language_is_the_tenants_until_the_subscriber_switches(web: Web, isp: Isp) -> None:
    sub = active(isp, isp.tariff(price=600), money=1000, days_ago=3)
    visitor = sign_in(web, sub)
    url = home(web.tenant.slug)
    answer = visitor.post(url + "/language", {"locale": "en", "next": url + "/promised"})
    assert answer.status_code == 303 and answer.headers["location"] == url + "/promised"
    assert f"path={url}" in answer.headers["set-cookie"].lower()
    page = plain(visitor.get(url).text)
    assert "Personal account" in page and "Disconnection threshold now" in page
    assert "₽400.00" in page and "Active" in page
    # An address outside the cabinet is not followed.
    answer = visitor.post(url + "/language", {"locale": "ru", "next": "https://evil.example/"})
    assert answer.headers["location"] == url


def test_names_stay_text(web: Web) -> None:
    evil = other_isp(web.engine, name='<script>alert("isp")</script> Провайдер')
    tariff = evil.tariff(name="<i>Тариф</i>", price=100)
    evil.service(name='<img src=x onerror="alert(1)">', amount=600, days=5, self_service=True)
    sub = active(evil, tariff, full_name="<b>Иван</b> & Co")
    visitor, answer = try_sign_in(web, sub.account_no, slug=evil.tenant.slug)
    assert answer.status_code == 303
    url = home(evil.tenant.slug)
    for path in ("", "/promised", "/password", "/login"):
        html = visitor.get(url + path, follow_redirects=True).text
        assert "<script>alert" not in html and "<b>Иван" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;isp&#34;)&lt;/script&gt;" in html
    html = visitor.get(url).text
    assert "&lt;b&gt;Иван&lt;/b&gt; &amp; Co" in html and "&lt;i&gt;Тариф&lt;/i&gt;" in html
    assert "&lt;img src=x onerror=" in visitor.get(url + "/promised").text
