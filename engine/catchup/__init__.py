"""``engine sync <source>``: catch up on webhooks that never came, from the platform's API.

Webhooks are the fast path; a platform's API is the second path to the same truth. A run reads
every subscription and the recent sales of every product the rules claim there, finds the
changes no event of the engine brought (an approval never delivered, a refund or a cancellation
the engine does not know), and stores each as the webhook that would have brought it: the
ordinary pipeline applies it, the rules decide as they would have, and the webhook that may still
come is a duplicate (one change key for both paths, :meth:`engine.sources.base.Source.change_key`).

- :mod:`engine.catchup.observe`: reading the platform (its API client, ``connectors/``; its items
  read by the source, ``engine.sources``);
- :mod:`engine.catchup.known`: what the event log and the memberships already hold;
- :mod:`engine.catchup.compare`: the news, dated, and what the rules would do with each;
- :mod:`engine.catchup.report`: findings and the report;
- :mod:`engine.catchup.store`: storing them through the intake, behind reconcile's guard;
- :mod:`engine.catchup.runs`: a stored run, where it starts reading, one at a time;
- :mod:`engine.catchup.alerts`, :mod:`engine.catchup.schedule`: the worker's runs and what they tell.
"""

from engine.catchup.report import Finding, Report
from engine.catchup.runs import Busy, NotReadable, last_run, list_runs, run_out, run_sync, syncable
from engine.catchup.schedule import scheduled_run
from engine.catchup.store import Stored, origin_of

__all__ = [
    "Busy",
    "Finding",
    "NotReadable",
    "Report",
    "Stored",
    "last_run",
    "list_runs",
    "origin_of",
    "run_out",
    "run_sync",
    "scheduled_run",
    "syncable",
]
