"""The Hotmart sync view: stored runs, a run's findings, a report run from the page and applying one
through the blast-radius guard as ``engine sync hotmart --apply [--confirm] [--grants-only]`` does.

Hotmart is the fake Hotmart API over HTTP (tests/fakes/hotmart_api_app.py) on loopback, read by
the real client the settings describe, as the page reads it in production."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from engine.catchup.runs import exclusive
from engine.db.models import Alert, Event, History, Membership, Student, SyncRun
from tests.fakes import hotmart_api_app
from tests.fakes.hotmart_store import HotmartStore
from tests.fakes.server import serve
from tests.web.conftest import admin_users, csrf_of

pytestmark = pytest.mark.integration

CURSO = "1111111"  # curso's Hotmart id in the shipped rules
GUARD = 10  # the guard's floor: 10 endings, or 5 % of the students


@pytest.fixture
def hotmart() -> Iterator[tuple[hotmart_api_app.FakeHotmartApi, str]]:
    fake = hotmart_api_app.FakeHotmartApi(store=HotmartStore())
    with serve(hotmart_api_app.create_app(fake)) as url:
        yield fake, url


def hotmart_settings(url: str) -> dict:
    return {
        "hotmart_client_id": hotmart_api_app.CLIENT_ID,
        "hotmart_client_secret": SecretStr(hotmart_api_app.CLIENT_SECRET),
        "hotmart_basic": SecretStr(hotmart_api_app.basic_token()),
        "hotmart_auth_url": url + hotmart_api_app.TOKEN_PATH,
        "hotmart_api_base": url,
    }


def harness(make_harness, hotmart, **settings):
    fake, url = hotmart
    made = make_harness(admin_users=SecretStr(admin_users()), **hotmart_settings(url), **settings)
    fake.store.now = made.clock  # the fake account and the engine share one clock
    return made


@pytest.fixture
def h(make_harness, hotmart):
    return harness(make_harness, hotmart, hotmart_sync_enabled=True)


@pytest.fixture
def store(hotmart) -> HotmartStore:
    return hotmart[0].store


def member(h, email: str, state: str = "active") -> None:
    with h.runtime.sessions.begin() as session:
        student = Student(email=email)
        session.add(student)
        session.flush()
        session.add(Membership(student_id=student.id, product_key="curso", state=state))


def refunded(h, store: HotmartStore, count: int, first: int = 0) -> list[str]:
    """``count`` active students of curso whose sale Hotmart shows refunded: changes that end access."""
    emails = [f"reembolso{n}@example.com" for n in range(first, first + count)]
    for n, email in enumerate(emails, start=first):
        member(h, email)
        sale = store.add_sale(CURSO, email, transaction=f"HP90000000{n:05d}", approved=h.clock() - timedelta(days=20))
        store.set_sale_status(sale["purchase"]["transaction"], "REFUNDED")
    return emails


def approved(h, store: HotmartStore, email: str = "bia@example.com") -> None:
    """An approval Hotmart shows and no webhook brought: a change that grants."""
    store.add_sale(CURSO, email, transaction="HP7000000000002", approved=h.clock() - timedelta(days=2))


def count(h, model, *where) -> int:
    with h.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def run_id_of(response) -> int:
    assert response.status_code == 303, response.text
    return int(re.search(r"/ui/sync/(\d+)", response.headers["location"]).group(1))


def report(client, note: str = "") -> int:
    token = csrf_of(client.get("/ui/sync").text)
    return run_id_of(client.post("/ui/sync/report", data={"csrf_token": token, "note": note}, follow_redirects=False))


def test_a_report_from_the_page_is_stored_shown_and_written_to_the_history(h, store, signed_in):
    assert "No sync run stored yet." in signed_in.get("/ui/sync").text
    approved(h, store)
    refunded(h, store, 1)
    done = signed_in.post(
        "/ui/sync/report",
        data={"csrf_token": csrf_of(signed_in.get("/ui/sync").text), "note": "webhooks down on Friday"},
        follow_redirects=False,
    )
    run_id = run_id_of(done)

    with h.runtime.sessions() as session:
        run = session.get(SyncRun, run_id)
        assert (run.trigger, run.mode, run.status) == ("page", "report", "reported")
        entry = session.scalar(select(History).where(History.kind == "sync_reported"))
    assert entry.actor == "admin:ana" and entry.detail["run_id"] == run_id
    assert entry.detail["note"] == "webhooks down on Friday" and entry.detail["found"] == 2
    assert count(h, Event) == 0 and h.queued == []  # a report changes nothing

    page = signed_in.get(done.headers["location"]).text  # post, redirect, get: the outcome shown
    assert f"Report #{run_id} stored: nothing was changed." in page
    rows = dict(re.findall(r'<tr><th scope="row">curso</th><td>(\w+)</td><td class="num">(\d+)</td></tr>', page))
    assert rows == {"PURCHASE_APPROVED": "1", "PURCHASE_REFUNDED": "1"}
    assert "1 would grant access" in page and "1 would end access" in page
    assert 'href="/ui/students/bia%40example.com"' in page and 'href="/ui/students/reembolso0%40example.com"' in page
    assert "active → refunded" in page and "new → pending_onboarding" in page
    assert f'href="/ui/sync/{run_id}/apply"' in page

    listing = signed_in.get("/ui/sync").text
    row = re.search(rf'<a href="/ui/sync/{run_id}">.*?</tr>', listing, flags=re.DOTALL).group(0)
    assert "admin page · report" in row and "reported" in row
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["2", "0", "2"]  # found, stored, not applied

    overview = signed_in.get("/ui/").text
    tile = re.search(r'class="tile warn" href="/ui/sync/(\d+)" id="last-sync">\s*<span class="figure">(\d+)', overview)
    assert tile and tile.groups() == (str(run_id), "2")


def test_a_report_without_the_csrf_token_is_refused(h, signed_in):
    assert signed_in.post("/ui/sync/report", data={"note": "x"}).status_code == 403
    assert count(h, SyncRun) == 0


def test_a_report_while_another_sync_runs_says_so(h, signed_in):
    token = csrf_of(signed_in.get("/ui/sync").text)
    with exclusive(h.runtime):
        busy = signed_in.post("/ui/sync/report", data={"csrf_token": token})
    assert busy.status_code == 409 and "Another sync is running" in busy.text
    assert count(h, SyncRun) == 0
    assert report(signed_in) == 1  # once the other one is over


def test_refused_credentials_are_said_without_the_secret_and_the_run_is_kept_as_failed(h, hotmart, signed_in):
    fake, _ = hotmart
    fake.client_secret = "rotated at Hotmart"
    token = csrf_of(signed_in.get("/ui/sync").text)
    refused = signed_in.post("/ui/sync/report", data={"csrf_token": token})
    assert refused.status_code == 502 and "Hotmart&#39;s API could not be read" in refused.text
    assert hotmart_api_app.CLIENT_SECRET not in refused.text
    with h.runtime.sessions() as session:
        [run] = session.scalars(select(SyncRun)).all()
    assert run.status == "failed" and count(h, History, History.kind == "sync_reported") == 0
    assert signed_in.get(f"/ui/sync/{run.id}/apply").status_code == 404  # no report to apply


def test_applying_within_the_guard_stores_the_changes_as_events_and_links_them(h, store, signed_in):
    approved(h, store)
    run_id = report(signed_in)
    confirmation = signed_in.get(f"/ui/sync/{run_id}/apply").text
    assert "store 1 changes as events" in confirmation and 'name="confirm"' not in confirmation
    applied = signed_in.post(
        f"/ui/sync/{run_id}/apply",
        data={"csrf_token": csrf_of(confirmation), "note": "Bia paid"},
        follow_redirects=False,
    )
    new_run = run_id_of(applied)
    with h.runtime.sessions() as session:
        run = session.get(SyncRun, new_run)
        [event] = session.scalars(select(Event)).all()
        entry = session.scalar(select(History).where(History.kind == "sync_applied"))
    assert (run.trigger, run.mode, run.status) == ("page", "all", "applied")
    assert (event.origin, event.type, event.email) == ("hotmart-api", "PURCHASE_APPROVED", "bia@example.com")
    assert h.queued == [event.id]
    assert entry.actor == "admin:ana" and entry.detail["note"] == "Bia paid"
    assert (entry.detail["reviewed_run_id"], entry.detail["events"], entry.detail["held"]) == (run_id, 1, False)

    page = signed_in.get(applied.headers["location"]).text
    assert f"Run #{new_run} done" in page and f'href="/ui/events/{event.id}"' in page
    assert "Stored 1 events for the worker to apply" in page
    assert f'href="/ui/sync/{new_run}/apply"' not in page  # nothing left to apply
    h.run_queue()
    with h.runtime.sessions() as session:
        assert session.scalar(select(Membership.state)) == "pending_onboarding"


def test_over_the_guard_the_confirmation_names_each_ending_and_needs_the_checkbox(h, store, signed_in):
    emails = refunded(h, store, GUARD + 1)
    run_id = report(signed_in)
    confirmation = signed_in.get(f"/ui/sync/{run_id}/apply")
    text = confirmation.text
    assert confirmation.status_code == 200 and "more than the blast-radius guard allows (10)" in text
    assert all(f'href="/ui/students/{email.replace("@", "%40")}"' in text for email in emails)
    assert 'name="confirm"' in text and "required" in text

    refused = signed_in.post(f"/ui/sync/{run_id}/apply", data={"csrf_token": csrf_of(text)})
    assert refused.status_code == 400 and "tick the box" in refused.text
    assert count(h, SyncRun) == 1 and count(h, Event) == 0 and count(h, History, History.kind == "sync_applied") == 0

    applied = signed_in.post(
        f"/ui/sync/{run_id}/apply",
        data={"csrf_token": csrf_of(text), "confirm": "1", "note": "refunds Hotmart never sent"},
        follow_redirects=False,
    )
    with h.runtime.sessions() as session:
        run = session.get(SyncRun, run_id_of(applied))
        entry = session.scalar(select(History).where(History.kind == "sync_applied"))
    assert (run.status, len(run.applied["events"])) == ("applied", GUARD + 1)
    assert entry.detail["confirm"] is True and entry.detail["events"] == GUARD + 1
    assert count(h, Event, Event.type == "PURCHASE_REFUNDED", Event.origin == "hotmart-api") == GUARD + 1


def test_a_confirmation_covers_only_the_endings_it_named(h, store, signed_in):
    refunded(h, store, GUARD + 1)
    run_id = report(signed_in)
    token = csrf_of(signed_in.get(f"/ui/sync/{run_id}/apply").text)
    refunded(h, store, 1, first=GUARD + 1)  # one more since the report: not read by the operator

    applied = signed_in.post(
        f"/ui/sync/{run_id}/apply", data={"csrf_token": token, "confirm": "1"}, follow_redirects=False
    )
    new_run = run_id_of(applied)
    with h.runtime.sessions() as session:
        assert session.get(SyncRun, new_run).status == "held"
        assert session.scalar(select(Alert.kind).order_by(Alert.id.desc()).limit(1)) == "hotmart.sync_guard"
    assert count(h, Event) == 0 and h.queued == []
    held = signed_in.get(f"/ui/sync/{new_run}").text
    assert "Held by the blast-radius guard: 12 changes that end access, more than 10" in held
    assert "reembolso11@example.com" in held


def test_grants_only_stores_the_approvals_and_leaves_the_rest(h, store, signed_in):
    approved(h, store)
    refunded(h, store, GUARD + 1)
    run_id = report(signed_in)
    confirmation = signed_in.get(f"/ui/sync/{run_id}/apply?grants_only=1").text
    assert 'name="confirm"' not in confirmation and "store nothing else" in confirmation
    applied = signed_in.post(
        f"/ui/sync/{run_id}/apply",
        data={"csrf_token": csrf_of(confirmation), "grants_only": "1"},
        follow_redirects=False,
    )
    with h.runtime.sessions() as session:
        run = session.get(SyncRun, run_id_of(applied))
    assert (run.mode, run.status, run.applied["left"]) == ("grants", "applied", GUARD + 1)
    assert len(h.queued) == 1 and count(h, Event) == 1 and count(h, Event, Event.type == "PURCHASE_APPROVED") == 1


def test_applying_without_the_csrf_token_is_refused(h, store, signed_in):
    approved(h, store)
    run_id = report(signed_in)
    assert signed_in.post(f"/ui/sync/{run_id}/apply", data={"confirm": "1"}).status_code == 403
    assert count(h, SyncRun) == 1 and count(h, Event) == 0


def test_the_overview_says_when_the_sync_is_on_and_never_ran(signed_in):
    overview = signed_in.get("/ui/").text
    assert 'href="/ui/sync" id="last-sync"' in overview and "no Hotmart sync run yet" in overview
    assert 'href="/ui/sync"' in signed_in.get("/ui/students").text  # the nav entry


def test_an_unknown_run_is_a_404_page(signed_in):
    missing = signed_in.get("/ui/sync/987654")
    assert missing.status_code == 404 and "<html" in missing.text
    assert signed_in.get("/ui/sync/987654/apply").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/ui/sync?offset=-1",
        "/ui/sync?offset=99999999999999999999",
        "/ui/sync/0",
        "/ui/sync/abc",
        "/ui/sync/1%00",
        "/ui/sync/1/apply?grants_only=perhaps",
    ],
)
def test_hostile_parameters_answer_the_422_page(signed_in, path):
    answer = signed_in.get(path)
    assert answer.status_code == 422 and "<html" in answer.text


@pytest.fixture
def off(make_harness, hotmart):
    """The sync off (HOTMART_SYNC_ENABLED unset), the credentials there: runs stored by hand show."""
    return harness(make_harness, hotmart)


def test_when_the_sync_is_off_the_view_says_how_to_turn_it_on_and_runs_nothing(off, store):
    from fastapi.testclient import TestClient

    from engine.api.app import create_app
    from engine.catchup import run_sync
    from engine.catchup.schedule import hotmart_reader
    from tests.web.conftest import sign_in

    approved(off, store)
    run_id, _, _ = run_sync(off.runtime, hotmart_reader(off.runtime.settings))  # `engine sync hotmart`, by hand
    client = TestClient(create_app(off.runtime))
    assert sign_in(client).status_code == 303

    page = client.get("/ui/sync").text
    assert "The Hotmart sync is off (HOTMART_SYNC_ENABLED)" in page and "HOTMART_SYNC_ENABLED=true" in page
    assert 'action="/ui/sync/report"' not in page and f'href="/ui/sync/{run_id}"' in page
    run_page = client.get(f"/ui/sync/{run_id}").text
    assert "/apply" not in run_page and "the sync is off, so this page cannot apply them" in run_page

    token = csrf_of(page)
    for path in ("/ui/sync/report", f"/ui/sync/{run_id}/apply"):
        refused = client.post(path, data={"csrf_token": token, "confirm": "1"})
        assert refused.status_code == 409 and "nothing was run" in refused.text
    preview = client.get(f"/ui/sync/{run_id}/apply")  # what it found, and no form
    assert (
        preview.status_code == 200
        and "bia@example.com" in preview.text
        and '<form method="post" action="/ui/sync/' not in preview.text
    )
    assert count(off, SyncRun) == 1 and count(off, Event) == 0 and count(off, History, History.kind.like("sync_%")) == 0
