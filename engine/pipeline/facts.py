"""What planning reads besides the rules: a stored event's input, and the facts about its student.

One definition each, shared by the stages of an event (admission, planning) and by the fold of
a membership's history (:mod:`engine.pipeline.ordering`), so that every place decides alike.
"""

from __future__ import annotations

from datetime import datetime

from engine.db.models import Event, Membership, Student
from engine.lifecycle.inputs import EventInput, event_input
from engine.lifecycle.planner import Facts
from engine.onboarding.codes import new_code
from engine.rules.model import Rules


class TaskInputs:
    """The stored events' inputs one task has read, by event id: each payload parsed once per task
    (a batch, its fold and its late-event checks read the same history)."""

    def __init__(self, rules: Rules) -> None:
        self._rules = rules
        self._parsed: dict[int, EventInput | None] = {}

    def of(self, event: Event) -> EventInput | None:
        """The event's input; None for an event stored without a body (not JSON)."""
        if event.id not in self._parsed:
            body = event.payload
            # A Hotmart webhook is always read as Hotmart, whatever its shape (engine.lifecycle.inputs).
            self._parsed[event.id] = None if body is None else event_input(body, self._rules, source=event.source)
        return self._parsed[event.id]


def event_facts(
    now: datetime,
    inp: EventInput,
    *,
    email: str,
    name: str | None,
    discord_id: str | None,
    transaction: str | None = None,
    with_token: bool = True,
) -> Facts:
    """What the planner knows besides the event. ``transaction``: the membership's (None: no
    membership yet, or none known). ``with_token``: draw the code an issue_token step stores (a
    dry-run leaves the placeholder)."""
    return Facts(
        now=now,
        discord_linked=bool(discord_id),
        discord_id=inp.fields.get("discord_id") or discord_id,
        previous_discord_id=inp.fields.get("previous_discord_id"),
        email=email,
        name=name,
        token=new_code() if with_token else None,
        transaction=transaction,
    )


def student_facts(
    now: datetime, inp: EventInput, student: Student, membership: Membership | None, *, with_token: bool = True
) -> Facts:
    """:func:`event_facts` for a student as stored, and their membership of the event's product."""
    return event_facts(
        now,
        inp,
        email=student.email,
        name=student.name,
        discord_id=student.discord_id,
        transaction=membership.transaction if membership else None,
        with_token=with_token,
    )
