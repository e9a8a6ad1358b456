"""``engine plan``: the impact of a rules change on the students the engine already has.

Both rule sets are folded into desired access (:mod:`engine.lifecycle.access`); every current
membership is then compared under each: which students would gain or lose each role, tag
and class (access is a union: a resource another membership of the student still grants is
no loss), which memberships sit in states or products the candidate drops, which pending
timers would fire into nothing, and which transitions appear, disappear or change.
Nothing is written; ``--apply`` hands the access diff to reconcile.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import Membership, ScheduledEvent, Student
from engine.lifecycle.access import Resource, derive
from engine.rules.model import Rules, TransitionRule
from engine.statuses import TimerStatus

EXAMPLES = 3
_KIND_LABEL = {"discord_role": "discord role", "manychat_tag": "manychat tag", "class": "class"}


@dataclass
class ResourceChange:
    product: str
    kind: str
    resource: str
    gain: list[str] = field(default_factory=list)  # student e-mails
    lose: list[str] = field(default_factory=list)


@dataclass
class Impact:
    """What a candidate rule set would change for today's memberships (not a planner ``Plan``)."""

    changes: list[ResourceChange]
    dropped_states: dict[str, list[str]]  # state -> e-mails of memberships in it
    dropped_products: dict[str, list[str]]
    timers: list[dict[str, Any]]  # pending timers the candidate would not handle
    transitions_added: list[str]
    transitions_removed: list[str]
    transitions_changed: list[str]
    memberships: int

    @property
    def empty(self) -> bool:
        return not (
            self.changes
            or self.dropped_states
            or self.dropped_products
            or self.timers
            or self.transitions_added
            or self.transitions_removed
            or self.transitions_changed
        )

    def summary(self) -> str:
        """A short, paste-able summary for the pull request."""
        lines = []
        for change in self.changes:
            label = f"{_KIND_LABEL[change.kind]} {change.resource}"
            for verb, who in (("gain", change.gain), ("lose", change.lose)):
                if who:
                    lines.append(f"{change.product}: {_students(len(who))} would {verb} {label}{_examples(who)}")
        for state, who in sorted(self.dropped_states.items()):
            lines.append(
                f"state {state!r} is gone: {_memberships(len(who))} in it would need attention "
                f"(declare lifecycle.renamed_states){_examples(who)}"
            )
        for product, who in sorted(self.dropped_products.items()):
            lines.append(f"product {product!r} is gone: {_memberships(len(who))} of it{_examples(who)}")
        by_event: dict[str, int] = defaultdict(int)
        for timer in self.timers:
            by_event[f"{timer['event']} in state {timer['state']!r}"] += 1
        for what, count in sorted(by_event.items()):
            lines.append(f"{count} pending timer(s) {what} would have no transition")
        for title, names in (
            ("transitions added", self.transitions_added),
            ("transitions removed", self.transitions_removed),
            ("transitions changed", self.transitions_changed),
        ):
            if names:
                lines.append(f"{title}: {', '.join(names)}")
        if not lines:
            return f"no change for the {_memberships(self.memberships)} in the database"
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "memberships": self.memberships,
            "access": [
                {
                    "product": c.product,
                    "kind": c.kind,
                    "resource": c.resource,
                    "gain": len(c.gain),
                    "lose": len(c.lose),
                    "gain_examples": c.gain[:EXAMPLES],
                    "lose_examples": c.lose[:EXAMPLES],
                }
                for c in self.changes
            ],
            "dropped_states": {k: {"count": len(v), "examples": v[:EXAMPLES]} for k, v in self.dropped_states.items()},
            "dropped_products": {
                k: {"count": len(v), "examples": v[:EXAMPLES]} for k, v in self.dropped_products.items()
            },
            "timers": self.timers,
            "transitions": {
                "added": self.transitions_added,
                "removed": self.transitions_removed,
                "changed": self.transitions_changed,
            },
        }


def impact_of(session: Session, current: Rules, candidate: Rules) -> Impact:
    """Compare every membership in the database under ``current`` and under ``candidate``."""
    before, after = derive(current), derive(candidate)
    students: dict[int, tuple[str, bool, list[Membership]]] = {}
    rows = session.execute(
        select(Membership, Student.email, Student.discord_id)
        .join(Student, Student.id == Membership.student_id)
        .order_by(Student.email, Membership.id)  # the same examples, in the same order, every run
    ).all()
    for membership, email, discord_id in rows:
        students.setdefault(membership.student_id, (email, discord_id is not None, []))[2].append(membership)

    changes: dict[tuple[str, str, str], ResourceChange] = {}
    dropped_states: dict[str, list[str]] = defaultdict(list)
    dropped_products: dict[str, list[str]] = defaultdict(list)
    renamed = _renamed_states(candidate)
    for email, linked, memberships in students.values():
        kept = []
        for membership in memberships:
            if membership.product_key not in candidate.products:
                dropped_products[membership.product_key].append(email)
            elif renamed.get(membership.state, membership.state) not in candidate.states:
                dropped_states[membership.state].append(email)
            else:
                kept.append(membership)
        # What the dropped ones hold is undecided until they are moved: compare the rest.
        held_before = _union(before, kept, linked)
        held_after = _union(after, kept, linked, renamed)
        for resource in sorted(set(held_after) - set(held_before)):
            _change(changes, held_after[resource], resource).gain.append(email)
        for resource in sorted(set(held_before) - set(held_after)):
            _change(changes, held_before[resource], resource).lose.append(email)

    return Impact(
        changes=sorted(changes.values(), key=lambda c: (c.product, c.kind, c.resource)),
        dropped_states=dict(dropped_states),
        dropped_products=dict(dropped_products),
        timers=_timers(session, current, candidate),
        transitions_added=sorted({t.name for t in candidate.transitions} - {t.name for t in current.transitions}),
        transitions_removed=sorted({t.name for t in current.transitions} - {t.name for t in candidate.transitions}),
        transitions_changed=_changed_transitions(current, candidate),
        memberships=len(rows),
    )


def _union(derived, memberships: list[Membership], linked: bool, renamed=None) -> dict[Resource, str]:
    """Resources every history holds, across the student's memberships -> the product granting it."""
    held: dict[Resource, str] = {}
    for membership in sorted(memberships, key=lambda m: m.product_key):
        access = derived.get(membership.product_key)
        if access is None:
            continue
        state = (renamed or {}).get(membership.state, membership.state)
        for resource in access.of(state, linked).must:
            held.setdefault(resource, membership.product_key)
    return held


def _change(changes: dict, product: str, resource: Resource) -> ResourceChange:
    key = (product, *resource)
    if key not in changes:
        changes[key] = ResourceChange(product, resource[0], resource[1])
    return changes[key]


def _renamed_states(rules: Rules) -> dict[str, str]:
    # lifecycle.renamed_states (issue 9): old name -> new name; absent in older rules models.
    return dict(getattr(rules, "renamed_states", None) or {})


def _timers(session: Session, current: Rules, candidate: Rules) -> list[dict[str, Any]]:
    """Pending timers the current rules handle and the candidate would not."""
    rows = session.execute(
        select(ScheduledEvent, Membership)
        .join(Membership, Membership.id == ScheduledEvent.membership_id)
        .where(ScheduledEvent.status == TimerStatus.PENDING)
        .order_by(ScheduledEvent.id)
    ).all()
    affected = []
    for timer, membership in rows:
        product = candidate.products.get(membership.product_key)
        if product is None:
            continue  # reported with the dropped products
        if _handles(current, timer.event_type, membership.state) and not _handles(
            candidate, timer.event_type, membership.state
        ):
            affected.append({"event": timer.event_type, "state": membership.state, "membership_id": membership.id})
    return affected


def _handles(rules: Rules, event: str, state: str) -> bool:
    return (
        any(event in t.events and ("*" in t.sources or state in t.sources) for t in rules.transitions)
        or event in rules.ignore
    )


def _changed_transitions(current: Rules, candidate: Rules) -> list[str]:
    old = {t.name: _shape(t) for t in current.transitions}
    return sorted(t.name for t in candidate.transitions if t.name in old and old[t.name] != _shape(t))


def _shape(rule: TransitionRule) -> tuple:
    """What a transition does, without where it is written."""
    return (
        rule.events,
        rule.sources,
        rule.dest,
        rule.kinds,
        rule.if_,
        rule.unless,
        tuple((step.action, repr(step.args)) for step in rule.steps),
    )


def _students(count: int) -> str:
    return f"{count} student{'s' if count != 1 else ''}"


def _memberships(count: int) -> str:
    return f"{count} membership{'s' if count != 1 else ''}"


def _examples(emails: list[str]) -> str:
    return f" (e.g. {', '.join(emails[:EXAMPLES])})" if emails else ""


# --- the rules at a git ref ---------------------------------------------------------------


class GitRefError(Exception):
    pass


@contextmanager
def rules_at_ref(rules_dir: Path, ref: str) -> Iterator[Path]:
    """The rules directory as it is at ``ref``, exported into a temporary folder."""
    rules_dir = rules_dir.resolve()
    try:
        top = Path(_git(rules_dir, "rev-parse", "--show-toplevel").strip()).resolve()
        prefix = rules_dir.relative_to(top).as_posix()
        _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        listing = _git(top, "ls-tree", "-r", "--name-only", ref, "--", prefix)
    except (OSError, ValueError) as exc:
        raise GitRefError(f"{rules_dir} is not inside a git work tree ({exc})") from exc
    with tempfile.TemporaryDirectory(prefix="engine-plan-") as tmp:
        target = Path(tmp) / rules_dir.name
        target.mkdir()
        for name in listing.splitlines():
            relative = Path(name).relative_to(prefix) if prefix != "." else Path(name)
            out = target / relative
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(_git_bytes(top, "show", f"{ref}:{name}"))
        yield target


def _git(cwd: Path, *args: str) -> str:
    return _git_bytes(cwd, *args).decode("utf-8")


def _git_bytes(cwd: Path, *args: str) -> bytes:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip() or f"git {' '.join(args)} failed"
        raise GitRefError(message)
    return done.stdout
