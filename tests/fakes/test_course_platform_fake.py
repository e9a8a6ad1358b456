"""The fake course platform over real HTTP: it verifies signatures, deduplicates on webhook-id, fails
on demand and serves its enrollments, paged, to the engine's signed reads (what tests/e2e rely on)."""

from __future__ import annotations

import httpx
import pytest

from connectors.base import Step, StepContext, StepStatus, StudentRef
from connectors.classes import ClassesConnector
from connectors.errors import Unauthorized, Unavailable
from tests.fakes.course_platform_app import SECRET, create_app
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
    return ClassesConnector(f"{url}/webhooks", secret, enrollments_url=f"{url}/enrollments", timeout=5.0)


def test_a_signed_enrollment_lands_once_and_is_served_to_the_reader(served):
    fake, url = served
    conn = connector(url)
    try:
        enroll = Step("enroll", {"classes": ["curso-2026"]})
        assert conn.run(enroll, ctx(1)).status is StepStatus.DONE
        assert conn.run(enroll, ctx(1)).status is StepStatus.DONE  # a retry: same webhook id
        assert [(d.verified, d.duplicate) for d in fake.deliveries] == [(True, False), (True, True)]

        assert list(conn.list_enrollments("curso-2026")) == ["ana@example.com"]
        assert fake.reads[-1].verified and fake.reads[-1].params == {"class": "curso-2026"}
        unsigned = httpx.get(f"{url}/enrollments", params={"class": "curso-2026"})
        assert unsigned.status_code == 401 and not fake.reads[-1].verified

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


def test_reads_are_paged_and_the_platform_can_lose_or_gain_an_enrollment_by_hand(served):
    fake, url = served
    fake.page_size = 2
    for email in ("c@example.com", "a@example.com", "b@example.com"):
        httpx.post(f"{url}/_fake/enroll", json={"class": "curso-2026", "email": email}).raise_for_status()
    httpx.post(f"{url}/_fake/lose", json={"class": "curso-2026", "email": "b@example.com"}).raise_for_status()
    fake.enroll_by_hand("curso-2026", "d@example.com")
    conn = connector(url)
    try:
        assert list(conn.list_enrollments("curso-2026")) == ["a@example.com", "c@example.com", "d@example.com"]
        assert [read.params for read in fake.reads] == [{"class": "curso-2026"}, {"class": "curso-2026", "cursor": "2"}]
        assert list(conn.list_enrollments("no-such-class")) == []
    finally:
        conn.close()
    assert fake.deliveries == []  # by hand: no message went anywhere


def test_a_read_with_another_secret_is_refused_and_failures_reach_reads_too(served):
    fake, url = served
    wrong = connector(url, "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==")
    try:
        with pytest.raises(Unauthorized):
            list(wrong.list_enrollments("curso-2026"))
    finally:
        wrong.close()
    fake.fail(503, times=0)
    conn = ClassesConnector(
        f"{url}/webhooks", SECRET, enrollments_url=f"{url}/enrollments", timeout=5.0, sleep=lambda _: None
    )
    try:
        with pytest.raises(Unavailable, match="HTTP 503"):
            list(conn.list_enrollments("curso-2026"))
    finally:
        conn.close()
    assert [(read.verified, read.status) for read in fake.reads] == [(False, 401)] + [(True, 503)] * 4
