"""The ``engine`` command. Heavy imports stay inside commands: ``check`` must start fast.

:data:`main` is the click group (``base``); each module adds its commands to it: ``rules``
(check, test, plan, new-product, dry-run, graph), ``service`` (migrate, serve, worker,
healthcheck, heartbeat, bot), ``admin`` (doctor, events, student, retry, replay, status,
admin-user), ``imports`` (import-students), ``reconcile`` and ``sync`` (sync hotmart). ``errors``
turns every failure into one ``error: ...`` line.
"""

from engine.cli import admin, imports, reconcile, rules, service, sync  # noqa: F401 - each adds its commands to main
from engine.cli.base import main

__all__ = ["main"]
