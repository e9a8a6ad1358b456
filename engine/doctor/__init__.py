"""``engine doctor``: preflight checks before a flag is turned on (and ``GET /admin/doctor``).

Each check is one line, ``ok`` / ``warn`` / ``FAIL``, saying what is wrong and what to do.
Only read calls are made to Discord and ManyChat (shared/reference discord.md 2.4/2.4a,
manychat.md 2.5-2.7); nothing is granted, tagged or sent.

- :mod:`engine.doctor.core`: the :class:`Check` and our side (database, queue, secrets, rules, workers);
- :mod:`engine.doctor.discord`, :mod:`engine.doctor.manychat`: each service's setup, through the
  read-only client of :mod:`engine.doctor.remote`;
- :mod:`engine.doctor.preflight`: all of them, as the CLI and the API run them.
"""

from engine.doctor.core import FAIL, OK, WARN, Check, as_dicts, failed
from engine.doctor.preflight import preflight, run_doctor

__all__ = ["FAIL", "OK", "WARN", "Check", "as_dicts", "failed", "preflight", "run_doctor"]
