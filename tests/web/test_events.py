"""The Events view: the list and its filters, one event in full (redacted), and replays of one event
or of the needs_attention events of a cause or since a time, each previewed before it is confirmed."""

from __future__ import annotations

import copy
import json
import re
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, update

from engine.api.app import create_app
from engine.db.models import Event, History, OnboardingToken
from engine.pipeline.intake import store_webhook
from engine.sources import SOURCES
from engine.statuses import EventStatus
from tests.conftest import HOTTOK, RULES, load_payload
from tests.web.conftest import admin_users, csrf_of, sign_in

pytestmark = pytest.mark.integration

ANA, BIA, CAIO = "ana.exemplo@example.com", "bia@example.com", "caio@example.com"
CURSO_ID, UNKNOWN_ID, OTHER_UNKNOWN_ID = 1111111, 7777777, 8888888
UNKNOWN_REASON = f"no product matches id {UNKNOWN_ID}"
OTHER_REASON = f"no product matches id {OTHER_UNKNOWN_ID}"
EVENT_LINK = re.compile(r'<td><a href="/ui/events/(\d+)">')


def purchase(email: str, envelope: str, *, product_id: int = CURSO_ID, transaction: str | None = None, **top) -> dict:
    body = copy.deepcopy(load_payload("purchase_approved.json"))
    body["id"] = envelope
    body["data"]["buyer"]["email"] = email
    body["data"]["product"]["id"] = product_id
    body["data"]["purchase"]["transaction"] = transaction or f"HP-{envelope}"
    body.update(top)
    return body


def store(h, body: dict, *, received_at: datetime | None = None) -> int:
    """Stored as a verified webhook, not processed yet (``received``)."""
    with h.runtime.sessions.begin() as session:
        stored = store_webhook(
            SOURCES["hotmart"], session, json.dumps(body).encode(), {}, held=False, received_at=received_at
        )
    return stored.event_id


def deliver_at(h, body: dict, received_at: datetime) -> int:
    event_id = store(h, body, received_at=received_at)
    h.queued.append(event_id)
    h.run_queue()
    return event_id


def listed(html: str) -> list[int]:
    return [int(found) for found in EVENT_LINK.findall(html)]


def status_of(h, event_id: int) -> str:
    with h.runtime.sessions() as session:
        return session.get(Event, event_id).status


def replays_recorded(h) -> list[tuple[int, str, str | None]]:
    with h.runtime.sessions() as session:
        entries = session.scalars(select(History).where(History.kind == "replay").order_by(History.id))
        return [(e.event_id, e.actor, (e.detail or {}).get("note")) for e in entries]


# --- the list -----------------------------------------------------------------------------------


@pytest.fixture
def log(h):
    """Three events: ana's course purchase (processed, in January), bia's purchase of a product the
    rules do not know (needs_attention) and ana's refund (in March)."""
    january = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
    march = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    bought = deliver_at(h, purchase(ANA, "ev-1", transaction="HP-ANA-1"), january)
    unknown = deliver_at(h, purchase(BIA, "ev-2", product_id=UNKNOWN_ID), march)
    refund = copy.deepcopy(load_payload("purchase_refunded.json"))
    refund["id"] = "ev-3"
    refund["data"]["purchase"]["transaction"] = "HP-ANA-1"
    refunded = deliver_at(h, refund, march + timedelta(hours=1))
    assert (status_of(h, bought), status_of(h, unknown)) == ("processed", "needs_attention")
    return {"bought": bought, "unknown": unknown, "refunded": refunded}


def test_the_list_shows_events_newest_first_linking_each_event_and_student(log, signed_in):
    html = signed_in.get("/ui/events").text
    assert listed(html) == [log["refunded"], log["unknown"], log["bought"]]
    assert f'href="/ui/students/{BIA.replace("@", "%40")}"' in html
    assert "3 event(s), newest first" in html
    assert '<span class="badge bad">needs_attention</span>' in html and UNKNOWN_REASON in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=needs_attention", ["unknown"]),
        ("status=processed&type=", ["refunded", "bought"]),
        ("type=PURCHASE_REFUNDED", ["refunded"]),
        ("type=purchase_approved", ["unknown", "bought"]),
        ("product=curso", ["refunded", "bought"]),
        ("product=nowhere", []),
        ("received_from=2026-02-01", ["refunded", "unknown"]),
        ("received_to=2026-01-10", ["bought"]),
        ("received_from=2026-01-10&received_to=2026-01-10", ["bought"]),
        ("received_from=2026-03-02", []),
        ("q=BIA%40EXAMPLE", ["unknown"]),  # a piece of the e-mail, any case
        ("q=HP-ANA-1", ["refunded", "bought"]),  # the transaction, whole
        ("q=HP-ANA", []),  # ... not a piece of it
        ("q=matches+id+7777", ["unknown"]),  # a piece of the reason
        ("q=%25", []),  # LIKE's wildcards are plain characters
        ("q=_", []),
        (f"status=needs_attention&reason={UNKNOWN_REASON.replace(' ', '+')}", ["unknown"]),  # the overview's link
        ("reason=no+product+matches", []),  # the cause is exact
        ("status=&type=&product=&received_from=&received_to=&q=&reason=", ["refunded", "unknown", "bought"]),
    ],
)
def test_each_filter_narrows_the_list(log, signed_in, query, expected):
    response = signed_in.get(f"/ui/events?{query}")
    assert response.status_code == 200, response.text
    assert listed(response.text) == [log[name] for name in expected]


def test_the_filters_are_kept_in_the_form_and_the_type_and_product_choices_come_from_the_data(log, signed_in):
    html = signed_in.get("/ui/events?status=processed&type=PURCHASE_REFUNDED&received_from=2026-02-01&q=ana").text
    assert '<option value="processed" selected>' in html
    assert '<option value="PURCHASE_REFUNDED" selected>' in html and '<option value="PURCHASE_APPROVED">' in html
    assert '<option value="curso">' in html  # the rules' products
    assert 'value="2026-02-01"' in html and 'value="ana"' in html


def test_fifty_events_a_page_with_links_to_the_next_and_previous_pages(h, signed_in):
    ids = [store(h, purchase(f"p{n}@example.com", f"page-{n}")) for n in range(53)]
    first = signed_in.get("/ui/events?status=received").text
    assert listed(first) == ids[::-1][:50]
    assert "Page 1 of 2" in first and 'href="/ui/events?status=received&amp;page=2"' in first
    second = signed_in.get("/ui/events?status=received&page=2").text
    assert listed(second) == ids[:3][::-1]
    assert "Page 2 of 2" in second and 'href="/ui/events?status=received&amp;page=1"' in second
    assert listed(signed_in.get("/ui/events?page=3").text) == []


def test_htmx_gets_the_table_alone(log, signed_in):
    response = signed_in.get("/ui/events?status=needs_attention", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "<html" not in response.text and response.text.lstrip().startswith('<div id="events-table">')
    assert listed(response.text) == [log["unknown"]]
    assert response.headers["vary"] == "HX-Request"
    full = signed_in.get(
        "/ui/events?status=needs_attention", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in full.text  # the back button restoring a page wants all of it


@pytest.mark.parametrize(
    "path",
    [
        "/ui/events?page=-1",
        "/ui/events?page=0",
        "/ui/events?page=99999999999999999999",
        "/ui/events?page=abc",
        "/ui/events?received_from=2026-13-45",
        "/ui/events?received_to=20260101",
        "/ui/events?received_from=1700000000",
        "/ui/events?status=nope",
        "/ui/events?q=" + "x" * 10_000,
        "/ui/events?q=a%00b",
        "/ui/events?type=" + "T" * 61,
        "/ui/events?reason=" + "r" * 2001,
        "/ui/events/abc",
        "/ui/events/0",
        "/ui/events/99999999999999999999",
        "/ui/events/-1/replay",
        "/ui/events/replay?since=yesterday",
        "/ui/events/replay?since=2026-02-30T10:00",
    ],
)
def test_hostile_parameters_answer_the_422_page(signed_in, path):
    response = signed_in.get(path)
    assert response.status_code == 422, response.text
    assert "<html" in response.text and "cannot read" in response.text


def test_the_last_day_there_is_is_a_date_like_any_other(signed_in):
    assert signed_in.get("/ui/events?received_from=0001-01-01&received_to=9999-12-31").status_code == 200


def test_an_unknown_event_is_the_404_page(signed_in):
    for path in ("/ui/events/424242", "/ui/events/424242/replay"):
        response = signed_in.get(path)
        assert response.status_code == 404 and "does not exist" in response.text
    response = signed_in.post("/ui/events/424242/replay", data={"csrf_token": csrf_of(signed_in.get("/ui/").text)})
    assert response.status_code == 404


def test_the_list_needs_a_signed_in_operator(browser):
    response = browser.get("/ui/events?status=failed", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login?next=/ui/events")


def test_the_list_speaks_portuguese(log, signed_in):
    html = signed_in.get("/ui/events", headers={"Accept-Language": "pt-BR"}).text
    assert "3 evento(s), os mais recentes primeiro" in html and "Reprocessar eventos que precisam de atenção" in html


# --- one event ----------------------------------------------------------------------------------


def test_the_event_page_shows_the_event_its_plan_and_steps_with_no_secret(h, signed_in):
    event_id = h.deliver(purchase(ANA, "detail-1", transaction="HP-DETAIL", hottok="rotated-old-hottok"))
    with h.runtime.sessions() as session:
        code = session.scalar(select(OnboardingToken.code))
        event = session.get(Event, event_id)
        correlation_id = event.correlation_id
    assert code
    response = signed_in.get(f"/ui/events/{event_id}")
    assert response.status_code == 200
    html = response.text
    for secret in (HOTTOK, "rotated-old-hottok", code):
        assert secret not in html
    assert "[redacted]" in html
    assert "HP-DETAIL" in html and correlation_id in html and "hotmart" in html
    assert f'href="/ui/students/{ANA.replace("@", "%40")}"' in html
    assert "Workshop Exemplo de Automação" in html  # the payload, pretty-printed, accents kept
    assert '<span class="badge ok">purchase_not_linked</span> new → pending_onboarding' in html
    for action in ("issue_token", "add_tag", "set_field", "trigger_flow", "schedule"):
        assert f"<td>{action}</td>" in html
    assert '<span class="badge ok">done</span>' in html
    assert '<code class="wrap">{&#34;tags&#34;: [&#34;aluno-curso&#34;]}</code>' in html  # a step's rendered parameters
    assert f"The rules are the ones that planned it: {h.runtime.rules.version}." in html
    assert "The current rules now" in html


def test_the_dry_run_says_what_the_current_rules_would_do_differently(h, signed_in):
    event_id = h.deliver(purchase(ANA, "dry-1"))
    with h.runtime.sessions.begin() as session:  # planned by older rules, as far as the page knows
        session.execute(update(Event).where(Event.id == event_id).values(rules_version="old-version"))
    html = signed_in.get(f"/ui/events/{event_id}").text
    assert f"Planned with rules old-version; the rules now are {h.runtime.rules.version}." in html
    # ana is in pending_onboarding now: the same purchase, planned again, starts from there.
    section = html[html.index("The current rules now") :]
    assert "pending_onboarding" in section
    assert "Differences from what was decided at the time" in html


# --- replaying one event ------------------------------------------------------------------------


@pytest.fixture
def fixable(make_harness, tmp_path):
    """A harness on a copy of the rules, which a test may fix, and ana signed in."""
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    h = make_harness(rules_dir=rules_dir, admin_users=SecretStr(admin_users()))
    client = TestClient(create_app(h.runtime))
    assert sign_in(client).status_code == 303
    return h, client, rules_dir


def add_product(rules_dir, product_id: int = UNKNOWN_ID) -> None:
    text = (rules_dir / "products" / "curso.yaml").read_text()
    (rules_dir / "products" / "mentoria.yaml").write_text(
        text.replace("key: curso", "key: mentoria").replace("[1111111]", f"[{product_id}]")
    )


def test_replaying_one_event_shows_the_dry_run_first_then_replays_with_the_operators_note(fixable):
    h, client, rules_dir = fixable
    event_id = h.deliver(purchase(BIA, "one-1", product_id=UNKNOWN_ID))
    assert status_of(h, event_id) == "needs_attention"
    version_then = h.runtime.rules.version
    add_product(rules_dir)

    preview = client.get(f"/ui/events/{event_id}/replay")
    assert preview.status_code == 200 and "<html" in preview.text
    assert "Now needs_attention; a replay would make it processed" in preview.text
    assert '<span class="badge ok">purchase_not_linked</span> new → pending_onboarding' in preview.text
    assert "against the current rules, version" in preview.text and h.runtime.rules.version != version_then
    panel = client.get(f"/ui/events/{event_id}/replay", headers={"HX-Request": "true"})
    assert "<html" not in panel.text and f'action="/ui/events/{event_id}/replay"' in panel.text
    page = client.get(f"/ui/events/{event_id}").text
    assert f"Planned with rules {version_then}; the rules now are {h.runtime.rules.version}." in page
    # Looking changed nothing.
    assert (status_of(h, event_id), h.queued, replays_recorded(h)) == ("needs_attention", [], [])

    refused = client.post(f"/ui/events/{event_id}/replay", data={"note": "no token"})
    assert refused.status_code == 403
    assert (status_of(h, event_id), h.queued, replays_recorded(h)) == ("needs_attention", [], [])

    done = client.post(
        f"/ui/events/{event_id}/replay", data={"csrf_token": csrf_of(preview.text), "note": "mentoria added"}
    )
    assert done.status_code == 200
    assert "Replayed with rules" in done.text and '<span class="badge warn">received</span>' in done.text
    assert h.queued == [event_id]
    assert replays_recorded(h) == [(event_id, "admin:ana", "mentoria added")]
    assert h.run_queue() == ["processed"]
    page = client.get(f"/ui/events/{event_id}").text
    assert "admin:ana" in page and "mentoria added" in page  # the event's history
    assert '<span class="badge ok">processed</span>' in page


def test_an_event_still_on_its_way_cannot_be_replayed(h, signed_in):
    event_id = store(h, purchase(ANA, "flight-1"))
    html = signed_in.get(f"/ui/events/{event_id}/replay").text
    assert f"not replayed: event {event_id} is received: it is still being processed" in html
    assert "Replay it" not in html
    done = signed_in.post(f"/ui/events/{event_id}/replay", data={"csrf_token": csrf_of(html)})
    assert '<span class="badge bad">refused</span>' in done.text
    assert f"{event_id}</a>: event {event_id} is received: it is still being processed" in done.text
    assert replays_recorded(h) == [] and status_of(h, event_id) == "received"


def test_a_reconcile_runs_event_has_its_page_and_is_not_replayed(h, signed_in):
    from tests.api.test_attention_api import reconcile_event

    event_id = reconcile_event(h)
    page = signed_in.get(f"/ui/events/{event_id}")
    assert page.status_code == 200 and "RECONCILE" in page.text
    html = signed_in.get(f"/ui/events/{event_id}/replay").text
    assert "is a reconcile run&#39;s steps, not a rules decision" in html and "Replay it" not in html


# --- bulk replay --------------------------------------------------------------------------------


def test_bulk_replay_by_cause_shows_the_count_and_ids_then_replays_only_those(h, signed_in):
    first = h.deliver(purchase(BIA, "bulk-1", product_id=UNKNOWN_ID))
    second = h.deliver(purchase(CAIO, "bulk-2", product_id=UNKNOWN_ID))
    other = h.deliver(purchase(ANA, "bulk-3", product_id=OTHER_UNKNOWN_ID))

    listing = signed_in.get("/ui/events?status=needs_attention").text
    assert f'<option value="{UNKNOWN_REASON}">{UNKNOWN_REASON} (2)</option>' in listing

    preview = signed_in.get("/ui/events/replay", params={"reason": UNKNOWN_REASON})
    assert preview.status_code == 200
    html = preview.text
    assert "2 event(s) will be replayed against the current rules, version " + h.runtime.rules.version in html
    assert listed(html) == [first, second] and other not in listed(html)
    assert f'name="up_to" value="{second}"' in html
    assert (h.queued, replays_recorded(h)) == ([], [])  # the preview changed nothing
    assert {status_of(h, e) for e in (first, second, other)} == {"needs_attention"}

    done = signed_in.post(
        "/ui/events/replay",
        data={"csrf_token": csrf_of(html), "reason": UNKNOWN_REASON, "since": "", "up_to": second, "note": "fixed"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/ui/events?status=needs_attention&done=")
    landed = signed_in.get(done.headers["location"])  # and again on a refresh: nothing is replayed twice
    assert "Replayed with rules" in landed.text and "2 event(s) queued" in landed.text, landed.text[-3000:]
    assert h.queued == [first, second]
    assert replays_recorded(h) == [(first, "admin:ana", "fixed"), (second, "admin:ana", "fixed")]
    assert status_of(h, other) == "needs_attention"


def test_bulk_replay_since_a_time_leaves_older_events_and_those_stored_after_the_preview(h, signed_in):
    old = deliver_at(h, purchase(ANA, "since-1", product_id=UNKNOWN_ID), datetime(2026, 2, 1, 8, 0, tzinfo=UTC))
    recent = deliver_at(
        h, purchase(BIA, "since-2", product_id=OTHER_UNKNOWN_ID), datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    )
    preview = signed_in.get("/ui/events/replay?reason=&since=2026-02-15T00:00").text
    assert "1 event(s) will be replayed" in preview and listed(preview) == [recent]
    assert 'name="since" value="2026-02-15T00:00:00"' in preview
    late = deliver_at(h, purchase(CAIO, "since-3", product_id=UNKNOWN_ID), datetime(2026, 3, 2, 8, 0, tzinfo=UTC))

    done = signed_in.post(
        "/ui/events/replay",
        data={"csrf_token": csrf_of(preview), "since": "2026-02-15T00:00:00", "up_to": recent, "note": ""},
    )
    assert done.status_code == 200
    assert h.queued == [recent]
    assert replays_recorded(h) == [(recent, "admin:ana", None)]
    assert status_of(h, old) == status_of(h, late) == "needs_attention"


def test_bulk_replay_without_the_token_is_refused(h, signed_in):
    event_id = h.deliver(purchase(BIA, "bulk-csrf", product_id=UNKNOWN_ID))
    response = signed_in.post("/ui/events/replay", data={"reason": UNKNOWN_REASON, "up_to": event_id})
    assert response.status_code == 403
    assert (h.queued, replays_recorded(h)) == ([], [])


def test_hostile_replay_forms_answer_the_422_page_and_replay_nothing(h, signed_in):
    event_id = h.deliver(purchase(BIA, "bulk-hostile", product_id=UNKNOWN_ID))
    token = csrf_of(signed_in.get("/ui/").text)
    for path, form in (
        (f"/ui/events/{event_id}/replay", {"note": "n" * 10_000}),
        ("/ui/events/replay", {"up_to": event_id, "note": "n" * 10_000}),
        ("/ui/events/replay", {"up_to": event_id, "since": "2026-13-01T00:00"}),
        ("/ui/events/replay", {"up_to": "99999999999999999999"}),
        ("/ui/events/replay", {"up_to": event_id, "reason": "a\x00b"}),
        ("/ui/events/replay", {}),
    ):
        response = signed_in.post(path, data={"csrf_token": token, **form})
        assert response.status_code == 422, (path, form, response.text)
    assert (h.queued, replays_recorded(h)) == ([], [])


def test_bulk_replay_with_nothing_matching_offers_nothing_to_confirm(h, signed_in):
    h.deliver(purchase(ANA, "fine-1"))
    html = signed_in.get("/ui/events/replay", params={"reason": UNKNOWN_REASON}).text
    assert "nothing to replay" in html and 'name="up_to"' not in html


def test_bulk_replay_previews_what_the_fixed_rules_would_make_of_each(fixable):
    h, client, rules_dir = fixable
    event_id = h.deliver(purchase(BIA, "fixed-1", product_id=UNKNOWN_ID))
    add_product(rules_dir)
    html = client.get("/ui/events/replay", params={"reason": UNKNOWN_REASON}).text
    row = html[html.index(f'<a href="/ui/events/{event_id}">') :]
    assert '<span class="badge ok">processed</span>' in row[: row.index("</tr>")]
    assert "mentoria: new -&gt; pending_onboarding" in row
    assert status_of(h, event_id) == EventStatus.NEEDS_ATTENTION


def test_an_event_the_sync_stored_says_where_it_came_from(h, signed_in):
    """`engine sync hotmart` stores a change Hotmart's API showed as its webhook: the list shows its
    origin, the event's page says no webhook brought it."""
    with h.runtime.sessions.begin() as session:
        body = json.dumps(purchase(CAIO, "hotmart-api-1")).encode()
        synced = store_webhook(SOURCES["hotmart"], session, body, {}, held=False, origin="hotmart-api").event_id
    webhook = store(h, purchase(ANA, "ev-webhook"))
    listing = signed_in.get("/ui/events").text
    assert "<small>hotmart-api</small>" in listing and "<small>hotmart</small>" in listing
    page = signed_in.get(f"/ui/events/{synced}").text
    assert "hotmart-api: read from the platform&#39;s API by engine sync; no webhook brought it" in page
    assert "no webhook brought it" not in signed_in.get(f"/ui/events/{webhook}").text
