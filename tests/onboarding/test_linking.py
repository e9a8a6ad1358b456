"""/registrar and member joins against the real PostgreSQL, through the real pipeline.

The bot's texts are read from the rules (never hard-coded here): a test compares the
reply with ``rules.onboarding.replies[outcome]``.
"""

from __future__ import annotations

import copy
import threading
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import sessionmaker

from engine.db.models import Event, LinkAttempt, Membership, OnboardingToken, Student
from engine.onboarding.codes import CODE_ALPHABET
from engine.onboarding.linking import LinkService
from tests.conftest import load_payload, wait_until

EMAIL = "ana.exemplo@example.com"
ACCOUNT_A = 80351110224678912
ACCOUNT_B = 1180000000000099999
STRANGER = 999000111222333444
COURSE_ROLES = ["1180000000000000001"]


# helpers ---------------------------------------------------------------------------------------


def seed(h) -> str:
    """Ana buys the course: pending_onboarding with an open code; returns the code."""
    h.deliver(load_payload("purchase_approved.json"))
    assert states(h) == {"curso": "pending_onboarding"}
    code = open_code(h)
    assert len(code) == 8 and set(code) <= set(CODE_ALPHABET)
    return code


def open_code(h) -> str:
    with h.runtime.sessions() as session:
        tokens = session.scalars(
            select(OnboardingToken).where(OnboardingToken.used_at.is_(None), OnboardingToken.revoked_at.is_(None))
        ).all()
    assert len(tokens) == 1
    return tokens[0].code


def service(h, **kwargs) -> LinkService:
    return LinkService(h.runtime.sessions, h.runtime.rules, h.queued.append, clock=h.clock, **kwargs)


def replies(h) -> dict[str, str]:
    return h.runtime.rules.rules.onboarding.replies


def states(h) -> dict[str, str]:
    with h.runtime.sessions() as session:
        return {m.product_key: m.state for m in session.scalars(select(Membership))}


def student(h) -> Student:
    with h.runtime.sessions() as session:
        return session.scalars(select(Student).where(Student.email == EMAIL)).one()


def events(h, event_type: str) -> list[Event]:
    with h.runtime.sessions() as session:
        return session.scalars(select(Event).where(Event.type == event_type).order_by(Event.id)).all()


def attempts(h) -> list[tuple[str, str]]:
    with h.runtime.sessions() as session:
        return [(a.discord_user_id, a.outcome) for a in session.scalars(select(LinkAttempt).order_by(LinkAttempt.id))]


def discord_calls(h) -> list[tuple[str, list[str], str | None]]:
    """(action, role ids, account acted on) of every Discord step, in order."""
    return [
        (step.action, step.params["role_ids"], step.params.get("discord_id") or ctx.student.discord_id)
        for step, ctx in h.discord.calls
    ]


def new_purchase(payload_id: str, offset_ms: int = 1000) -> dict:
    """Another approval of the course (new envelope id, later date): the rules issue a new code."""
    payload = copy.deepcopy(load_payload("purchase_approved.json"))
    payload["id"] = payload_id
    payload["creation_date"] += offset_ms
    payload["data"]["purchase"]["transaction"] = f"HP-{payload_id}"
    return payload


def add_token(h, code: str, *, days: int = 7) -> None:
    """An open code for Ana, as an admin action would issue (old open codes revoked)."""
    with h.runtime.sessions.begin() as session:
        ana = session.scalars(select(Student).where(Student.email == EMAIL)).one()
        for token in session.scalars(select(OnboardingToken).where(OnboardingToken.used_at.is_(None))):
            token.revoked_at = token.revoked_at or h.clock()
        session.add(
            OnboardingToken(
                code=code, student_id=ana.id, created_at=h.clock(), expires_at=h.clock() + timedelta(days=days)
            )
        )


# replies ---------------------------------------------------------------------------------------


def test_valid_code_links_and_the_worker_grants_access(make_harness):
    h = make_harness()
    code = seed(h)
    svc = service(h)

    outcome = svc.link(ACCOUNT_A, f"  {code.lower()} ")

    assert outcome.outcome == "linked"
    assert outcome.reply == replies(h)["linked"]
    assert h.queued == [outcome.event_id]  # enqueued after the commit
    ana = student(h)
    assert ana.discord_id == str(ACCOUNT_A) and ana.previous_discord_id is None
    [linked] = events(h, "DISCORD_LINKED")
    assert linked.id == outcome.event_id and linked.source == "bot" and linked.student_id == ana.id
    assert linked.dedupe_key.startswith("link:")
    assert linked.payload["fields"] == {"discord_id": str(ACCOUNT_A), "previous_discord_id": None}
    with h.runtime.sessions() as session:
        token = session.scalars(select(OnboardingToken).where(OnboardingToken.code == code)).one()
    assert token.used_at == h.clock() and token.used_by_discord_id == str(ACCOUNT_A)
    assert h.discord.calls == []  # the bot never calls a connector

    assert h.run_queue() == ["processed"]
    assert states(h) == {"curso": "active"}
    [(step, ctx)] = h.discord.calls
    assert step.action == "add_role" and step.params["role_ids"] == COURSE_ROLES
    assert ctx.student.discord_id == str(ACCOUNT_A)
    assert attempts(h) == []  # a success is no failed attempt


def test_same_user_again_is_linked_without_a_new_event(make_harness):
    h = make_harness()
    code = seed(h)
    svc = service(h)
    first = svc.link(ACCOUNT_A, code)
    h.run_queue()

    again = svc.link(str(ACCOUNT_A), code)

    assert again.outcome == "linked" and again.reply == replies(h)["linked"]
    assert again.event_id is None and h.queued == []
    assert [e.id for e in events(h, "DISCORD_LINKED")] == [first.event_id]
    assert attempts(h) == []


def test_unknown_code(make_harness):
    h = make_harness()
    code = seed(h)
    svc = service(h)
    other = next(c for c in ("ABCDEFGH", "HGFEDCBA") if c != code)

    for typed in (other, "short", "ABCDEFG0", "ABCDEFGHJ"):  # unknown; wrong length; not in the alphabet
        outcome = svc.link(ACCOUNT_A, typed)
        assert (outcome.outcome, outcome.reply) == ("unknown_code", replies(h)["unknown_code"])

    assert student(h).discord_id is None
    assert events(h, "DISCORD_LINKED") == [] and h.queued == []
    assert attempts(h) == [(str(ACCOUNT_A), "unknown_code")] * 4


def test_expired_code(make_harness):
    h = make_harness()
    code = seed(h)
    h.clock.advance(days=8)

    outcome = service(h).link(ACCOUNT_A, code)

    assert (outcome.outcome, outcome.reply) == ("expired_code", replies(h)["expired_code"])
    assert student(h).discord_id is None and events(h, "DISCORD_LINKED") == []
    assert attempts(h) == [(str(ACCOUNT_A), "expired_code")]


def test_code_still_valid_just_before_expiry(make_harness):
    h = make_harness()
    code = seed(h)
    h.clock.advance(days=7, seconds=-1)

    assert service(h).link(ACCOUNT_A, code).outcome == "linked"


def test_code_replaced_by_a_newer_one_replies_expired(make_harness):
    h = make_harness()
    old = seed(h)
    h.deliver(new_purchase("second-approval"))  # new_purchase_while_onboarding: a new code
    new = open_code(h)
    assert new != old
    svc = service(h)

    stale = svc.link(ACCOUNT_A, old)
    assert (stale.outcome, stale.reply) == ("expired_code", replies(h)["expired_code"])
    assert student(h).discord_id is None

    assert svc.link(ACCOUNT_A, new).outcome == "linked"


def test_code_of_a_refunded_purchase_says_the_access_ended(make_harness):
    h = make_harness()
    code = seed(h)
    h.deliver(load_payload("purchase_refunded.json"))  # revoke_token: the access ended
    outcome = service(h).link(ACCOUNT_A, code)
    assert (outcome.outcome, outcome.reply) == ("access_ended_code", replies(h)["access_ended_code"])
    assert student(h).discord_id is None and events(h, "DISCORD_LINKED") == []


def test_without_the_optional_reply_a_refunded_code_says_expired(make_harness, tmp_path):
    import shutil

    from tests.conftest import RULES

    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    onboarding = rules_dir / "onboarding.yaml"
    onboarding.write_text(
        "".join(line for line in onboarding.read_text().splitlines(keepends=True) if "access_ended_code" not in line)
    )
    h = make_harness(rules_dir=rules_dir)
    code = seed(h)
    h.deliver(load_payload("purchase_refunded.json"))
    assert service(h).link(ACCOUNT_A, code).outcome == "expired_code"


def test_used_code(make_harness):
    h = make_harness()
    code = seed(h)
    svc = service(h)
    assert svc.link(ACCOUNT_A, code).outcome == "linked"

    outcome = svc.link(ACCOUNT_B, code)

    assert (outcome.outcome, outcome.reply) == ("used_code", replies(h)["used_code"])
    assert student(h).discord_id == str(ACCOUNT_A)
    assert len(events(h, "DISCORD_LINKED")) == 1
    assert attempts(h) == [(str(ACCOUNT_B), "used_code")]


def test_used_code_after_the_account_moved_on(make_harness):
    """The first user of a code, no longer the linked account, cannot take it back."""
    h = make_harness()
    code = seed(h)
    svc = service(h)
    assert svc.link(ACCOUNT_A, code).outcome == "linked"
    add_token(h, "RELNKB22")
    assert svc.link(ACCOUNT_B, "RELNKB22").outcome == "linked"

    assert svc.link(ACCOUNT_A, code).outcome == "used_code"
    assert student(h).discord_id == str(ACCOUNT_B)


def test_account_linked_to_another_student(make_harness):
    h = make_harness()
    code = seed(h)
    with h.runtime.sessions.begin() as session:
        session.add(Student(email="bruno@example.com", discord_id=str(ACCOUNT_A)))

    outcome = service(h).link(ACCOUNT_A, code)

    assert (outcome.outcome, outcome.reply) == ("linked_to_other_student", replies(h)["linked_to_other_student"])
    assert student(h).discord_id is None
    assert open_code(h) == code  # the code is still Ana's to use
    assert events(h, "DISCORD_LINKED") == []
    assert attempts(h) == [(str(ACCOUNT_A), "linked_to_other_student")]


def test_too_many_attempts_then_the_window_passes(make_harness):
    h = make_harness()
    code = seed(h)
    svc = service(h)
    onboarding = h.runtime.rules.rules.onboarding
    assert onboarding.max_failed_attempts == 5

    for _ in range(onboarding.max_failed_attempts):
        assert svc.link(ACCOUNT_A, "ZZZZZZZZ").outcome == "unknown_code"
        h.clock.advance(seconds=10)

    refused = svc.link(ACCOUNT_A, code)  # even a valid code
    assert (refused.outcome, refused.reply) == ("too_many_attempts", replies(h)["too_many_attempts"])
    assert student(h).discord_id is None and events(h, "DISCORD_LINKED") == []
    # Another Discord user is not affected.
    assert svc.link(ACCOUNT_B, "ZZZZZZZZ").outcome == "unknown_code"

    # Retrying while refused does not extend the wait: it ends `window` after the failures.
    h.clock.advance(minutes=5)
    assert svc.link(ACCOUNT_A, code).outcome == "too_many_attempts"
    h.clock.advance(seconds=onboarding.failed_attempts_window.total_seconds() - 5 * 60 - 50 + 1)
    assert svc.link(ACCOUNT_A, code).outcome == "linked"

    outcomes = [o for user, o in attempts(h) if user == str(ACCOUNT_A)]
    assert outcomes == ["unknown_code"] * 5 + ["too_many_attempts"] * 2


# relink and rejoin ---------------------------------------------------------------------------


def test_relink_moves_the_roles_to_the_new_account(make_harness):
    h = make_harness()
    code = seed(h)
    svc = service(h)
    assert svc.link(ACCOUNT_A, code).outcome == "linked"
    h.run_queue()
    assert states(h) == {"curso": "active"}
    h.discord.calls.clear()

    add_token(h, "RELNKC23")
    outcome = svc.link(ACCOUNT_B, " relnkc23")

    assert outcome.outcome == "linked"
    ana = student(h)
    assert ana.discord_id == str(ACCOUNT_B) and ana.previous_discord_id == str(ACCOUNT_A)
    relink = events(h, "DISCORD_LINKED")[-1]
    assert relink.payload["fields"] == {"discord_id": str(ACCOUNT_B), "previous_discord_id": str(ACCOUNT_A)}

    assert h.run_queue() == ["processed"]
    assert discord_calls(h) == [
        ("remove_role", COURSE_ROLES, str(ACCOUNT_A)),
        ("add_role", COURSE_ROLES, str(ACCOUNT_B)),
    ]
    remove_step = h.discord.calls[0][0]
    assert remove_step.params["discord_id"] == str(ACCOUNT_A)
    assert states(h) == {"curso": "active"}


def test_member_joined_gives_the_roles_back(make_harness):
    h = make_harness()
    code = seed(h)
    svc = service(h)
    svc.link(ACCOUNT_A, code)
    h.run_queue()
    h.discord.calls.clear()

    event_id = svc.member_joined(ACCOUNT_A)

    assert event_id is not None and h.queued == [event_id]
    [joined] = events(h, "MEMBER_JOINED")
    assert joined.id == event_id and joined.source == "bot" and joined.product_key is None
    assert joined.student_id == student(h).id
    assert h.run_queue() == ["processed"]
    assert discord_calls(h) == [("add_role", COURSE_ROLES, str(ACCOUNT_A))]


def test_member_joined_for_strangers_stores_nothing(make_harness):
    h = make_harness()
    seed(h)  # Ana is a student, but not linked yet
    svc = service(h)

    assert svc.member_joined(STRANGER) is None
    with h.runtime.sessions.begin() as session:  # linked, but no membership
        session.add(Student(email="sem.compra@example.com", discord_id=str(ACCOUNT_B)))
    assert svc.member_joined(ACCOUNT_B) is None

    assert events(h, "MEMBER_JOINED") == [] and h.queued == []


# concurrency and failures -------------------------------------------------------------------------


def test_two_simultaneous_uses_of_one_code_link_once(make_harness):
    h = make_harness()
    code = seed(h)
    svc = service(h)
    barrier = threading.Barrier(2)
    results: dict[int, str] = {}

    def attempt(user: int) -> None:
        barrier.wait()
        results[user] = svc.link(user, code).outcome

    threads = [threading.Thread(target=attempt, args=(user,)) for user in (ACCOUNT_A, ACCOUNT_B)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results.values()) == ["linked", "used_code"]
    winner = next(user for user, outcome in results.items() if outcome == "linked")
    assert student(h).discord_id == str(winner)
    assert len(events(h, "DISCORD_LINKED")) == 1 and len(h.queued) == 1


def waiting_on_a_lock(h) -> bool:
    """Whether a session of this test's database is waiting for a lock another one holds."""
    with h.runtime.sessions() as session:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        return session.scalar(text(query)) > 0


def test_a_code_being_used_blocks_the_second_user_until_the_first_commits(make_harness):
    """The token row lock: the second attempt waits, then sees the code as used."""
    h = make_harness()
    code = seed(h)
    svc = service(h)
    result: list[str] = []
    with h.runtime.sessions.begin() as holder:
        token = holder.scalars(select(OnboardingToken).where(OnboardingToken.code == code).with_for_update()).one()
        worker = threading.Thread(target=lambda: result.append(svc.link(ACCOUNT_B, code).outcome))
        worker.start()
        wait_until(lambda: waiting_on_a_lock(h), timeout=10, what="the second attempt to wait on the token's row lock")
        assert worker.is_alive() and result == []  # waiting on the row lock
        token.used_at, token.used_by_discord_id = h.clock(), str(ACCOUNT_A)
    worker.join(timeout=30)

    assert result == ["used_code"]
    assert student(h).discord_id is None and events(h, "DISCORD_LINKED") == []


def test_database_down_replies_unavailable_and_keeps_the_code(make_harness):
    h = make_harness()
    code = seed(h)
    dead = sessionmaker(
        create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    )
    broken = LinkService(dead, h.runtime.rules, h.queued.append, clock=h.clock)

    outcome = broken.link(ACCOUNT_A, code)

    assert (outcome.outcome, outcome.reply) == ("unavailable", replies(h)["unavailable"])
    assert broken.member_joined(ACCOUNT_A) is None
    assert h.queued == [] and attempts(h) == []
    assert service(h).link(ACCOUNT_A, code).outcome == "linked"


def test_a_failing_queue_does_not_lose_the_link(make_harness):
    h = make_harness()
    code = seed(h)

    def queue_down(event_id: int) -> None:
        raise ConnectionError("redis is down")

    outcome = service(h).link(ACCOUNT_A, code)  # sanity: the normal path enqueues
    assert h.queued == [outcome.event_id]
    h.queued.clear()
    add_token(h, "QUEUEDWN")
    down = LinkService(h.runtime.sessions, h.runtime.rules, queue_down, clock=h.clock)

    relinked = down.link(ACCOUNT_B, "QUEUEDWN")

    assert relinked.outcome == "linked" and relinked.event_id is not None
    with h.runtime.sessions() as session:
        assert session.get(Event, relinked.event_id).status == "received"  # the sweep will find it


@pytest.mark.parametrize("typed", ["", "        ", "ÁBCDEFGH"])
def test_malformed_input_is_unknown(make_harness, typed):
    h = make_harness()
    seed(h)
    assert service(h).link(ACCOUNT_A, typed).outcome == "unknown_code"
