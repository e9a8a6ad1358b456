"""Linking a Discord account to a student: what ``/registrar`` and a member join do.

Pure database logic (no Discord import), so it is tested as plain Python. The bot never
calls a connector: a successful link stores a ``DISCORD_LINKED`` event and a (re)join of a
linked student stores a ``MEMBER_JOINED`` event; the worker plans and runs both like any
other event. Every text a student reads comes from ``rules/onboarding.yaml``.

Choices:

- **Attempt limit.** Checked first, per Discord user: with ``failed_attempts.max`` failed
  attempts (unknown, expired, used code, account linked to another student) inside
  ``failed_attempts.window``, the attempt is refused with ``too_many_attempts``. The
  refusal is recorded (outcome ``too_many_attempts``) for the audit but does not count
  toward the limit, so the wait ends ``window`` after the failures, however often the
  user retries meanwhile (a sliding window over real failures, never a lock that extends
  itself). A database error (``unavailable``) is our fault and is not recorded at all.
- **Codes.** Stripped and upper-cased; anything that is not 8 characters of the code
  alphabet is ``unknown_code`` without a lookup. A code replaced by a newer one (revoked)
  answers ``expired_code``, like an expired one: the reply tells how to get a new one.
  A used code answers ``used_code``, except when this same Discord user used it and is
  still the account linked to the student: then ``linked`` again, and no new event.
- **One winner.** The token row is read ``FOR UPDATE`` (PostgreSQL; SQLite serialises
  writers with ``BEGIN IMMEDIATE``), so of two simultaneous uses of one code exactly one
  links; the event's unique ``link:<token id>`` key is the backstop. A user's attempts
  are serialised by a transaction-level advisory lock, so the limit holds under
  concurrency too.
- **Nothing lost.** Marking the code used, moving the account, and storing the event are
  one transaction; the event is queued only after the commit (if the queue is down, the
  sweep finds the stored event later). Any database error rolls everything back and
  answers ``unavailable``: the code stays valid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from engine.db.conflicts import retry_conflicts
from engine.db.locks import Namespace, lock_buyer_for_transaction, transaction_lock
from engine.db.models import LinkAttempt, Membership, OnboardingToken, Student, utcnow
from engine.onboarding.codes import CODE_ALPHABET
from engine.pipeline.intake import store_internal
from engine.pipeline.rules_repository import RulesRepository
from engine.rules.model import Onboarding

log = logging.getLogger(__name__)

CODE_LENGTH = 8
_ALPHABET = frozenset(CODE_ALPHABET)

LINKED = "linked"
UNKNOWN_CODE = "unknown_code"
EXPIRED_CODE = "expired_code"
ACCESS_ENDED = "access_ended_code"  # optional in the rules; expired_code stands in without it
USED_CODE = "used_code"
LINKED_TO_OTHER_STUDENT = "linked_to_other_student"
TOO_MANY_ATTEMPTS = "too_many_attempts"
UNAVAILABLE = "unavailable"

# The outcomes that count toward the attempt limit.
FAILED_OUTCOMES = frozenset({UNKNOWN_CODE, EXPIRED_CODE, ACCESS_ENDED, USED_CODE, LINKED_TO_OTHER_STUDENT})


@dataclass(frozen=True)
class LinkOutcome:
    outcome: str  # one of the reply keys in rules/onboarding.yaml
    reply: str  # the pt-BR text for the student
    event_id: int | None = None  # the DISCORD_LINKED event stored by this attempt

    @property
    def linked(self) -> bool:
        return self.outcome == LINKED


class _Lost(Exception):
    """Rolls the transaction back: another attempt used the token first (dedupe backstop)."""


def normalize_code(code: str) -> str:
    return (code or "").strip().upper()


def is_well_formed(code: str) -> bool:
    return len(code) == CODE_LENGTH and set(code) <= _ALPHABET


class LinkService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        rules_repo: RulesRepository,
        enqueue: Callable[[int], None],
        clock: Callable[[], datetime] = utcnow,
    ):
        self.sessions = sessions
        self.rules_repo = rules_repo
        self.enqueue = enqueue
        self.clock = clock

    # public ------------------------------------------------------------------------------------

    def reply(self, outcome: str) -> str:
        return self._onboarding().replies[outcome]

    def link(self, discord_user_id: int | str, code: str) -> LinkOutcome:
        """Link the Discord user to the student whose code this is; never raises."""
        user = str(discord_user_id).strip()
        code = normalize_code(code)
        onboarding = self._onboarding()

        def attempt() -> tuple[str, int | None]:
            with self.sessions.begin() as session:
                return self._link(session, onboarding, user, code, self.clock())

        try:
            outcome, event_id = retry_conflicts(attempt, f"Discord user {user}'s link")
        except _Lost:
            outcome, event_id = USED_CODE, None
        except SQLAlchemyError:
            log.exception("linking Discord user %s failed on the database", user)
            return LinkOutcome(UNAVAILABLE, onboarding.replies[UNAVAILABLE])
        if event_id is not None:
            self._enqueue(event_id)
        log.info("link attempt by Discord user %s: %s", user, outcome)
        return LinkOutcome(outcome, onboarding.replies[outcome], event_id)

    def member_joined(self, discord_user_id: int | str) -> int | None:
        """Store MEMBER_JOINED for the linked student with memberships; None otherwise."""
        user = str(discord_user_id).strip()
        try:
            with self.sessions.begin() as session:
                student = session.scalar(select(Student).where(Student.discord_id == user))
                if student is None:
                    return None
                has_membership = session.scalar(
                    select(func.count()).select_from(Membership).where(Membership.student_id == student.id)
                )
                if not has_membership:
                    return None
                stored = store_internal(
                    session,
                    "MEMBER_JOINED",
                    email=student.email,
                    student_id=student.id,
                    fields={"discord_id": user},
                    source="bot",
                    occurred_at=self.clock(),
                )
                event_id = stored.event_id
        except SQLAlchemyError:
            log.exception("storing MEMBER_JOINED for Discord user %s failed", user)
            return None
        if event_id is not None:
            self._enqueue(event_id)
        return event_id

    # internals ---------------------------------------------------------------------------------

    def _says(self, outcome: str) -> bool:
        return outcome in self.rules_repo.rules.onboarding.replies

    def _onboarding(self) -> Onboarding:
        try:
            self.rules_repo.reload_if_changed()  # the bot runs for weeks; admins edit the texts
        except Exception:  # noqa: BLE001 - keep the rules we have
            log.warning("could not reload the rules", exc_info=True)
        return self.rules_repo.rules.onboarding

    def _enqueue(self, event_id: int) -> None:
        try:
            self.enqueue(event_id)
        except Exception:  # noqa: BLE001 - the event is stored; the sweep enqueues it later
            log.warning("could not enqueue event %s; the sweep will", event_id, exc_info=True)

    def _link(
        self, session: Session, onboarding: Onboarding, user: str, code: str, now: datetime
    ) -> tuple[str, int | None]:
        self._lock_user(session, user)
        failures = session.scalar(
            select(func.count())
            .select_from(LinkAttempt)
            .where(
                LinkAttempt.discord_user_id == user,
                LinkAttempt.at > now - onboarding.failed_attempts_window,
                LinkAttempt.outcome.in_(FAILED_OUTCOMES),
            )
        )
        if failures >= onboarding.max_failed_attempts:
            return self._record(session, user, now, TOO_MANY_ATTEMPTS), None
        outcome, event_id = self._try_code(session, user, code, now)
        if outcome in FAILED_OUTCOMES:
            self._record(session, user, now, outcome)
        return outcome, event_id

    def _try_code(self, session: Session, user: str, code: str, now: datetime) -> tuple[str, int | None]:
        if not is_well_formed(code):
            return UNKNOWN_CODE, None
        owner = session.scalar(select(OnboardingToken.student_id).where(OnboardingToken.code == code))
        if owner is None:
            return UNKNOWN_CODE, None
        # The buyer's lock before their rows (engine.db.locks): a worker may be issuing or revoking codes.
        lock_buyer_for_transaction(session, session.scalar(select(Student.email).where(Student.id == owner)))
        token = session.scalar(select(OnboardingToken).where(OnboardingToken.code == code).with_for_update())
        student = session.scalar(select(Student).where(Student.id == token.student_id).with_for_update())
        if token.used_at is not None:
            if token.used_by_discord_id == user and student.discord_id == user:
                return LINKED, None  # the same user again: already done, nothing new
            return USED_CODE, None
        if token.revoked_at is not None and token.revoked_reason == "access_ended" and self._says(ACCESS_ENDED):
            return ACCESS_ENDED, None  # refunded or charged back: "ask for a new code" would mislead
        if token.revoked_at is not None or token.expires_at <= now:
            return EXPIRED_CODE, None
        other = session.scalar(select(Student.id).where(Student.discord_id == user, Student.id != student.id))
        if other is not None:
            return LINKED_TO_OTHER_STUDENT, None

        token.used_at = now
        token.used_by_discord_id = user
        previous = student.discord_id if student.discord_id and student.discord_id != user else None
        if previous:
            student.previous_discord_id = previous
        student.discord_id = user
        session.flush()
        stored = store_internal(
            session,
            "DISCORD_LINKED",
            email=student.email,
            student_id=student.id,
            fields={"discord_id": user, "previous_discord_id": previous},
            source="bot",
            dedupe_key=f"link:{token.id}",
            occurred_at=now,
        )
        if stored.event_id is None:
            raise _Lost
        return LINKED, stored.event_id

    @staticmethod
    def _record(session: Session, user: str, now: datetime, outcome: str) -> str:
        session.add(LinkAttempt(discord_user_id=user, at=now, outcome=outcome))
        return outcome

    @staticmethod
    def _lock_user(session: Session, user: str) -> None:
        """Serialise one Discord user's attempts (PostgreSQL; SQLite serialises writers anyway)."""
        transaction_lock(session, Namespace.DISCORD_USER, user)
