"""``engine reconcile``: the rules are the desired state; compare the world with them, then fix it.

- :mod:`engine.reconcile.diff`: desired (from :mod:`engine.lifecycle.access`) vs actual, per student;
- :mod:`engine.reconcile.world`: reading Discord, ManyChat, classes and the grant ledger;
- :mod:`engine.reconcile.apply`: :func:`apply_access_diff`, the one way an access diff is
  applied (reconcile and ``engine plan --apply``), as pipeline steps behind the guard;
- :mod:`engine.reconcile.runs`: a stored run, the worker's schedule.
"""

from engine.reconcile.apply import RECONCILE_EVENT, Applied, apply_access_diff, revoke_limit
from engine.reconcile.diff import AccessDiff, Change, Finding, Report
from engine.reconcile.runs import Busy, compute, list_runs, run_reconcile, scheduled_run

__all__ = [
    "RECONCILE_EVENT",
    "AccessDiff",
    "Applied",
    "Busy",
    "Change",
    "Finding",
    "Report",
    "apply_access_diff",
    "compute",
    "list_runs",
    "revoke_limit",
    "run_reconcile",
    "scheduled_run",
]
