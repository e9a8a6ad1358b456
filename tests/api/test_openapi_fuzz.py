"""Schemathesis against the app's own OpenAPI (issues 10 and 22): with the database up, every check
schemathesis has, in every phase it runs (coverage, fuzzing, stateful), finds the API doing exactly
what its schema says: no 5xx, no undocumented status, no schema-valid request refused and no
schema-violating one accepted.

A failure names the seed: ``SCHEMATHESIS_SEED=<seed> pytest tests/api/test_openapi_fuzz.py``
generates the same requests again.
"""

from __future__ import annotations

import os

import pytest

from engine.api.app import create_app
from tests.conftest import ADMIN_TOKEN, HOTTOK, examples, load_payload

# The admin token for the admin routes, the hottok for the webhook, the course platform's read
# token for /api/v1: the generated requests reach the code behind the authentication (schemathesis
# also sends them without, to check the 401s).
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-HOTMART-HOTTOK": HOTTOK}
COURSE_TOKEN = "course-read-token-fuzz"
COURSE_API = {"include-path-regex": "^/api/v1/", "headers": {"Authorization": f"Bearer {COURSE_TOKEN}"}}
# Bounded (about 15 s of CPU for the whole API, about 1,000 requests): the suite runs on every change.
EXAMPLES_PER_OPERATION = examples(20)


@pytest.mark.slow
def test_the_api_does_exactly_what_its_schema_says(make_harness):
    # Imported here, not at collection: every test process collects this file, one runs it.
    import schemathesis
    from schemathesis.engine import Status, events, from_schema
    from schemathesis.engine.run import PhaseName

    # Its wrong tokens would lock the test client's address out (the sign-in lockout has its own tests).
    harness = make_harness(login_max_failures=1_000_000, course_api_token=COURSE_TOKEN)
    harness.deliver(load_payload("purchase_approved.json"))  # something for the generated ids to find
    _enroll_the_buyer(harness)  # and a class with a change, a tombstone too, for the class feed
    seed = os.environ.get("SCHEMATHESIS_SEED")
    config = schemathesis.Config.from_dict(
        {
            "headers": HEADERS,
            "operations": [COURSE_API],
            "generation": {"max-examples": EXAMPLES_PER_OPERATION},
            "continue-on-failure": True,
            "cache": {"enabled": False},  # no .schemathesis/ in the checkout: each run stands alone
            # Every check (max_response_time is a latency budget, not a conformance check: off
            # unless given a limit).
            "checks": {"enabled": True},
            **({"seed": int(seed)} if seed else {}),
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(harness.runtime), config=config)
    assert len(list(schema.get_all_operations())) >= 8

    phases: dict[PhaseName, Status] = {}
    requests = 0
    statuses: dict[str, set[int]] = {}  # operation -> the statuses it answered
    found: dict[tuple[str, str], str] = {}  # (operation, check) -> the first failure: message and curl
    errors: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.PhaseFinished):
            phases[event.phase.name] = event.status
        elif isinstance(event, events.ScenarioFinished):
            requests += len(event.recorder.interactions)
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    statuses.setdefault(event.label or "?", set()).add(interaction.response.status_code)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info
                        found.setdefault(
                            (event.label or "?", check.name),
                            f"{failure.failure.title}: {failure.failure.message}\n    {failure.code_sample}",
                        )
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            errors.append(repr(event.exception))

    report = "\n".join(f"{operation} [{check}] {text}" for (operation, check), text in sorted(found.items()))
    assert not found, f"seed {schema.config.seed}:\n{report}"
    assert not errors, f"seed {schema.config.seed}: {errors}"
    assert phases[PhaseName.COVERAGE] == Status.SUCCESS and phases[PhaseName.FUZZING] == Status.SUCCESS, phases
    assert requests >= 500, requests
    # The read token reached the course API's code (a 401 alone would pass every check).
    assert {200, 401} <= statuses.get("GET /api/v1/classes", set()), statuses
    assert {200, 401, 422} <= statuses.get("GET /api/v1/classes/{key}/enrollments", set()), statuses


def _enroll_the_buyer(harness) -> None:
    from sqlalchemy import select

    from engine.db.models import Student
    from engine.pipeline.classes import enroll_student, unenroll_student

    with harness.runtime.sessions.begin() as session:
        buyer = session.scalars(select(Student.id)).one()
        enroll_student(session, buyer, "curso-2026")
        unenroll_student(session, buyer, ["curso-2026"])
        enroll_student(session, buyer, "outra-turma")
