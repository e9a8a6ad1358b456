"""The fake course platform over real HTTP: it verifies signatures, deduplicates on webhook-id, fails
on demand and serves its enrollments to a reader with its token (what tests/e2e rely on)."""

from __future__ import annotations

import httpx
import pytest

from connectors.base import Step, StepContext, StepStatus, StudentRef
from connectors.classes import ClassesConnector
from tests.fakes.course_platform_app import READ_TOKEN, SECRET, create_app
from tests.fakes.server import serve

ANA = StudentRef(id=1, email="ana@example.com", name="Ana Souza")


def ctx(run_id: int) -> StepContext:
    return StepContext(ANA, event_id=10, product_key="curso", action_run_id=run_id)


@pytest.fixture
def served():
    app = create_app()
    with serve(app) as url:
        yield app.state.fake, url


def connector(url: str, secret: str = SECRET) -> ClassesConnector:
    return ClassesConnector(f"{url}/webhooks", secret, timeout=5.0)


def test_a_signed_enrollment_lands_once_and_is_served_to_the_reader(served):
    fake, url = served
    conn = connector(url)
    try:
        enroll = Step("enroll", {"classes": ["curso-2026"]})
        assert conn.run(enroll, ctx(1)).status is StepStatus.DONE
        assert conn.run(enroll, ctx(1)).status is StepStatus.DONE  # a retry: same webhook id
        assert [(d.verified, d.duplicate) for d in fake.deliveries] == [(True, False), (True, True)]

        reader = httpx.get(f"{url}/classes/curso-2026/enrollments", headers={"Authorization": f"Bearer {READ_TOKEN}"})
        assert reader.status_code == 200
        assert [row["email"] for row in reader.json()["enrollments"]] == ["ana@example.com"]
        assert httpx.get(f"{url}/classes/curso-2026/enrollments").status_code == 401

        assert conn.run(Step("unenroll", {"classes": ["curso-2026"]}), ctx(2)).status is StepStatus.DONE
        assert fake.members("curso-2026") == set()
    finally:
        conn.close()


def test_a_wrong_secret_or_a_forged_body_is_refused(served):
    fake, url = served
    wrong = connector(url, "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==")
    try:
        result = wrong.run(Step("enroll", {"classes": ["curso-2026"]}), ctx(3))
    finally:
        wrong.close()
    assert (result.error, result.retryable) == ("classes.unauthorized", False)
    forged = httpx.post(
        f"{url}/webhooks",
        content=b'{"type":"class.enrollment.created","data":{"class_key":"curso-2026","email":"x@example.com"}}',
        headers={"webhook-id": "msg_9_curso-2026", "webhook-timestamp": "1772452800", "webhook-signature": "v1,AAAA"},
    )
    assert forged.status_code == 401
    assert fake.members("curso-2026") == set() and not any(d.verified for d in fake.deliveries)


def test_it_fails_on_demand_then_recovers(served):
    fake, url = served
    httpx.post(f"{url}/_fake/failures", json={"status": 500, "times": 1}).raise_for_status()
    conn = connector(url)
    try:
        first = conn.run(Step("enroll", {"classes": ["curso-2026"]}), ctx(4))
        second = conn.run(Step("enroll", {"classes": ["curso-2026"]}), ctx(4))
    finally:
        conn.close()
    assert (first.error, first.retryable) == ("classes.unavailable", True)
    assert second.status is StepStatus.DONE
    assert httpx.get(f"{url}/_fake/state").json()["enrollments"] == {"curso-2026": ["ana@example.com"]}
