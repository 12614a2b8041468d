"""Background jobs with visible progress (SPEC X-5).

``start_job`` writes a ``jobs`` row (queued) and hands the registered function of its kind
to a small pool of worker threads. The function reports how far it has got through a
``Progress`` (kept in the row, so any worker process can show it); when it returns, the
row says ``done`` with its result, when it raises, ``failed`` with the error's message
(the traceback goes to the log, never to the screen).

A job still ``queued`` or ``running`` whose row has not moved for ``STALE_AFTER`` was cut
short (the process stopped): it is shown as interrupted.

The worker runs in a copy of the caller's context, so messages a job writes come in the
language of the person who started it.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput, NotFound
from kopilka.jobs.schema import jobs
from kopilka.ledger.posting import run_transaction

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=10)
# At most this many progress writes a second (the last state is always written).
WRITES_PER_SECOND = 4
MESSAGE_MAX = 1000

JobFunction = Callable[["JobContext"], dict[str, Any] | None]

_REGISTRY: dict[str, JobFunction] = {}
_EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kopilka-job")


def register(kind: str) -> Callable[[JobFunction], JobFunction]:
    """Make ``kind`` runnable: ``@register("ledger.verify") def run(ctx): ...``."""

    def decorate(function: JobFunction) -> JobFunction:
        _REGISTRY[kind] = function
        return function

    return decorate


def registered(kind: str) -> bool:
    _load_builtin_kinds()
    return kind in _REGISTRY


def _load_builtin_kinds() -> None:
    """The kinds Kopilka ships register themselves when their module is imported."""
    importlib.import_module("kopilka.jobs.ledger_check")
    importlib.import_module("kopilka.jobs.card_jobs")
    importlib.import_module("kopilka.loyalty.imports")


class Progress:
    """How far a job has got, written to its row at most a few times a second."""

    def __init__(self, engine: Engine, job_id: int) -> None:
        self.engine = engine
        self.job_id = job_id
        self.done = 0
        self.total: int | None = None
        self.message = ""
        self._written_at = 0.0
        self._lock = threading.Lock()

    def update(self, done: int, total: int | None = None, message: str | None = None) -> None:
        with self._lock:
            self.done = max(int(done), 0)
            if total is not None:
                self.total = max(int(total), 0)
            if message is not None:
                self.message = message[:MESSAGE_MAX]
            last = self.total is not None and self.done >= self.total
            now = time.monotonic()
            if not last and now - self._written_at < 1 / WRITES_PER_SECOND:
                return
            self._written_at = now
            values = {"done": self.done, "total": self.total, "message": self.message}
        _update(self.engine, self.job_id, **values)


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job's function is given."""

    engine: Engine
    job_id: int
    tenant_id: int
    params: dict[str, Any]
    progress: Progress


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    tenant_id: int
    kind: str
    status: str
    done: int
    total: int | None
    message: str
    params: dict[str, Any] | None
    result: dict[str, Any] | None
    actor_type: str
    actor_id: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None

    @property
    def interrupted(self) -> bool:
        """Queued or running, but its row has not moved for ``STALE_AFTER``: the process
        that had it stopped."""
        return self.status in ("queued", "running") and utcnow() - self.updated_at > STALE_AFTER

    @property
    def shown_status(self) -> str:
        """queued, running, done, failed, or interrupted (gone quiet before its end)."""
        return "interrupted" if self.interrupted else self.status

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed") or self.interrupted


def start_job(
    engine: Engine, *, tenant_id: int, kind: str, params: dict[str, Any], actor: Actor
) -> int:
    """Queue a job of a registered kind and start it in the background; its id."""
    _load_builtin_kinds()
    function = _REGISTRY.get(kind)
    if function is None:
        raise InvalidInput("unknown_job_kind", f"no job of kind {kind!r} is registered")
    now = utcnow()

    def insert(conn: Connection) -> int:
        job_id: int = conn.execute(
            jobs.insert().returning(jobs.c.id),
            {
                "tenant_id": tenant_id,
                "kind": kind,
                "status": "queued",
                "done": 0,
                "total": None,
                "message": "",
                "params": params,
                "actor_type": actor.type.value,
                "actor_id": actor.id,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
        return job_id

    job_id = run_transaction(engine, insert)
    context = contextvars.copy_context()
    _EXECUTOR.submit(context.run, _run, engine, job_id, tenant_id, dict(params), function)
    return job_id


def _run(
    engine: Engine, job_id: int, tenant_id: int, params: dict[str, Any], function: JobFunction
) -> None:
    progress = Progress(engine, job_id)
    try:
        now = utcnow()
        _update(engine, job_id, status="running", started_at=now)
        result = function(JobContext(engine, job_id, tenant_id, params, progress))
    except Exception as error:
        log.exception("job %s failed", job_id)
        message = str(error).strip() or type(error).__name__
        try:
            _update(
                engine,
                job_id,
                status="failed",
                message=message[:MESSAGE_MAX],
                done=progress.done,
                total=progress.total,
                finished_at=utcnow(),
            )
        except Exception:
            log.exception("job %s: its failure could not be recorded", job_id)
        return
    try:
        total = progress.total if progress.total is not None else max(progress.done, 1)
        _update(
            engine,
            job_id,
            status="done",
            done=total,
            total=total,
            message=progress.message,
            result=result,
            finished_at=utcnow(),
        )
    except Exception:
        log.exception("job %s: its result could not be recorded", job_id)


def _update(engine: Engine, job_id: int, **values: Any) -> None:
    values["updated_at"] = utcnow()
    run_transaction(
        engine, lambda conn: conn.execute(jobs.update().where(jobs.c.id == job_id).values(values))
    )


# --------------------------------------------------------------------------- reading


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        tenant_id=row.tenant_id,
        kind=row.kind,
        status=row.status,
        done=row.done,
        total=row.total,
        message=row.message,
        params=row.params,
        result=row.result,
        actor_type=row.actor_type,
        actor_id=row.actor_id,
        created_at=row.created_at,
        started_at=row.started_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def get_job(engine: Engine, tenant_id: int, job_id: int) -> Job:
    """The tenant's job; another tenant's is not found."""
    with read_only(engine) as conn:
        row = conn.execute(
            select(jobs).where(jobs.c.tenant_id == tenant_id, jobs.c.id == job_id)
        ).first()
    if row is None:
        raise NotFound("job_not_found", f"job {job_id} does not exist")
    return _job(row)


def recent_jobs(
    engine: Engine, tenant_id: int, *, kind: str | None = None, limit: int = 20
) -> list[Job]:
    query = (
        select(jobs)
        .where(jobs.c.tenant_id == tenant_id)
        .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        .limit(limit)
    )
    if kind is not None:
        query = query.where(jobs.c.kind == kind)
    with read_only(engine) as conn:
        return [_job(row) for row in conn.execute(query)]
