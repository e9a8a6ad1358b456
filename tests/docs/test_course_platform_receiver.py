"""The receiver examples of docs/operations/course-platform.md, run as written against the engine's
classes connector: the messages' receiver verifies what the engine signs, acts once per webhook id,
refuses a forgery; the enrollments endpoint verifies the engine's signed reads and pages its list."""

from __future__ import annotations

import re

import httpx
import pytest

from connectors.base import Step, StepContext, StepStatus, StudentRef
from connectors.classes import ClassesConnector
from connectors.errors import Unauthorized
from tests.conftest import REPO
from tests.fakes.course_platform_app import SECRET
from tests.fakes.server import serve

PAGE = REPO / "docs" / "operations" / "course-platform.md"


def receiver_source(heading: str = "## A receiver") -> str:
    section = PAGE.read_text(encoding="utf-8").split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_example_is_short():
    code = [line for line in receiver_source().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(code) <= 19  # imports and blank lines aside, about fifteen


def test_the_documented_receiver_verifies_and_deduplicates(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COURSE_WEBHOOK_SECRET", SECRET)
    calls: list[tuple] = []
    namespace = {
        "enroll": lambda key, email, data: calls.append(("enroll", key, email, data["event_id"])),
        "unenroll": lambda key, email: calls.append(("unenroll", key, email)),
    }
    exec(compile(receiver_source(), str(PAGE), "exec"), namespace)  # noqa: S102 - our own docs' example
    ana = StudentRef(id=7, email="ana@example.com", name="Ana Souza")
    with serve(namespace["app"]) as url:
        conn = ClassesConnector(f"{url}/webhooks/engine", SECRET, timeout=5.0)
        try:
            enroll = Step("enroll", {"classes": ["curso-2026"]})
            first = conn.run(enroll, StepContext(ana, event_id=42, action_run_id=1))
            again = conn.run(enroll, StepContext(ana, event_id=42, action_run_id=1))  # a retry: same id
            left = conn.run(
                Step("unenroll", {"classes": ["curso-2026"]}), StepContext(ana, event_id=43, action_run_id=2)
            )
        finally:
            conn.close()
        forged = httpx.post(
            f"{url}/webhooks/engine",
            content=b'{"type":"class.enrollment.created","data":{}}',
            headers={"webhook-id": "msg_9_x", "webhook-timestamp": "1772452800", "webhook-signature": "v1,AAAA"},
        )
    assert [first.status, again.status, left.status] == [StepStatus.DONE] * 3
    assert calls == [("enroll", "curso-2026", "ana@example.com", 42), ("unenroll", "curso-2026", "ana@example.com")]
    assert forged.status_code == 401


def test_the_documented_enrollments_endpoint_serves_the_engines_reads(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COURSE_WEBHOOK_SECRET", SECRET)
    classes = {"curso-2026": [f"aluno{i:04}@example.com" for i in range(1203)]}
    namespace = {"students_in": lambda key, start, count: classes.get(key, [])[start : start + count]}
    exec(compile(receiver_source("## Reconcile against the platform"), str(PAGE), "exec"), namespace)  # noqa: S102
    with serve(namespace["app"]) as url:
        reader = ClassesConnector(f"{url}/webhooks", SECRET, enrollments_url=f"{url}/engine/enrollments", timeout=5.0)
        try:
            assert list(reader.list_enrollments("curso-2026")) == classes["curso-2026"]  # three pages
            assert list(reader.list_enrollments("python-pro")) == []
        finally:
            reader.close()
        unsigned = httpx.get(f"{url}/engine/enrollments", params={"class": "curso-2026"})
        stranger = ClassesConnector(
            f"{url}/webhooks", "whsec_b3RoZXItc2VjcmV0", enrollments_url=f"{url}/engine/enrollments", timeout=5.0
        )
        try:
            with pytest.raises(Unauthorized):
                list(stranger.list_enrollments("curso-2026"))
        finally:
            stranger.close()
    assert unsigned.status_code == 401
