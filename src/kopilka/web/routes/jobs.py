"""Background jobs on screen (SPEC X-5): the ledger check, and any job's progress.

``/jobs/{id}`` shows a job; while it is queued or running its progress block fetches
itself again every second (htmx) and stops once the job has finished; without JavaScript
a plain "Refresh" link does the same. Jobs belong to a tenant: another tenant's job id is
not found.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response

from kopilka.core.errors import NotFound
from kopilka.jobs import card_jobs, ledger_check
from kopilka.jobs.runner import Job, get_job, recent_jobs, start_job
from kopilka.loyalty import imports
from kopilka.web.deps import Page, redirect, render, require
from kopilka.web.i18n import _, lazy
from kopilka.web.routes.card_imports import IMPORT_STAGES

router = APIRouter(include_in_schema=False)

JobsPage = Annotated[Page, Depends(require("jobs.run"))]

KIND_NAMES = {
    ledger_check.KIND: lazy("Ledger check"),
    card_jobs.ISSUE_RANGE: lazy("Issuing a range of cards"),
    imports.JOB_KIND: lazy("Import of cards from CSV"),
}
STATUS_NAMES = {
    "queued": lazy("Queued"),
    "running": lazy("Running"),
    "done": lazy("Done"),
    "failed": lazy("Failed"),
    "interrupted": lazy("Interrupted"),
}
CHECK_NAMES = {
    "transfer_balances": lazy("Every transfer balances per unit"),
    "transfer_has_entries": lazy("Every transfer has at least two entries"),
    "entry_matches_account": lazy("Entries match their accounts' unit and company"),
    "stored_balance": lazy("Stored balances equal their entries"),
    "running_balance": lazy("Running balances after each entry"),
    "hot_shards": lazy("Balances of busy system accounts"),
    "never_below_zero": lazy("No account went below zero when it may not"),
    "credit_limit": lazy("No credit limit was exceeded"),
    "held_amount": lazy("Held amounts equal the open holds"),
    "held_covered": lazy("Held amounts are covered by the balance"),
    "lots_cover_balance": lazy("Lots add up to the balance"),
    "lot_remaining": lazy("What is left in each lot"),
    "snapshots": lazy("Balance snapshots"),
}


def kind_name(kind: str) -> str:
    return str(KIND_NAMES.get(kind, kind))


def check_name(check: str) -> str:
    return str(CHECK_NAMES.get(check, check))


def job_message(job: Job) -> str:
    """What the job is doing now, in words (the ledger check names its checks)."""
    if job.shown_status == "failed":
        return job.message
    if job.kind == ledger_check.KIND:
        if job.status == "done":
            return _("All checks are done.")
        if job.message:
            return _("Checked: %(check)s", check=check_name(job.message))
        return ""
    if job.kind == imports.JOB_KIND:
        return str(IMPORT_STAGES.get(job.message, job.message))
    return job.message


def _job_context(job: Job) -> dict[str, Any]:
    status = job.shown_status
    return {
        "job": job,
        "status": status,
        "status_name": str(STATUS_NAMES.get(status, status)),
        "kind_name": kind_name(job.kind),
        "message": job_message(job),
        "check_name": check_name,
        "percent": (
            round(100 * job.done / job.total) if job.total else (100 if job.finished else None)
        ),
    }


def _tenant_job(page: Page, job_id: int) -> Job:
    try:
        return get_job(page.engine, page.tenant.id, job_id)
    except NotFound:
        raise HTTPException(status_code=404) from None


@router.get("/ledger/check")
def check_page(page: JobsPage) -> Response:
    jobs = recent_jobs(page.engine, page.tenant.id, limit=20)
    return render(
        page,
        "ledger/check.html",
        jobs=[_job_context(job) for job in jobs],
    )


@router.post("/ledger/check")
def start_check(page: JobsPage) -> Response:
    job_id = start_job(
        page.engine,
        tenant_id=page.tenant.id,
        kind=ledger_check.KIND,
        params={},
        actor=page.actor,
    )
    return redirect(f"/jobs/{job_id}", page.request)


@router.get("/jobs/{job_id}")
def job_page(job_id: int, page: JobsPage) -> Response:
    job = _tenant_job(page, job_id)
    return render(page, "jobs/job.html", **_job_context(job))


@router.get("/jobs/{job_id}/progress")
def job_progress(job_id: int, page: JobsPage) -> Response:
    """The progress block alone: what htmx swaps in every second while the job runs."""
    job = _tenant_job(page, job_id)
    return render(page, "jobs/_progress.html", **_job_context(job))
