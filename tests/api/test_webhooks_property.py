"""Property test of POST /webhooks/hotmart (issue 10): arbitrary JSON values in every known field
of the reference payloads, arbitrary bytes, deep nesting and sizes around the limit. With the
database up: never a 5xx, and every 2xx body is in the event log (and its processing ends)."""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import or_, select

from engine.api.app import create_app
from engine.db.models import Event
from engine.pipeline.intake import webhook_change_key, webhook_dedupe_key
from engine.sources.hotmart import SOURCE as HOTMART
from tests.conftest import HOTTOK, examples
from tests.strategies import FIELDS, REFERENCES, json_values, set_path


@st.composite
def mutated_references(draw) -> bytes:
    """A reference payload (fresh envelope id) with some known fields replaced by arbitrary JSON."""
    index = draw(st.integers(0, len(REFERENCES) - 1))
    body = json.loads(json.dumps(REFERENCES[index]))
    body["id"] = uuid.uuid4().hex
    paths = [path for i, path in FIELDS if i == index]
    for path in sorted(draw(st.sets(st.sampled_from(paths), min_size=1, max_size=4)), key=len, reverse=True):
        value = draw(json_values)
        with contextlib.suppress(KeyError, IndexError, TypeError):  # a parent was replaced already
            set_path(body, path, value)
    if draw(st.booleans()):  # old configurations send the hottok in the body
        body["hottok"] = draw(st.sampled_from([HOTTOK, "\ud800", "wrong\x00"]) | json_values)
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


body_hottoks = st.sampled_from([HOTTOK, "\ud800", "wrong\x00", ""]) | json_values
bodies = st.one_of(
    mutated_references(),
    body_hottoks.map(lambda hottok: json.dumps({"id": "t", "hottok": hottok}).encode("utf-8", "surrogatepass")),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=400),
    st.integers(1, 3000).map(lambda depth: b'{"id": "n", "x": ' + b"[" * depth + b"]" * depth + b"}"),
    st.integers(-64, 64).map(lambda delta: b'{"id": "big", "x": "' + b"a" * (256 * 1024 - 20 + delta) + b'"}'),
)


@pytest.mark.slow
def test_the_webhook_never_answers_5xx_and_keeps_every_body_it_acknowledges(make_harness):
    harness = make_harness()
    client = TestClient(create_app(harness.runtime))

    @given(body=bodies, token=st.sampled_from([HOTTOK, HOTTOK, HOTTOK, None, "wrong"]))
    @settings(max_examples=examples(150), deadline=None, suppress_health_check=list(HealthCheck))
    def post_one(body: bytes, token: str | None) -> None:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-HOTMART-HOTTOK"] = token
        response = client.post("/webhooks/hotmart", content=body, headers=headers)
        assert response.status_code < 500, (response.status_code, response.text, body[:200])
        if response.status_code >= 300:
            return
        answer = response.json()
        with harness.runtime.sessions() as session:
            if answer["status"] == "accepted":
                event = session.get(Event, answer["event_id"])
                assert event is not None and event.status in ("received", "held")
            else:
                assert answer["status"] == "duplicate"  # the same event, or the same change, is stored
                key, change = webhook_dedupe_key(HOTMART, body), webhook_change_key(HOTMART, body)
                same = or_(Event.dedupe_key == key, Event.change_key == change) if change else Event.dedupe_key == key
                assert session.scalar(select(Event.id).where(same)) is not None
        harness.run_queue()  # the worker's side: processing an acknowledged body must end
        if answer["status"] == "accepted":
            with harness.runtime.sessions() as session:
                status = session.get(Event, answer["event_id"]).status
            assert status in ("processed", "ignored", "failed", "needs_attention", "processing", "retrying"), status

    post_one()
