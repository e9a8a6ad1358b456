"""needs_attention: unknown products and states, poison events, rules that cannot load; grouped
alerts; retry and replay against the current rules, recorded in the history."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.db.models import ActionRun, Alert, Event, History, Membership, Student
from engine.pipeline import replay
from engine.pipeline.alerts import notify_alerts, raise_alert
from engine.pipeline.intake import store_webhook
from engine.pipeline.processing import process_event
from engine.pipeline.sweep import requeue_stuck, sweep
from engine.rules.files import content_hash
from engine.service.retry import retry_event
from engine.sources.hotmart import SOURCE as HOTMART
from tests.conftest import RULES, load_payload, rewriting_event_log

UNKNOWN_ID = 7777777
ANA = "ana.exemplo@example.com"


@pytest.fixture
def rules_dir(tmp_path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def purchase(product_id: int = UNKNOWN_ID, n: int = 1, email: str = ANA) -> dict:
    payload = copy.deepcopy(load_payload("purchase_approved.json"))
    payload["id"] = f"attention-{product_id}-{n}-{email}"
    payload["data"]["product"]["id"] = product_id
    payload["data"]["purchase"]["transaction"] = f"HP{product_id}{n:04d}"
    payload["data"]["buyer"]["email"] = email
    return payload


def store(h, payload: dict) -> int:
    with h.runtime.sessions.begin() as session:
        stored = store_webhook(HOTMART, session, json.dumps(payload).encode(), {}, held=False)
    assert stored.event_id is not None
    return stored.event_id


def deliver(h, payload: dict) -> int:
    event_id = store(h, payload)
    h.queued.append(event_id)
    h.run_queue()
    return event_id


def get(h, model, id_):
    with h.runtime.sessions() as session:
        return session.get(model, id_)


def alerts(h) -> list[Alert]:
    with h.runtime.sessions() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def history(h) -> list[History]:
    with h.runtime.sessions() as session:
        return list(session.scalars(select(History).order_by(History.id)))


def add_product(rules_dir: Path, key: str = "mentoria", product_id: int = UNKNOWN_ID) -> None:
    text = (rules_dir / "products" / "curso.yaml").read_text()
    text = text.replace("key: curso", f"key: {key}").replace("[1111111]", f"[{product_id}]")
    (rules_dir / "products" / f"{key}.yaml").write_text(text.replace("Workshop", "Mentoria"))


def touch(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


# --- unknown products ----------------------------------------------------------------------


def test_an_unknown_product_needs_attention_with_one_alert_per_product_id(make_harness):
    h = make_harness()
    first, second = deliver(h, purchase(n=1)), deliver(h, purchase(n=2, email="bia@example.com"))
    other = deliver(h, purchase(product_id=8888888))
    for event_id, product_id in ((first, UNKNOWN_ID), (second, UNKNOWN_ID), (other, 8888888)):
        event = get(h, Event, event_id)
        assert (event.status, event.reason) == ("needs_attention", f"no product matches id {product_id}")
        assert event.rules_version == h.runtime.rules.version
    grouped, single = alerts(h)
    assert (grouped.kind, grouped.group_key, grouped.count) == (
        "rules.unknown_product",
        f"rules.unknown_product:{UNKNOWN_ID}",
        2,
    )
    assert f"no product matches id {UNKNOWN_ID}" in grouped.message and "engine replay" in grouped.message
    assert (single.group_key, single.count) == ("rules.unknown_product:8888888", 1)
    with h.runtime.sessions() as session:
        assert session.scalars(select(Student)).all() == []  # nobody became a student yet
    assert h.manychat.calls == [] and h.discord.calls == []


def test_unmanaged_products_and_ignore_only_events_stay_plain_ignores(make_harness, rules_dir):
    catalog = rules_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text() + "  unmanaged_products: [7777777]\n")
    h = make_harness(rules_dir=rules_dir)
    unmanaged = get(h, Event, deliver(h, purchase()))
    assert (unmanaged.status, unmanaged.reason) == (
        "ignored",
        "product id 7777777 is unmanaged (catalog.unmanaged_products)",
    )
    abandoned = copy.deepcopy(load_payload("purchase_out_of_shopping_cart.json"))
    abandoned["data"]["product"]["id"] = 8888888
    cart = get(h, Event, deliver(h, abandoned))
    assert cart.status == "ignored" and cart.reason == h.runtime.rules.rules.ignore["PURCHASE_OUT_OF_SHOPPING_CART"]
    assert alerts(h) == []


def test_an_unmanaged_id_a_product_claims_is_a_rules_error(rules_dir):
    from engine.rules import check_rules

    catalog = rules_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text() + "  unmanaged_products: [1111111]\n")
    _, problems = check_rules(rules_dir)
    [problem] = problems
    assert problem.file == "rules/catalog.yaml" and problem.line == 10
    assert "1111111 is listed as unmanaged but product 'curso'" in problem.message


def test_replay_after_the_product_is_merged_applies_the_events_and_records_it(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    event_id = deliver(h, purchase())
    old_version = get(h, Event, event_id).rules_version
    redelivered = store_hotmart_again(h, purchase())
    assert redelivered == "needs_attention"  # Hotmart's redelivery stays a duplicate
    [still] = replay.preview(h.runtime, [event_id])  # before the fix: the same verdict, no new alert
    assert (still.after, still.reason) == ("needs_attention", f"no product matches id {UNKNOWN_ID}")
    assert [a.count for a in alerts(h)] == [1]

    add_product(rules_dir)
    h.runtime.rules.reload_if_changed()
    new_version = h.runtime.rules.version
    assert new_version != old_version
    preview = replay.preview(h.runtime, [event_id])
    assert [(r.before, r.after) for r in preview] == [("needs_attention", "processed")]
    assert "mentoria: new -> pending_onboarding" in preview[0].reason
    assert get(h, Event, event_id).status == "needs_attention" and history(h) == []  # nothing kept

    with h.runtime.sessions() as session:
        ids = replay.select_events(session)
    results = replay.replay(h.runtime, ids, actor="cli", process=process_event)
    assert [(r.event_id, r.before, r.after) for r in results] == [(event_id, "needs_attention", "processed")]
    event = get(h, Event, event_id)
    assert (event.status, event.rules_version, event.product_key) == ("processed", new_version, "mentoria")
    assert [r.action for r in event_runs(h, event_id)][:1] == ["issue_token"]
    [entry] = history(h)
    assert (entry.kind, entry.event_id, entry.actor, entry.rules_version) == ("replay", event_id, "cli", new_version)
    assert entry.detail["previous_status"] == "needs_attention"
    assert entry.detail["previous_rules_version"] == old_version
    assert replay.summarize(results) == {"processed": 1}


def store_hotmart_again(h, payload: dict) -> str:
    with h.runtime.sessions.begin() as session:
        stored = store_webhook(HOTMART, session, json.dumps(payload).encode(), {}, held=False)
    assert stored.duplicate
    return stored.status


def event_runs(h, event_id: int) -> list[ActionRun]:
    with h.runtime.sessions() as session:
        return list(session.scalars(select(ActionRun).where(ActionRun.event_id == event_id).order_by(ActionRun.id)))


def test_replay_refuses_events_still_in_flight_and_names_events_of_any_status(make_harness):
    h = make_harness()
    processed = deliver(h, purchase(product_id=1111111))
    pending = store(h, purchase(product_id=1111111, n=2, email="bia@example.com"))
    with h.runtime.sessions() as session:
        assert replay.select_events(session, status=None, ids=[processed, pending]) == [processed, pending]
        assert replay.select_events(session) == []  # no needs_attention event
    results = replay.replay(h.runtime, [pending], actor="cli", process=process_event)
    assert (results[0].after, results[0].reason) == (
        "received",
        f"event {pending} is received: it is still being processed",
    )
    assert history(h) == []


def test_a_replay_while_hotmart_is_disabled_is_held(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    event_id = deliver(h, purchase())
    add_product(rules_dir)
    h.runtime.settings = h.runtime.settings.model_copy(update={"hotmart_enabled": False})
    [result] = replay.replay(h.runtime, [event_id], actor="cli", process=process_event)
    assert (result.before, result.after) == ("needs_attention", "held")


def test_replay_selection_by_status_type_and_date(make_harness):
    from datetime import UTC, datetime, timedelta

    h = make_harness()
    approval = deliver(h, purchase(n=1))
    refund = copy.deepcopy(load_payload("purchase_refunded.json"))
    refund["data"]["product"]["id"] = UNKNOWN_ID
    refunded = deliver(h, refund)
    with h.runtime.sessions.begin() as session, rewriting_event_log(session):  # it arrived two days ago
        session.get(Event, approval).received_at = datetime.now(UTC) - timedelta(days=2)
    with h.runtime.sessions() as session:
        assert replay.select_events(session) == [approval, refunded]
        assert replay.select_events(session, event_type="purchase_refunded") == [refunded]
        assert replay.select_events(session, since=datetime.now(UTC) - timedelta(days=1)) == [refunded]
        assert replay.select_events(session, status="ignored") == []
        assert replay.select_events(session, status=None, ids=[approval]) == [approval]


# --- unknown states -----------------------------------------------------------------------


def test_a_membership_in_a_state_the_rules_no_longer_have_needs_attention(make_harness):
    h = make_harness()
    deliver(h, purchase(product_id=1111111))
    with h.runtime.sessions.begin() as session:
        session.scalars(select(Membership)).one().state = "atrasado"
    refund = copy.deepcopy(load_payload("purchase_refunded.json"))
    refund["data"]["purchase"]["transaction"] = "HP11111110001"
    event_id = deliver(h, refund)
    event = get(h, Event, event_id)
    assert event.status == "needs_attention"
    assert event.reason == "curso: membership is in state 'atrasado', which the rules no longer have"
    [alert] = alerts(h)
    assert alert.group_key == "rules.unknown_state:curso:atrasado" and "renamed_states" in alert.message
    assert event_runs(h, event_id) == []  # nothing decided

    with h.runtime.sessions.begin() as session:
        session.scalars(select(Membership)).one().state = "pending_onboarding"  # the admin fixes it
    [result] = replay.replay(h.runtime, [event_id], actor="cli", process=process_event)
    assert result.after == "processed"
    with h.runtime.sessions() as session:
        assert session.scalars(select(Membership.state)).one() == "refunded"


# --- poison events ------------------------------------------------------------------------


def test_an_event_the_worker_fails_on_three_times_needs_attention_and_is_not_requeued(make_harness, monkeypatch):
    h = make_harness()

    def boom(student, inp):
        raise ValueError("invalid literal for int() with base 10: '99999...'")

    monkeypatch.setattr("engine.pipeline.planning._refresh_student", boom)
    event_id = store(h, purchase(product_id=1111111))
    for attempt in (1, 2):
        assert process_event(h.runtime, event_id) == "received"
        event = get(h, Event, event_id)
        assert (event.failures, event.reason) == (
            attempt,
            f"worker error (attempt {attempt} of 3): ValueError: invalid literal for int() with base 10: '99999...'",
        )
        assert alerts(h) == []
    assert process_event(h.runtime, event_id) == "needs_attention"
    event = get(h, Event, event_id)
    assert event.reason == (
        "the worker failed 3 times on this event: ValueError: invalid literal for int() with base 10: '99999...'"
    )
    [alert] = alerts(h)
    assert (alert.kind, alert.group_key, alert.event_id) == ("worker.poison", "worker.poison:ValueError", event_id)
    h.clock.advance(minutes=10)
    assert event_id not in requeue_stuck(h.runtime)

    monkeypatch.undo()  # the cause is fixed
    retry_event(h.runtime, event_id, actor="cli")
    h.run_queue()
    event = get(h, Event, event_id)
    assert (event.status, event.failures) == ("processed", 0)


def test_worker_max_failures_is_a_setting(make_harness, monkeypatch):
    h = make_harness(worker_max_failures=1)
    monkeypatch.setattr("engine.pipeline.planning._refresh_student", lambda *_: 1 / 0)
    event_id = store(h, purchase(product_id=1111111))
    assert process_event(h.runtime, event_id) == "needs_attention"
    assert "ZeroDivisionError: division by zero" in get(h, Event, event_id).reason


# --- grouped alerts -----------------------------------------------------------------------


class Sink:
    def __init__(self):
        self.posts: list[tuple[str, str]] = []

    def post_alert(self, content: str, *, nonce: str | None = None):
        from connectors.base import StepResult

        self.posts.append((content, nonce))
        return StepResult.done("posted")


def test_a_grouped_alert_counts_and_is_reposted_at_most_hourly(make_harness):
    h = make_harness()
    sink = h.runtime.alert_sink = Sink()

    def occur(message: str) -> Alert:
        with h.runtime.sessions.begin() as session:
            return raise_alert(h.runtime, session, kind="rules.unknown_product", message=message, group_key="k")

    first = occur("first")
    notify_alerts(h.runtime)
    assert sink.posts == [("⚠️ first", f"alert-{first.id}")]
    h.clock.advance(minutes=10)
    occur("second")
    assert notify_alerts(h.runtime) == 0  # posted 10 minutes ago: counted, not reposted
    h.clock.advance(hours=1)
    occur("third")
    notify_alerts(h.runtime)
    assert sink.posts[-1] == ("⚠️ third (seen 3 times)", f"alert-{first.id}-3")
    [alert] = alerts(h)
    assert (alert.count, alert.message, alert.last_seen_at) == (3, "third", h.clock.now)
    with h.runtime.sessions.begin() as session:
        session.get(Alert, alert.id).acknowledged_at = h.clock.now
    occur("after the ack")
    assert [a.count for a in alerts(h)] == [3, 1]  # a new cause episode opens a new alert


# --- rules that cannot be loaded -------------------------------------------------------------


def break_rules(rules_dir: Path) -> None:
    lifecycle = rules_dir / "lifecycle.yaml"
    lifecycle.write_text(lifecycle.read_text().replace("to: active", "to: actve", 1))
    touch(lifecycle)


def fix_rules(rules_dir: Path) -> None:
    lifecycle = rules_dir / "lifecycle.yaml"
    lifecycle.write_text(lifecycle.read_text().replace("to: actve", "to: active", 1))
    touch(lifecycle)


def test_invalid_rules_keep_the_last_valid_version_and_alert_once(make_harness, rules_dir):
    h = make_harness(rules_dir=rules_dir)
    version = h.runtime.rules.version
    break_rules(rules_dir)
    sweep(h.runtime)
    sweep(h.runtime)
    assert h.runtime.rules.version == version
    [alert] = alerts(h)
    assert alert.kind == "rules.invalid" and f"keeping version {version}" in alert.message
    assert "rules/lifecycle.yaml:" in alert.message and "unknown state 'actve'" in alert.message
    assert h.runtime.rules.load_error.startswith("rules/lifecycle.yaml:")
    event_id = deliver(h, purchase(product_id=1111111))  # the last valid version decides
    assert get(h, Event, event_id).rules_version == version
    fix_rules(rules_dir)
    sweep(h.runtime)
    assert h.runtime.rules.load_error is None
    assert len(alerts(h)) == 1


def test_events_wait_while_no_valid_rules_are_loaded_and_run_once_they_are(make_harness, rules_dir):
    h = make_harness()
    break_rules(rules_dir)
    from engine.pipeline.rules_repository import RulesRepository

    h.runtime.rules = RulesRepository(rules_dir, strict=False)
    assert not h.runtime.rules.available and h.runtime.rules.version is None
    event_id = deliver(h, purchase(product_id=1111111))
    event = get(h, Event, event_id)
    assert event.status == "needs_attention"
    assert event.reason.startswith("rules cannot be loaded: rules/lifecycle.yaml:")
    kinds = sorted(a.kind for a in alerts(h))
    assert kinds == ["rules.invalid", "rules.unavailable"]

    fix_rules(rules_dir)
    assert sweep(h.runtime)["resumed"] == 1
    h.run_queue()
    event = get(h, Event, event_id)
    assert (event.status, event.rules_version) == ("processed", h.runtime.rules.version)
    assert [(e.kind, e.actor) for e in history(h)] == [("replay", "worker")]


# --- which files are rules -------------------------------------------------------------------


def test_only_top_level_and_products_yaml_are_rules(rules_dir):
    from engine.rules import check_rules
    from engine.rules.files import ignored_entries

    before = content_hash(rules_dir)
    backup = rules_dir / "backup"
    shutil.copytree(rules_dir / "products", backup)  # a second 'curso' would be an error if merged
    (rules_dir / "products" / "old").mkdir()
    (rules_dir / "products" / "old" / "curso.yaml").write_text("product: {}\n")
    (rules_dir / "README.md").write_text("notes\n")
    rules, problems = check_rules(rules_dir)
    assert problems == [] and rules is not None and set(rules.products) == {"curso", "comunidade", "combo"}
    assert ignored_entries(rules_dir) == ["README.md", "backup/", "products/old/"]
    assert content_hash(rules_dir) == before
