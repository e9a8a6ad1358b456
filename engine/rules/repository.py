"""The rules a running process uses: reloaded when files change, never replaced by invalid ones."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from engine.planner import Planner
from engine.rules.loader import check_rules
from engine.rules.model import Rules
from engine.rules.source import Problem

log = logging.getLogger(__name__)


class RulesRepository:
    def __init__(self, rules_dir: Path | str):
        self.rules_dir = Path(rules_dir)
        self._lock = threading.Lock()
        self._stamp: tuple = ()
        self._rules: Rules | None = None
        self._planner: Planner | None = None
        self.last_problems: list[Problem] = []
        # Bumped by every successful load: who must act once per loaded version (the database
        # fit, engine.pipeline.rules_fit) compares it with the one it last saw.
        self.generation = 0
        self.reload()
        if self._rules is None:
            from engine.rules.loader import RulesError

            raise RulesError(self.last_problems)

    def _fingerprint(self) -> tuple:
        try:
            files = sorted(p for p in self.rules_dir.rglob("*") if p.suffix in (".yaml", ".yml"))
            return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        except OSError:
            return ()

    def reload(self) -> bool:
        """Load the rules again; keep the current ones if the new ones are invalid."""
        with self._lock:
            stamp = self._fingerprint()
            rules, problems = check_rules(self.rules_dir)
            self._stamp = stamp
            self.last_problems = problems
            if rules is None:
                log.error(
                    "rules in %s are invalid; keeping the previous rules:\n%s",
                    self.rules_dir,
                    "\n".join(map(str, problems)),
                )
                return False
            self._rules, self._planner = rules, Planner(rules)
            self.generation += 1
            return True

    def reload_if_changed(self) -> None:
        if self._fingerprint() != self._stamp:
            self.reload()

    @property
    def rules(self) -> Rules:
        assert self._rules is not None
        return self._rules

    @property
    def planner(self) -> Planner:
        assert self._planner is not None
        return self._planner
