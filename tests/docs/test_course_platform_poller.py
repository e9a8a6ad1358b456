"""The polling client of docs/operations/course-platform.md ("Polling instead of webhooks"), run as
written over HTTP against the engine's read API: it mirrors a class, removals included, and keeps
a cursor that hands out only what is new."""

from __future__ import annotations

import re

import pytest

from engine.api.app import create_app
from tests.api.test_classes_api import CLASS, COURSE_TOKEN, enroll, minutes, student, unenroll
from tests.conftest import REPO
from tests.fakes.server import serve

PAGE = REPO / "docs" / "operations" / "course-platform.md"


def client_source() -> str:
    section = PAGE.read_text(encoding="utf-8").split("## Polling instead of webhooks", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_documented_client_mirrors_a_class(make_harness, monkeypatch: pytest.MonkeyPatch):
    h = make_harness(course_api_token=COURSE_TOKEN)
    ana, bia = student(h, "ana@example.com"), student(h, "bia@example.com")
    enroll(h, ana, minutes(1))
    enroll(h, bia, minutes(2))
    members: dict[str, dict] = {}
    calls: list[tuple[str, str]] = []
    namespace = {
        "enroll": lambda key, email, item: (calls.append(("enroll", email)), members.__setitem__(email, item)),
        "unenroll": lambda key, email: (calls.append(("unenroll", email)), members.pop(email, None)),
    }
    with serve(create_app(h.runtime)) as url:
        monkeypatch.setenv("ENGINE_URL", url)
        monkeypatch.setenv("COURSE_API_TOKEN", COURSE_TOKEN)
        exec(compile(client_source(), str(PAGE), "exec"), namespace)  # noqa: S102 - our own docs' example
        sync = namespace["sync"]
        try:
            cursor = sync(CLASS, None)
            assert calls == [("enroll", "ana@example.com"), ("enroll", "bia@example.com")]
            assert sync(CLASS, cursor) == cursor and len(calls) == 2  # nothing new

            unenroll(h, bia, minutes(3))
            cursor = sync(CLASS, cursor)
            assert calls[2:] == [("unenroll", "bia@example.com")] and set(members) == {"ana@example.com"}
        finally:
            namespace["engine"].close()
