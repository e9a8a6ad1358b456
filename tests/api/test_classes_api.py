"""The course platform's read API (issue 25, part 2): its own read-only token, the classes, and each
class's enrollments as a feed of changes a poller pages through with a cursor, removals included,
never a change skipped or repeated; hostile parameters are a 422, never a 500. On PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from engine.api.app import create_app
from engine.db.models import ClassEnrollment, LoginAttempt, Membership, Student
from engine.pipeline.classes import enroll_student, unenroll_student
from tests.api.test_admin_hostile import assert_validation_error
from tests.conftest import ADMIN_TOKEN
from tests.fakes.course_poller import PollingPlatform

COURSE_TOKEN = "course-read-token-5f2c9a"
CLASS = "curso-2026"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
COURSE = {"Authorization": f"Bearer {COURSE_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def h(make_harness):
    # Wrong tokens on purpose: the lockout has its own test below.
    return make_harness(course_api_token=COURSE_TOKEN, login_max_failures=1000)


@pytest.fixture
def client(h) -> TestClient:
    return TestClient(create_app(h.runtime))


def student(h, email: str, *, state: str = "active", discord_id: str | None = None) -> tuple[int, int]:
    """A student with a membership of curso: (student id, membership id)."""
    with h.runtime.sessions.begin() as session:
        row = Student(email=email, name=email.split("@")[0].title(), discord_id=discord_id)
        session.add(row)
        session.flush()
        membership = Membership(student_id=row.id, product_key="curso", state=state)
        session.add(membership)
        session.flush()
        return row.id, membership.id


def enroll(h, ids: tuple[int, int], at: datetime, key: str = CLASS) -> None:
    with h.runtime.sessions.begin() as session:
        enroll_student(session, ids[0], key, membership_id=ids[1], now=at)


def unenroll(h, ids: tuple[int, int], at: datetime, key: str = CLASS) -> None:
    with h.runtime.sessions.begin() as session:
        unenroll_student(session, ids[0], [key], membership_id=ids[1], now=at)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


# --- the token ---------------------------------------------------------------------------------


def test_the_course_token_opens_the_read_api_and_nothing_else(client):
    assert client.get("/api/v1/classes", headers=COURSE).status_code == 200
    for headers in ({}, ADMIN, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {COURSE_TOKEN}"}):
        refused = client.get(f"/api/v1/classes/{CLASS}/enrollments", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json() == {"detail": "missing or invalid course API token"}
    # Read-only, and for the classes only: the admin API refuses it.
    for path in ("/admin/events", "/admin/students", "/metrics"):
        assert client.get(path, headers=COURSE).status_code == 401, path
    assert client.post("/admin/replay", headers=COURSE).status_code == 401


def test_without_a_course_token_set_every_request_is_refused(make_harness):
    client = TestClient(create_app(make_harness().runtime))
    for token in ("", "anything", ADMIN_TOKEN):
        assert client.get("/api/v1/classes", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_wrong_tokens_count_in_the_sign_in_lockout_the_admin_api_shares(make_harness):
    h = make_harness(course_api_token=COURSE_TOKEN, login_max_failures=2)
    client = TestClient(create_app(h.runtime))
    for wrong in ("guess-1", ADMIN_TOKEN):  # the admin token is a wrong token here
        assert client.get("/api/v1/classes", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    locked = client.get("/api/v1/classes", headers=COURSE)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert client.get("/admin/events", headers=ADMIN).status_code == 429  # one lockout per address
    with h.runtime.sessions() as session:
        assert session.scalars(select(LoginAttempt.operator)).all() == ["course-api", "course-api"]


def test_the_schema_documents_the_token_the_answers_and_the_cursor(client):
    from engine.service.classes import CURSOR_PATTERN

    spec = client.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["CourseApiToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer") and "COURSE_API_TOKEN" in scheme["description"]
    classes = spec["paths"]["/api/v1/classes"]["get"]
    enrollments = spec["paths"]["/api/v1/classes/{key}/enrollments"]["get"]
    for operation in (classes, enrollments):
        assert operation["security"] == [{"CourseApiToken": []}]
        assert {"200", "401", "429"} <= set(operation["responses"])
    assert {"404", "422"} <= set(enrollments["responses"])
    cursor = next(p for p in enrollments["parameters"] if p["name"] == "cursor")
    assert {"type": "string", "pattern": CURSOR_PATTERN} in cursor["schema"]["anyOf"]
    # No admin route takes the course token's scheme.
    for path, item in spec["paths"].items():
        for operation in item.values():
            if {"CourseApiToken": []} in operation.get("security", []):
                assert path.startswith("/api/v1/"), path


# --- the classes -------------------------------------------------------------------------------


def test_every_class_with_its_current_enrollments(h, client):
    ana, bia = student(h, "ana@example.com"), student(h, "bia@example.com")
    enroll(h, ana, minutes(1))
    enroll(h, bia, minutes(2))
    unenroll(h, bia, minutes(3))  # a tombstone: not counted

    listed = client.get("/api/v1/classes", headers=COURSE)
    assert listed.status_code == 200
    classes = {item["key"]: item for item in listed.json()["items"]}
    catalog = h.runtime.rules.rules.classes
    assert set(classes) == set(catalog)  # the catalog's classes, enrolled in or not
    assert classes[CLASS] == {"key": CLASS, "name": catalog[CLASS], "enrollments": 1}
    assert all(item["enrollments"] == 0 for key, item in classes.items() if key != CLASS)


def test_an_unknown_class_is_404_and_a_catalog_class_nobody_joined_is_an_empty_feed(h, client):
    missing = client.get("/api/v1/classes/no-such-class/enrollments", headers=COURSE)
    assert missing.status_code == 404 and missing.json() == {"detail": "class 'no-such-class' not found"}
    # curso-2026 is in the catalog; no one was enrolled yet (the engine has no row of it).
    page = client.get(f"/api/v1/classes/{CLASS}/enrollments", headers=COURSE).json()
    assert (page["items"], page["has_more"], page["class_key"]) == ([], False, CLASS)
    # Its cursor is a place to poll from: a first enrollment comes after it.
    enroll(h, student(h, "ana@example.com"), minutes(1))
    later = client.get(
        f"/api/v1/classes/{CLASS}/enrollments", params={"cursor": page["next_cursor"]}, headers=COURSE
    ).json()
    assert [item["email"] for item in later["items"]] == ["ana@example.com"]


# --- the feed ----------------------------------------------------------------------------------


def test_a_poller_pages_through_every_change_once_removals_as_tombstones(h, client):
    ana = student(h, "ana@example.com", discord_id="80351110224678912")
    bia, caio = student(h, "bia@example.com"), student(h, "caio@example.com")
    enroll(h, ana, minutes(1))
    enroll(h, bia, minutes(2))
    enroll(h, caio, minutes(3))
    unenroll(h, bia, minutes(4))
    poller = PollingPlatform(client, COURSE_TOKEN, limit=2)

    first = poller.enrollments(CLASS, limit=2).json()
    assert [item["email"] for item in first["items"]] == ["ana@example.com", "caio@example.com"]
    assert first["has_more"] is True
    assert first["items"][0] == {
        "class_key": CLASS,
        "student_id": ana[0],
        "email": "ana@example.com",
        "name": "Ana",
        "discord_id": "80351110224678912",
        "product": "curso",
        "membership_state": "active",
        "enrolled_at": "2026-03-02T12:01:00Z",
        "removed": False,
        "removed_at": None,
        "changed_at": "2026-03-02T12:01:00Z",
    }
    # Bia's removal moved her row to the end of the feed, as a tombstone.
    second = poller.enrollments(CLASS, limit=2, cursor=first["next_cursor"]).json()
    [tombstone] = second["items"]
    assert (tombstone["email"], tombstone["removed"], tombstone["removed_at"]) == (
        "bia@example.com",
        True,
        "2026-03-02T12:04:00Z",
    )
    assert tombstone["changed_at"] == tombstone["removed_at"] and second["has_more"] is False

    assert [item["email"] for item in poller.poll(CLASS)] == [
        "ana@example.com",
        "caio@example.com",
        "bia@example.com",
    ]
    assert poller.emails(CLASS) == {"ana@example.com", "caio@example.com"}
    cursor = poller.cursors[CLASS]
    assert poller.poll(CLASS) == [] and poller.cursors[CLASS] == cursor  # nothing new: the same place

    enroll(h, bia, minutes(5))  # Bia comes back: her row again, enrolled
    enroll(h, ana, minutes(6))  # already enrolled: no change
    [back] = poller.poll(CLASS)
    assert (back["email"], back["removed"], back["enrolled_at"]) == ("bia@example.com", False, "2026-03-02T12:05:00Z")
    assert poller.emails(CLASS) == {"ana@example.com", "bia@example.com", "caio@example.com"}
    assert len(poller.received) == 4  # each change handed out once


def test_since_starts_at_a_time_and_a_cursor_wins_over_it(h, client):
    ana, bia, caio = (student(h, f"{name}@example.com") for name in ("ana", "bia", "caio"))
    for n, ids in enumerate((ana, bia, caio), 1):
        enroll(h, ids, minutes(n))
    poller = PollingPlatform(client, COURSE_TOKEN)

    def emails(**params) -> list[str]:
        response = poller.enrollments(CLASS, **params)
        assert response.status_code == 200, response.text
        return [item["email"] for item in response.json()["items"]]

    assert emails(since="2026-03-02T12:02:00Z") == ["bia@example.com", "caio@example.com"]  # at or after
    assert emails(since="2026-03-02T09:02:00-03:00") == ["bia@example.com", "caio@example.com"]
    assert emails(since="2026-03-02T12:02:00") == ["bia@example.com", "caio@example.com"]  # no zone: UTC
    assert emails(since="2026-03-02T12:02:00.000001Z") == ["caio@example.com"]
    after_ana = poller.enrollments(CLASS, limit=1).json()["next_cursor"]
    assert emails(cursor=after_ana, since="2026-03-02T12:03:00Z") == ["bia@example.com", "caio@example.com"]


def test_changes_are_ordered_as_they_were_made_even_when_a_writers_clock_is_behind(h, client):
    """Two workers' clocks may disagree: a change made after another gets a later changed_at anyway,
    so a poller that saw the first cannot miss the second."""
    ana, bia, caio = (student(h, f"{name}@example.com") for name in ("ana", "bia", "caio"))
    enroll(h, ana, minutes(10))
    enroll(h, bia, minutes(1))  # this worker's clock is nine minutes behind
    enroll(h, caio, minutes(10))  # the same instant as Ana's
    with h.runtime.sessions() as session:
        rows = session.execute(select(ClassEnrollment.student_id, ClassEnrollment.changed_at).order_by("id")).all()
    assert [student_id for student_id, _ in rows] == [ana[0], bia[0], caio[0]]
    times = [at for _, at in rows]
    assert times[0] == minutes(10) and times[0] < times[1] < times[2]
    assert times[1] - times[0] == timedelta(microseconds=1)

    poller = PollingPlatform(client, COURSE_TOKEN)
    assert [item["email"] for item in poller.poll(CLASS)] == ["ana@example.com", "bia@example.com", "caio@example.com"]


# --- hostile input -----------------------------------------------------------------------------

URL = f"/api/v1/classes/{CLASS}/enrollments"


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"cursor": ""}, "cursor"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "12-"}, "cursor"),
        ({"cursor": "-12"}, "cursor"),
        ({"cursor": "1-2-3"}, "cursor"),
        ({"cursor": "1.5-2"}, "cursor"),
        ({"cursor": "+1-2"}, "cursor"),
        ({"cursor": "١٢-٣"}, "cursor"),  # digits, but not ASCII ones
        ({"cursor": "1234567890123456789-1"}, "cursor"),
        ({"cursor": "1-12345678901234567"}, "cursor"),
        ({"cursor": "1-2\x00"}, "cursor"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"since": "1700000000"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": str(2**63)}, "limit"),
    ],
)
def test_bad_cursor_since_or_limit_is_422(client, params, name):
    assert_validation_error(client.get(URL, params=params, headers=COURSE), name)


@pytest.mark.parametrize("key", ["a%00b", "tab%09here", "x" * 101])
def test_a_bad_class_key_is_422(client, key):
    assert_validation_error(client.get(f"/api/v1/classes/{key}/enrollments", headers=COURSE), "key")


def test_every_cursor_the_pattern_allows_is_a_place_in_the_feed(h, client):
    """The schema's pattern is the whole contract: the largest numbers it allows are clamped, not refused."""
    enroll(h, student(h, "ana@example.com"), minutes(1))
    for cursor in ("999999999999999999-9999999999999999", "0-0", "000000000000000000-0000000000000000"):
        response = client.get(URL, params={"cursor": cursor}, headers=COURSE)
        assert response.status_code == 200, (cursor, response.text)
    assert client.get(URL, params={"cursor": "0-0"}, headers=COURSE).json()["items"][0]["email"] == "ana@example.com"
    end = client.get(URL, params={"cursor": "999999999999999999-9999999999999999"}, headers=COURSE).json()
    assert end["items"] == [] and end["next_cursor"] == "315537897599999999-9007199254740991"
