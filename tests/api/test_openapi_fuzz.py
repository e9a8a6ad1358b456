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

# The admin token for the admin routes, the hottok for the webhook: the generated requests reach
# the code behind the authentication (schemathesis also sends them without, to check the 401s).
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-HOTMART-HOTTOK": HOTTOK}
# Bounded (about 15 s of CPU for the whole API, about 1,000 requests): the suite runs on every change.
EXAMPLES_PER_OPERATION = examples(20)


@pytest.mark.slow
def test_the_api_does_exactly_what_its_schema_says(make_harness):
    # Imported here, not at collection: every test process collects this file, one runs it.
    import schemathesis
    from schemathesis.engine import Status, events, from_schema
    from schemathesis.engine.run import PhaseName

    # Its wrong tokens would lock the test client's address out (the sign-in lockout has its own tests).
    harness = make_harness(login_max_failures=1_000_000)
    harness.deliver(load_payload("purchase_approved.json"))  # something for the generated ids to find
    seed = os.environ.get("SCHEMATHESIS_SEED")
    config = schemathesis.Config.from_dict(
        {
            "headers": HEADERS,
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
    found: dict[tuple[str, str], str] = {}  # (operation, check) -> the first failure: message and curl
    errors: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.PhaseFinished):
            phases[event.phase.name] = event.status
        elif isinstance(event, events.ScenarioFinished):
            requests += len(event.recorder.interactions)
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
