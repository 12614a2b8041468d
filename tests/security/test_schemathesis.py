"""Schemathesis over the whole OpenAPI document: no 5xx, no reply outside the schema.

The real app, in-process, on both databases, against the demo tenant (``kopilka demo``'s
data: cards, certificates, a hotel, subscribers, holds...). Every operation of the document
is called with the credentials it is meant for: a terminal key where only terminals may
call (the POS gateway, processing, room charge; read from each route's ``require_roles``),
else the owner's staff token. Money-moving POSTs get a fresh ``Idempotency-Key`` per case,
so cases get past that gate.

Each operation gets ``KOPILKA_SCHEMATHESIS_EXAMPLES`` cases (default 3) of valid data, as
many of invalid data and, when its path names objects (``{folio_id}``, ``{number}``...),
as many of valid data aimed at real objects of the demo tenant. Cases are reproducible
(``derandomize``) unless ``KOPILKA_SCHEMATHESIS_SEED`` asks for other ones. Every reply is
checked for a 5xx, an undocumented status, and a content type, headers or a body outside
the schema. The figures (operations, cases by status, failures, seconds) are printed in
the terminal summary.

A long run, e.g. before a release (about 3 minutes per backend for 40)::

    KOPILKA_SCHEMATHESIS_EXAMPLES=40 KOPILKA_SCHEMATHESIS_SEED=11 \
    KOPILKA_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \
        .venv/bin/python -m pytest tests/security/test_schemathesis.py
"""

from __future__ import annotations

import inspect
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine, select

from kopilka.api.app import create_app
from kopilka.api.deps import EVERYONE, TERMINAL_ROLE
from kopilka.core.actor import Actor
from kopilka.demo import DEMO_SLUG, load_demo
from kopilka.schema import metadata  # every table
from kopilka.tenancy.actions import (
    create_terminal,
    create_user,
    get_tenant_by_slug,
    issue_staff_token,
)

API = "/api/v1"
EXAMPLES = int(os.environ.get("KOPILKA_SCHEMATHESIS_EXAMPLES", "3"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# A seed of one's own instead of the reproducible derandomized run: other cases.
SEED = (
    int(os.environ["KOPILKA_SCHEMATHESIS_SEED"])
    if "KOPILKA_SCHEMATHESIS_SEED" in os.environ
    else None
)


# --------------------------------------------------------------------------- who calls


def _roles_of(dependant: Dependant) -> frozenset[str]:
    """The roles ``require_roles`` lets through anywhere in a route's dependencies."""
    allowed = frozenset(EVERYONE)
    for dep in dependant.dependencies:
        call = dep.call
        if getattr(call, "__qualname__", "") == "require_roles.<locals>.check":
            assert call is not None
            allowed &= frozenset(inspect.getclosurevars(call).nonlocals["roles"])
        allowed &= _roles_of(dep)
    return allowed


def callers(app: FastAPI) -> dict[tuple[str, str], str]:
    """(METHOD, path) of every documented operation -> "owner" or "terminal"."""
    found: dict[tuple[str, str], str] = {}
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        roles = _roles_of(route.dependant)
        assert roles, f"nobody may call {route.path}"
        caller = "owner" if "owner" in roles else TERMINAL_ROLE
        assert caller in roles, f"{route.path} is for {sorted(roles)}"
        path = route.path_format
        assert route.methods and path, route
        for method in route.methods:
            found[(method, path)] = caller
    return found


def documented_operations(app: FastAPI) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}
    return {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in methods
    }


# --------------------------------------------------------------------------- the run


@dataclass
class Found:
    operation: str
    mode: str
    status: int
    titles: tuple[str, ...]
    report: str


@dataclass
class Run:
    backend: str
    operations: set[tuple[str, str]] = field(default_factory=set)  # with >= 1 case sent
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[Found] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        by_class = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"schemathesis on {self.backend}: {len(self.operations)} operations, "
            f"{self.cases} cases ({by_class}), {len(self.failures)} failures, "
            f"{self.seconds:.1f} s"
        )

    def failure_report(self) -> str:
        seen: dict[tuple[str, tuple[str, ...]], Found] = {}
        for found in self.failures:
            seen.setdefault((found.operation, found.titles), found)
        return "\n\n".join(
            f"{f.operation} [{f.mode}] -> {f.status}: {'; '.join(f.titles)}\n{f.report}"
            for f in seen.values()
        )


@dataclass(frozen=True)
class Credentials:
    tenant_id: int
    owner: str
    terminal: str

    def headers(self, caller: str) -> dict[str, str]:
        token = self.terminal if caller == TERMINAL_ROLE else self.owner
        return {"Authorization": f"Bearer {token}"}


def demo_tenant(engine: Engine) -> Credentials:
    """The demo tenant's data, and an owner token and a terminal key of its own."""
    actor = Actor.cli("schemathesis")
    load_demo(engine, actor=actor)
    with engine.begin() as conn:
        tenant = get_tenant_by_slug(conn, DEMO_SLUG)
        owner = create_user(
            conn,
            tenant_id=tenant.id,
            login=f"fuzz-{uuid.uuid4().hex[:8]}",
            password="correct horse battery",
            role="owner",
            actor=actor,
        )
        token, _ = issue_staff_token(conn, user=owner, actor=actor)
        _, key = create_terminal(
            conn, tenant_id=tenant.id, name=f"fuzz-{uuid.uuid4().hex[:6]}", actor=actor
        )
    return Credentials(tenant.id, token, key)


# Path parameters that name the tenant's own objects: (table, column). Ids made up by
# schemathesis are almost never found; these make a third of the cases reach real rows.
KNOWN = {
    "account_id": ("accounts", "id"),
    "transfer_id": ("transfers", "id"),
    "hold_id": ("holds", "id"),
    "program_id": ("loyalty_programs", "id"),
    "payment_type_id": ("payment_types", "id"),
    "payment_code_id": ("payment_codes", "id"),
    "register_id": ("cash_registers", "id"),
    "receipt_id": ("fiscal_receipts", "id"),
    "guest_id": ("hotel_guests", "id"),
    "stay_id": ("hotel_stays", "id"),
    "folio_id": ("hotel_folios", "id"),
    "invoice_id": ("hotel_invoices", "id"),
    "tariff_id": ("sub_tariffs", "id"),
    "service_id": ("sub_pp_services", "id"),
    "subscriber_id": ("subscribers", "id"),
    "endpoint_id": ("webhook_endpoints", "id"),
    "delivery_id": ("webhook_deliveries", "id"),
    "room": ("hotel_rooms", "number"),
    "number": ("cards", "number"),
    "certificate_number": ("certificates", "number"),
}
PICKS = 3  # objects per parameter: the first, one in the middle, the last


def known_values(engine: Engine, tenant_id: int) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    with engine.connect() as conn:
        for name, (table_name, column) in KNOWN.items():
            table = metadata.tables[table_name]
            query = select(table.c[column]).where(table.c.tenant_id == tenant_id)
            values = list(conn.execute(query.order_by(table.c.id)).scalars())
            if values:
                spread = {0, len(values) // 2, len(values) - 1}
                found[name] = [values[i] for i in sorted(spread)][:PICKS]
    return found


def known_path_parameters(path: str, known: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Up to PICKS sets of real values for the path's parameters (the others generated)."""
    sets: list[dict[str, Any]] = []
    for i in range(PICKS):
        chosen: dict[str, Any] = {}
        for name in re.findall(r"{(\w+)}", path):
            source = "certificate_number" if name == "number" and "certificates" in path else name
            if source in known:
                chosen[name] = known[source][i % len(known[source])]
        if chosen and chosen not in sets:
            sets.append(chosen)
    return sets


def _hypothesis_settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        derandomize=SEED is None,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


def _exercise(
    run: Run, case_strategy: Any, label: str, mode: str, headers: Callable[[], dict]
) -> None:
    @_hypothesis_settings()
    @given(case=case_strategy)
    def one(case: Case) -> None:
        sent = headers()
        response = case.call(headers=sent)
        run.cases += 1
        run.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=sent)
        except FailureGroup as group:
            run.failures.append(
                Found(
                    label,
                    mode,
                    response.status_code,
                    tuple(sorted({failure.title for failure in group.exceptions})),
                    str(group)[:3000],
                )
            )

    if SEED is not None:
        one = seed(SEED)(one)
    try:
        one()
    except Unsatisfiable:
        # Nothing to negate: an operation without parameters has no invalid request.
        assert mode == GenerationMode.NEGATIVE.value, label


def run_schemathesis(engine: Engine, backend: str) -> Run:
    credentials = demo_tenant(engine)
    known = known_values(engine, credentials.tenant_id)
    app = create_app(engine.url.render_as_string(hide_password=False))
    try:
        who = callers(app)
        schema = schemathesis.openapi.from_asgi(f"{API}/openapi.json", app)
        run = Run(backend)
        started = time.monotonic()
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result  # the document loads as a whole
            operation = result.ok()
            key = (operation.method.upper(), operation.path)
            caller = who[key]

            def headers(caller: str = caller) -> dict[str, str]:
                return {
                    **credentials.headers(caller),
                    "Idempotency-Key": f"fuzz-{uuid.uuid4().hex}",
                }

            before = run.cases
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode)
                _exercise(run, strategy, operation.label, mode.value, headers)
            real = known_path_parameters(operation.path, known)
            if real:
                strategy = st.one_of(*(operation.as_strategy(path_parameters=p) for p in real))
                _exercise(run, strategy, operation.label, "known ids", headers)
            if run.cases > before:
                run.operations.add(key)
        run.seconds = time.monotonic() - started
        return run
    finally:
        app.state.engine.dispose()


_runs: dict[str, Run] = {}


class _Summary:
    """Prints each backend's figures in the terminal summary, even when all passed."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.section("schemathesis")
        for done in _runs.values():
            terminalreporter.write_line(done.summary())


@pytest.fixture
def run(engine: Engine, request: pytest.FixtureRequest) -> Run:
    """One schemathesis run per backend, shared by the tests below."""
    backend = engine.dialect.name
    if backend not in _runs:
        _runs[backend] = run_schemathesis(engine, backend)
        plugins = request.config.pluginmanager
        if not plugins.has_plugin("kopilka-schemathesis-summary"):
            plugins.register(_Summary(), "kopilka-schemathesis-summary")
    return _runs[backend]


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def bare_app() -> Iterator[FastAPI]:
    """The app on no database: for its routes and its OpenAPI document."""
    app = create_app("sqlite://")
    yield app
    app.state.engine.dispose()


def test_no_server_error_and_no_reply_outside_the_schema(run: Run) -> None:
    assert not run.failures, f"{run.summary()}\n\n{run.failure_report()}"


def test_every_documented_operation_is_exercised(run: Run, bare_app: FastAPI) -> None:
    documented = documented_operations(bare_app)
    missing = sorted(documented - run.operations)
    assert not missing, f"{run.summary()}; never called: {missing}"
    assert run.cases >= len(documented)


def test_every_operation_has_a_caller(bare_app: FastAPI) -> None:
    """A new route gets credentials of the right kind, or this says why it cannot."""
    who = callers(bare_app)
    assert documented_operations(bare_app) <= set(who)
    assert who[("POST", f"{API}/pos/checks")] == TERMINAL_ROLE
    assert who[("GET", f"{API}/processing/units")] == TERMINAL_ROLE
    assert who[("POST", f"{API}/pos/room-charges")] == TERMINAL_ROLE
    assert who[("POST", f"{API}/transfers")] == "owner"
    assert who[("GET", f"{API}/hotel/rooms")] == "owner"


def test_every_error_is_documented_as_a_problem(bare_app: FastAPI) -> None:
    """FastAPI documents its own 422 shape unless a route lists 422 among its problems;
    the reply is a problem, so the route must (schemathesis found twelve that did not)."""
    plain = sorted(
        f"{method.upper()} {path} {status}"
        for path, item in bare_app.openapi()["paths"].items()
        for method, operation in item.items()
        for status, response in operation.get("responses", {}).items()
        if status[0] in "45" and "application/problem+json" not in response.get("content", {})
    )
    assert not plain, plain
