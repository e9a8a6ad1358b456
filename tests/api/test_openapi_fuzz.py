"""Schemathesis against the app's own OpenAPI (issue 10): with the database up, no request the
schema can describe gets a 5xx, and every response matches what the schema declares."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from engine.api.app import create_app
from tests.conftest import ADMIN_TOKEN, examples, load_payload

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Bounded (about 10 s of CPU for the whole API): the suite runs on every change.
EXAMPLES_PER_OPERATION = examples(20)


@pytest.mark.slow
def test_the_api_answers_every_request_its_schema_describes_without_a_5xx(make_harness):
    # Imported here, not at collection: every test process collects this file, one runs it.
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    harness = make_harness()
    harness.deliver(load_payload("purchase_approved.json"))  # something for the generated ids to find
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(harness.runtime))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            case.call_and_validate(headers=AUTH, checks=checks)

        fuzz()
