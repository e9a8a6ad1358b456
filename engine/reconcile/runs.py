"""One reconcile run: read the world, diff it against the rules, store it, and apply it if asked."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Literal

from sqlalchemy import update
from sqlalchemy.orm import Session

from engine import alert_texts
from engine.db import stored_runs
from engine.db.locks import Namespace, one_run_at_a_time
from engine.db.models import ReconcileRun, Student
from engine.db.session import engine_of
from engine.lifecycle.access import derive
from engine.pipeline.alerts import notify_alerts, raise_alert
from engine.pipeline.runtime import Runtime
from engine.reconcile.apply import Applied, apply_access_diff
from engine.reconcile.diff import (
    AccessDiff,
    ChangeKey,
    Report,
    StudentView,
    change_key,
    diff_student,
    unclaimed_classes,
)
from engine.reconcile.world import (
    PLATFORM,
    Progress,
    assign_roles,
    class_keys,
    load_students,
    no_progress,
    read_classes,
    read_discord,
    read_manychat,
    read_platform_classes,
)
from engine.rules.model import Rules

log = logging.getLogger(__name__)

Mode = Literal["report", "grants", "all"]
STORED_ITEMS = 1000  # per list in a stored run; counts and totals are always complete


class Busy(Exception):
    """Another reconcile is running."""


def compute(rt: Runtime, rules: Rules | None = None, *, progress: Progress = no_progress) -> Report:
    """Compare every student's access with what ``rules`` (default: the loaded ones) want. Reads only."""
    rules = rules or rt.rules.rules
    access = derive(rules)
    # Discord's member list is paced by its rate limits: page through it while the database is read.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile-discord") as pool:
        members = pool.submit(read_discord, rt, progress)
        with rt.sessions() as session:
            students = load_students(session)
            read_classes(session, students)
        roles = members.result()
    report = Report(AccessDiff(students=len(students)))
    if isinstance(roles, str):
        report.notes.append(roles)
    else:
        assign_roles(students, roles)
        report.checked.append("discord_role")

    note, learned = read_manychat(rt, students, lambda s: _has_tags(s, access), progress)
    if note:
        report.notes.append(note)
    else:
        report.checked.append("manychat_tag")
    classes = read_platform_classes(rt, students, class_keys(students, access), progress)
    if classes.note():
        report.notes.append(classes.note())
    if classes.compared:
        report.checked.append("class")
    if learned:
        with rt.sessions.begin() as session:
            for student_id, subscriber in learned.items():
                session.execute(
                    update(Student).where(Student.id == student_id).values(manychat_subscriber_id=subscriber)
                )
    unknown = sorted({m.product for s in students for m in s.memberships if m.product not in access})
    if unknown:
        report.notes.append(f"products no longer in the rules (their grants are kept): {', '.join(unknown)}")
    with progress("comparing", len(students)) as step:
        for student in students:
            diff_student(student, access, report)
            step(1)
    if classes.source == PLATFORM:
        report.notes += unclaimed_classes(students, access, classes.strangers)
    return report


def _has_tags(student: StudentView, access) -> bool:
    """Do tags matter for this student (some membership wants one, or the ledger says the engine gave one)?"""
    if any(kind == "manychat_tag" for kind, _ in student.owned):
        return True
    linked = student.discord_id is not None
    for membership in student.memberships:
        product = access.get(membership.product)
        if product is not None and any(kind == "manychat_tag" for kind, _ in product.of(membership.state, linked).may):
            return True
    return False


def run_reconcile(
    rt: Runtime,
    *,
    mode: Mode = "report",
    trigger: str = "cli",
    confirm: bool = False,
    max_revokes: int | None = None,
    rules: Rules | None = None,
    progress: Progress = no_progress,
    confirmed: Collection[ChangeKey] | None = None,
) -> tuple[int, Report, Applied | None]:
    """Compute, store, and (``mode`` grants / all) apply; returns (run id, report, what was applied).

    ``confirmed``: the revocations a person read before confirming (the admin page lists a stored
    run's); ``confirm`` then covers only those: a fresh comparison that finds another one is held by
    the guard as without ``confirm``."""
    with exclusive(rt):
        columns = {"trigger": trigger, "mode": mode, "students": 0, "started_at": rt.now()}
        with stored_runs.recorded(rt.sessions, ReconcileRun, rt.now, **columns) as run_id:
            report = compute(rt, rules, progress=progress)
            applied = None
            if mode != "report" and not report.diff.empty:
                applied = apply_access_diff(
                    rt,
                    report.diff,
                    confirm=confirm and _all_confirmed(report.diff, confirmed),
                    max_revokes=max_revokes if max_revokes is not None else rt.settings.reconcile_max_revokes,
                    grants_only=mode == "grants",
                    actor=f"reconcile:{trigger}",
                    run_id=run_id,
                )
        stored_runs.finish(
            rt.sessions,
            ReconcileRun,
            run_id,
            rt.now,
            applied,
            students=report.students,
            counts=report.counts(),
            diff=report.to_dict(limit=STORED_ITEMS),
        )
    return run_id, report, applied


def _all_confirmed(diff: AccessDiff, confirmed: Collection[ChangeKey] | None) -> bool:
    if confirmed is None:
        return True
    return all(change_key(change) in confirmed for change in diff.revokes)


@contextmanager
def exclusive(rt: Runtime) -> Iterator[None]:
    """One reconcile at a time (several workers share a schedule; an admin may run one by hand)."""
    with one_run_at_a_time(engine_of(rt.sessions), Namespace.RECONCILE) as got:
        if not got:
            raise Busy("another reconcile is running")
        yield


def scheduled_run(rt: Runtime) -> int | None:
    """The worker's nightly run: report, or apply what ``RECONCILE_APPLY`` allows. Skips a duplicate."""
    with rt.sessions() as session:
        recent = stored_runs.scheduled_lately(session, ReconcileRun, rt.now())
    if recent:
        log.info("reconcile: a scheduled run started less than 30 minutes ago; skipping")
        return None
    mode: Mode = {"none": "report", "grants": "grants", "all": "all"}[rt.settings.reconcile_apply]
    try:
        run_id, report, applied = run_reconcile(rt, mode=mode, trigger="schedule")
    except Busy:
        log.info("reconcile: another run is in progress; skipping the scheduled one")
        return None
    totals = report.to_dict(limit=0)["totals"]
    log.info("reconcile run %s (%s): %s; applied: %s", run_id, mode, totals, applied.to_dict() if applied else None)
    _alert_drift(rt, run_id, mode, report, applied)
    return run_id


def _alert_drift(rt: Runtime, run_id: int, mode: Mode, report: Report, applied: Applied | None) -> None:
    """A nightly run tells the admins what it found and left for them (a held run has alerted already)."""
    if applied is not None and applied.held:
        return
    left = {"missing": [] if applied else report.diff.grants, "extra": [] if mode == "all" else report.diff.revokes}
    if not (left["missing"] or left["extra"]):
        return
    per_product: dict[str, dict[str, int]] = {}
    for what, changes in left.items():
        for change in changes:
            counts = per_product.setdefault(change.product, {"missing": 0, "extra": 0})
            counts[what] += 1
    summary = "; ".join(
        f"{product}: " + ", ".join(f"{n} {what}" for what, n in counts.items() if n)
        for product, counts in sorted(per_product.items())
    )
    example = (left["missing"] or left["extra"])[0].line()
    message = alert_texts.reconcile_drift(run_id, rt.settings.reconcile_apply, summary, example)
    with rt.sessions.begin() as session:
        raise_alert(rt, session, kind="reconcile.drift", message=message)
    notify_alerts(rt)


def list_runs(session: Session, *, limit: int = 20, offset: int = 0) -> tuple[list[ReconcileRun], int]:
    return stored_runs.newest_first(session, ReconcileRun, limit=limit, offset=offset)


__all__ = ["Busy", "compute", "exclusive", "list_runs", "run_reconcile", "scheduled_run"]


def run_out(run: ReconcileRun) -> dict:
    return {
        "id": run.id,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "trigger": run.trigger,
        "mode": run.mode,
        "status": run.status,
        "students": run.students,
        "counts": run.counts or {},
        "diff": run.diff,
        "applied": run.applied,
        "error": run.error,
    }


def last_run(rt: Runtime) -> dict | None:
    with rt.sessions() as session:
        runs, _ = list_runs(session, limit=1)
        return run_out(runs[0]) if runs else None
