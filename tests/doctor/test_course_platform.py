"""`engine doctor` for the course platform's webhook: the secret is set and usable, the URL answers;
and, with COURSE_ENROLLMENTS_URL, a signed read of a class's enrollments answers within the contract."""

from __future__ import annotations

import pytest

from tests.doctor.conftest import World, doctor, lines
from tests.fakes import course_platform_app
from tests.fakes.server import free_port, serve


@pytest.fixture
def platform_url():
    with serve(course_platform_app.create_app()) as url:
        yield f"{url}/webhooks"


@pytest.fixture
def platform():
    app = course_platform_app.create_app()
    with serve(app) as url:
        yield app.state.fake, url


def test_a_good_setup_passes_without_sending_anything(world: World, platform_url: str, monkeypatch):
    monkeypatch.setenv("COURSE_WEBHOOK_ENABLED", "true")
    monkeypatch.setenv("COURSE_WEBHOOK_URL", platform_url)
    monkeypatch.setenv("COURSE_WEBHOOK_SECRET", course_platform_app.SECRET)
    result = doctor()
    assert result.exit_code == 0, result.stdout
    assert "ok    classes   COURSE_WEBHOOK_SECRET set (whsec_: a 32-byte key)" in result.stdout
    assert f"ok    classes   the course platform answers at {platform_url} (HTTP 405 to a GET)" in result.stdout
    # Production on plain http: said, not refused (a platform on the same host may be fine).
    assert lines(result, "warn") == [
        "warn  classes   COURSE_WEBHOOK_URL is not https: the messages carry students' e-mails"
    ]


def test_a_missing_secret_and_a_silent_url_are_each_named(world: World, monkeypatch):
    silent = f"http://127.0.0.1:{free_port()}/webhooks"
    monkeypatch.setenv("COURSE_WEBHOOK_ENABLED", "true")
    monkeypatch.setenv("COURSE_WEBHOOK_URL", silent)
    monkeypatch.delenv("COURSE_WEBHOOK_SECRET", raising=False)
    result = doctor()
    assert result.exit_code == 1
    assert [line for line in lines(result, "FAIL") if " classes " in line] == [
        "FAIL  classes   COURSE_WEBHOOK_SECRET is not set: share a whsec_ secret with the course platform",
        f"FAIL  classes   the course platform did not answer at {silent} (ConnectError): check it runs",
    ]


def test_a_wrong_path_a_bad_secret_and_a_plain_one(world: World, platform_url: str, monkeypatch):
    wrong = platform_url.replace("/webhooks", "/hooks")
    monkeypatch.setenv("COURSE_WEBHOOK_URL", wrong)
    monkeypatch.setenv("COURSE_WEBHOOK_SECRET", "whsec_not base64!")
    result = doctor("--course")  # the flag is off: asked for explicitly
    assert [line for line in lines(result, "FAIL") if " classes " in line] == [
        "FAIL  classes   COURSE_WEBHOOK_SECRET: a secret starting with whsec_ must be base64 after the prefix",
        f"FAIL  classes   nothing receives webhooks at {wrong} (HTTP 404): check COURSE_WEBHOOK_URL",
    ]
    monkeypatch.setenv("COURSE_WEBHOOK_SECRET", "short")
    plain = doctor("--course")
    assert [line for line in lines(plain, "warn") if " classes " in line][:2] == [
        "warn  classes   COURSE_WEBHOOK_SECRET is plain text: the platform's library must be handed its bytes; "
        "whsec_<base64> is the form every Standard Webhooks library reads as is",
        "warn  classes   COURSE_WEBHOOK_SECRET is 5 bytes: use 24 or more random bytes",
    ]


def test_off_it_is_not_checked_and_says_so(world: World):
    result = doctor()
    assert result.exit_code == 0, result.stdout
    assert not [line for line in result.stdout.splitlines() if " classes " in line]
    assert (
        "the course platform, the Hotmart API — its flag is off; pass --discord/--manychat/--course/--hotmart"
        in result.stdout
    )


def test_the_admin_doctor_route_reports_the_course_platform(world: World, platform_url: str, make_harness):
    from fastapi.testclient import TestClient

    from engine.api.app import create_app
    from tests.conftest import ADMIN_TOKEN

    h = make_harness(course_webhook_url=platform_url, course_webhook_secret=course_platform_app.SECRET)
    client = TestClient(create_app(h.runtime))
    report = client.get("/admin/doctor", params={"course": "true"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert report.status_code == 200, report.text
    assert {
        "area": "classes",
        "status": "ok",
        "message": f"the course platform answers at {platform_url} (HTTP 405 to a GET)",
    } in report.json()["checks"]


def test_the_enrollments_url_answers_a_signed_read(world: World, platform, monkeypatch):
    fake, url = platform
    fake.enroll_by_hand("curso-2026", "ana@example.com")
    monkeypatch.setenv("COURSE_WEBHOOK_ENABLED", "true")
    monkeypatch.setenv("COURSE_WEBHOOK_URL", f"{url}/webhooks")
    monkeypatch.setenv("COURSE_WEBHOOK_SECRET", course_platform_app.SECRET)
    monkeypatch.setenv("COURSE_ENROLLMENTS_URL", f"{url}/enrollments")
    result = doctor()
    assert result.exit_code == 0, result.stdout
    assert (
        f"ok    classes   the course platform serves enrollments at {url}/enrollments "
        "(a signed read: curso-2026 holds enrollments)"
    ) in result.stdout
    assert "warn  classes   COURSE_ENROLLMENTS_URL is not https: the enrollments carry students' e-mails" in (
        result.stdout
    )
    assert [(read.params, read.verified) for read in fake.reads] == [({"class": "curso-2026"}, True)]
    assert fake.deliveries == []  # nothing sent


def test_a_refused_or_failing_enrollments_read_fails_naming_why(world: World, platform, monkeypatch):
    fake, url = platform
    monkeypatch.setenv("COURSE_WEBHOOK_URL", f"{url}/webhooks")
    monkeypatch.setenv("COURSE_WEBHOOK_SECRET", course_platform_app.SECRET)
    monkeypatch.setenv("COURSE_ENROLLMENTS_URL", f"{url}/enrollments")
    fake.secret = "whsec_b3RoZXItc2VjcmV0LW9mLXRoZS1wbGF0Zm9ybQ=="  # the platform verifies with another secret
    refused = doctor("--course")
    assert [line for line in lines(refused, "FAIL") if " classes " in line] == [
        "FAIL  classes   COURSE_ENROLLMENTS_URL: enrollments of curso-2026, page 1: the course platform answered "
        "HTTP 401: it refused the signature; COURSE_WEBHOOK_SECRET must be the secret the platform verifies with "
        '(\'{"error":"signature: No matching signature found"}\')'
    ]
    fake.secret = course_platform_app.SECRET
    fake.fail(500, times=0)
    failing = doctor("--course")
    [line] = [line for line in lines(failing, "FAIL") if "COURSE_ENROLLMENTS_URL" in line]
    assert "page 1: the course platform answered HTTP 500" in line
    assert len(fake.reads) == 1 + 4  # the refused read, then the first try and three more


def test_an_enrollments_url_that_is_no_address_is_refused_where_it_is_read(world: World, monkeypatch):
    """With the flag on the settings refuse it at start; doctor --course names it too."""
    monkeypatch.setenv("COURSE_WEBHOOK_URL", "https://course.example.com/webhooks")
    monkeypatch.setenv("COURSE_WEBHOOK_SECRET", course_platform_app.SECRET)
    monkeypatch.setenv("COURSE_ENROLLMENTS_URL", "course.example.com/enrollments")
    result = doctor("--course")
    assert (
        "FAIL  classes   COURSE_ENROLLMENTS_URL 'course.example.com/enrollments' is not an http(s):// address"
    ) in result.stdout
