"""The rules a running process uses: reloaded when files change, never replaced by invalid ones.

Every loaded rule set has a version (:func:`engine.rules.files.rules_version`). A process may
start without valid rules (``strict=False``: the API stores webhooks without them, the worker
waits); the load error is kept for ``/healthz`` and ``engine status``, and each new broken
version is handed out once (:meth:`RulesRepository.take_failure`) for the one alert.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from engine.lifecycle.planner import Planner
from engine.rules.files import content_hash, fingerprint, rules_version
from engine.rules.loader import RulesError, check_rules
from engine.rules.model import Rules
from engine.rules.source import Problem

log = logging.getLogger(__name__)


class RulesRepository:
    def __init__(self, rules_dir: Path | str, *, strict: bool = True):
        self.rules_dir = Path(rules_dir)
        self._lock = threading.Lock()
        self._stamp: tuple = ()
        self._rules: Rules | None = None
        self._planner: Planner | None = None
        self.version: str | None = None
        self.last_problems: list[Problem] = []
        # Bumped by every successful load: who must act once per loaded version (the database
        # fit, engine.pipeline.rules_fit) compares it with the one it last saw.
        self.generation = 0
        self.failed_hash: str | None = None  # the content hash of the rules that failed last
        self._unreported: tuple[str, list[Problem]] | None = None
        self._reported_hash: str | None = None
        self._watcher: threading.Thread | None = None
        self.reload()
        if self._rules is None and strict:
            raise RulesError(self.last_problems)

    def __copy__(self) -> RulesRepository:
        """The same loaded rules and state, with a lock and no watcher of its own: another runtime
        on the same folder without reading and validating the files again (tests build hundreds)."""
        clone = object.__new__(RulesRepository)
        clone.__dict__.update(self.__dict__)
        clone._lock, clone._watcher = threading.Lock(), None
        clone.last_problems = list(self.last_problems)
        return clone

    def _fingerprint(self) -> tuple:
        try:
            return fingerprint(self.rules_dir)
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
                digest = content_hash(self.rules_dir)
                self.failed_hash = digest
                if digest != self._reported_hash:
                    self._unreported = (digest, problems)
                log.error(
                    "rules in %s are invalid (%s); %s:\n%s",
                    self.rules_dir,
                    digest,
                    f"keeping version {self.version}" if self.version else "no valid rules loaded yet",
                    "\n".join(map(str, problems)),
                )
                return False
            version = rules_version(self.rules_dir)
            if version != self.version:
                log.info("rules version %s loaded from %s", version, self.rules_dir)
            self._rules, self._planner, self.version = rules, Planner(rules), version
            self.failed_hash, self._unreported = None, None
            self.generation += 1
            return True

    def reload_if_changed(self) -> None:
        if self._fingerprint() != self._stamp:
            self.reload()

    def watch(self, interval: float = 30.0, on_change: Callable[[], None] | None = None) -> threading.Thread:
        """Reload changed rules every ``interval`` seconds in a daemon thread, events or not;
        ``on_change`` runs after each reload that changed the outcome (a new version or error)."""
        if self._watcher is not None:
            return self._watcher

        def loop() -> None:
            while True:
                threading.Event().wait(interval)
                try:
                    before = (self.version, self.failed_hash)
                    self.reload_if_changed()
                    if on_change is not None and (self.version, self.failed_hash) != before:
                        on_change()
                except Exception:  # noqa: BLE001 - a watcher that dies would leave the rules stale
                    log.exception("reloading the rules failed")

        self._watcher = threading.Thread(target=loop, name="rules-watcher", daemon=True)
        self._watcher.start()
        return self._watcher

    @property
    def available(self) -> bool:
        return self._rules is not None

    @property
    def load_error(self) -> str | None:
        """One line about the last failed load, or None when the newest rules on disk are loaded."""
        if self.failed_hash is None:
            return None
        first = str(self.last_problems[0]) if self.last_problems else "invalid rules"
        more = len(self.last_problems) - 1
        return f"{first}" + (f" (and {more} more error(s))" if more > 0 else "")

    def take_failure(self) -> tuple[str, list[Problem]] | None:
        """A broken rules version not reported yet (content hash, problems); then None until another."""
        with self._lock:
            failure, self._unreported = self._unreported, None
            if failure is not None:
                self._reported_hash = failure[0]
            return failure

    @property
    def rules(self) -> Rules:
        if self._rules is None:
            raise RulesError(self.last_problems)
        return self._rules

    @property
    def planner(self) -> Planner:
        if self._planner is None:
            raise RulesError(self.last_problems)
        return self._planner
