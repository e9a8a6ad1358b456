"""Stories 19, 28 and 30 of SCENARIOS.md ("nothing is lost silently") on the deployed shape:
`engine serve` + `engine worker` processes on PostgreSQL and Redis, the fake Discord and
ManyChat servers, and the `engine` command run as an admin would.

Each test works on its own copy of the rules (a git work tree, so the rules version carries
a commit) and has the processes look for changed rules every second (RULES_RELOAD_SECONDS).
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.db.models import History
from engine.db.session import session_factory
from engine.rules.files import content_hash
from engine.settings import Settings
from tests.cli import Ran, run_engine
from tests.conftest import RULES, load_payload
from tests.e2e.conftest import ALERT_CHANNEL, ANA, Stack

NEW_PRODUCT = 7777777  # sold before its rules file exists
UNMANAGED = 8888888  # sold outside the engine, on purpose
BIA = "bia.exemplo@example.com"


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=Admin", "-c", "user.email=admin@example.com", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def rules_repo(tmp_path) -> Path:
    """A git work tree holding a copy of the shipped rules; returns its rules directory."""
    repo = tmp_path / "course"
    rules = repo / "rules"
    rules.parent.mkdir()
    subprocess.run(["cp", "-r", str(RULES), str(rules)], check=True)
    git(repo, "init", "-q")
    commit(rules, "the rules")
    return rules


def commit(rules: Path, message: str) -> str:
    git(rules.parent, "add", "-A")
    git(rules.parent, "commit", "-qm", message)
    return git(rules.parent, "rev-parse", "--short=12", "HEAD")


def version_of(rules: Path) -> str:
    return f"{content_hash(rules)}@{git(rules.parent, 'rev-parse', '--short=12', 'HEAD')}"


def purchase(envelope: str, *, product_id: int, email: str = ANA["email"], transaction: str = "HP7777777001") -> bytes:
    payload = copy.deepcopy(load_payload("purchase_approved.json"))
    payload["id"] = envelope
    payload["data"]["product"]["id"] = product_id
    payload["data"]["buyer"]["email"] = email
    payload["data"]["purchase"]["transaction"] = transaction
    return json.dumps(payload).encode()


def accepted(stack: Stack, body: bytes) -> int:
    response = stack.post_webhook(body)
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
    return response.json()["event_id"]


def alerts(stack: Stack, kind: str) -> list[dict]:
    items = stack.admin("/admin/alerts", params={"acknowledged": "any"}).json()["items"]
    return [alert for alert in items if alert["kind"] == kind]


def add_product(rules: Path) -> None:
    text = (rules / "products" / "curso.yaml").read_text()
    (rules / "products" / "mentoria.yaml").write_text(
        text.replace("key: curso", "key: mentoria")
        .replace("[1111111]", f"[{NEW_PRODUCT}]")
        .replace("Workshop Exemplo", "Mentoria Exemplo")
    )


def engine(stack: Stack, *args: str) -> Ran:
    return run_engine(stack.env, *args)


def test_story_19_unknown_product(start_stack, fakes, rules_repo):
    """A webhook for a product no rules file claims -> 200, stored, needs_attention with the
    reason "no product matches id N" and one alert grouped per product id; ids the rules list
    as unmanaged are plainly ignored; Hotmart's redelivery is a duplicate."""
    catalog = rules_repo / "catalog.yaml"
    catalog.write_text(catalog.read_text() + f"  unmanaged_products: [{UNMANAGED}]\n")
    commit(rules_repo, "a product sold outside the engine")
    stack = start_stack(RULES_DIR=str(rules_repo), RULES_RELOAD_SECONDS="1")

    first = accepted(stack, purchase("s19-ana", product_id=NEW_PRODUCT))
    second = accepted(stack, purchase("s19-bia", product_id=NEW_PRODUCT, email=BIA, transaction="HP7777777002"))
    unmanaged = accepted(stack, purchase("s19-other", product_id=UNMANAGED, transaction="HP8888888001"))
    for event_id in (first, second):
        event = stack.wait_event(event_id, statuses=("needs_attention", "ignored", "processed"))
        assert (event["status"], event["reason"]) == ("needs_attention", f"no product matches id {NEW_PRODUCT}")
        assert event["payload"]["data"]["product"]["id"] == NEW_PRODUCT  # stored whole
    event = stack.wait_event(unmanaged, statuses=("needs_attention", "ignored", "processed"))
    assert (event["status"], event["reason"]) == (
        "ignored",
        f"product id {UNMANAGED} is unmanaged (catalog.unmanaged_products)",
    )

    [alert] = alerts(stack, "rules.unknown_product")
    assert (alert["count"], alert["group_key"]) == (2, f"rules.unknown_product:{NEW_PRODUCT}")
    assert f"no product matches id {NEW_PRODUCT}" in alert["message"]
    # The admin channel: notify_alerts posts the alert after the event's transaction commits.
    stack.wait_for(
        lambda: any(
            f"no product matches id {NEW_PRODUCT}" in m["content"]
            for m in fakes.discord.messages.get(ALERT_CHANNEL, [])
        ),
        what="the unknown-product alert in the admin channel",
    )
    listed = stack.admin("/admin/events", params={"status": "needs_attention"}).json()
    assert sorted(item["id"] for item in listed["items"]) == [first, second]

    redelivery = stack.post_webhook(purchase("s19-ana", product_id=NEW_PRODUCT))
    assert redelivery.json()["status"] == "duplicate"
    assert fakes.manychat.flows_sent == []
    assert [r for r in fakes.discord.requests if "/roles/" in r["path"]] == []


def test_story_28_on_sale_before_the_rules_know_it(start_stack, fakes, rules_repo, pg):
    """Product M is sold before products/m.yaml is merged: the purchases need attention.
    After the merge, `engine replay --status needs_attention` applies them: codes issued, flows
    sent once, each replay in the event's history with the rules version that decided it."""
    fakes.manychat.seed_subscriber(email=BIA, whatsapp_phone="+5511999990002", first_name="Bia")
    stack = start_stack(RULES_DIR=str(rules_repo), RULES_RELOAD_SECONDS="1")
    ana = accepted(stack, purchase("s28-ana", product_id=NEW_PRODUCT))
    bia = accepted(stack, purchase("s28-bia", product_id=NEW_PRODUCT, email=BIA, transaction="HP7777777002"))
    for event_id in (ana, bia):
        assert stack.wait_event(event_id, statuses=("needs_attention", "processed"))["status"] == "needs_attention"
    before = stack.event(ana)["rules_version"]
    assert before == version_of(rules_repo)

    add_product(rules_repo)
    commit(rules_repo, "products/mentoria.yaml")
    after = version_of(rules_repo)
    assert engine(stack, "check", "--rules", str(rules_repo)).returncode == 0

    dry = engine(stack, "replay", "--status", "needs_attention", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"dry run: 2 event(s) with rules {after}: 2 processed" in dry.stdout
    assert f"event {ana} PURCHASE_APPROVED: needs_attention would become processed (mentoria: new -> " in dry.stdout
    assert stack.event(ana)["status"] == "needs_attention" and fakes.manychat.flows_sent == []

    done = engine(stack, "replay", "--status", "needs_attention")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.splitlines()[-1] == f"2 event(s) with rules {after}: 2 processed"
    for event_id, email in ((ana, ANA["email"]), (bia, BIA)):
        event = stack.event(event_id)
        assert (event["status"], event["product"], event["rules_version"]) == ("processed", "mentoria", after)
        code = fakes.manychat.find(email=email).fields["codigo_discord"]
        assert len(code) == 8  # the code was issued and set for the flow
    time.sleep(1.0)  # anything queued twice would have run by now
    flows = fakes.manychat.flows  # ns -> logical name
    sent = sorted((sid, flows[ns]) for sid, ns, _ in fakes.manychat.flows_sent)
    ids = sorted(fakes.manychat.find(email=email).id for email in (ANA["email"], BIA))
    assert sent == [(ids[0], "onboarding"), (ids[1], "onboarding")]  # once each

    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    with sessions() as session:
        entries = session.scalars(select(History).order_by(History.event_id)).all()
    assert [(e.kind, e.event_id, e.actor, e.rules_version) for e in entries] == [
        ("replay", ana, "cli", after),
        ("replay", bia, "cli", after),
    ]
    assert entries[0].detail["previous_rules_version"] == before
    # Hotmart redelivering the first purchase changes nothing: the replay was the way.
    assert stack.post_webhook(purchase("s28-ana", product_id=NEW_PRODUCT)).json()["status"] == "duplicate"
    assert engine(stack, "replay").stdout.splitlines()[-1] == f"0 event(s) with rules {after}: nothing to replay"


def test_story_30_a_broken_rules_deploy(start_stack, fakes, rules_repo):
    """A rules commit with errors reaches production: the running processes keep the last valid
    version, one alert names every file:line, /healthz says degraded with the error, webhooks
    are still received, stored and processed; the next valid commit is picked up without a
    restart."""
    stack = start_stack(RULES_DIR=str(rules_repo), RULES_RELOAD_SECONDS="1")
    good = version_of(rules_repo)
    assert stack.client.get("/healthz").json()["rules_version"] == good
    first = accepted(stack, purchase("s30-1", product_id=1111111, transaction="HP1111111001"))
    assert stack.wait_event(first)["rules_version"] == good

    lifecycle, curso = rules_repo / "lifecycle.yaml", rules_repo / "products" / "curso.yaml"
    lifecycle.write_text(lifecycle.read_text().replace("to: active", "to: actve", 1))
    curso.write_text(curso.read_text().replace("manychat_tags: [aluno-curso]", "manychat_tags: [aluno-cursos]"))
    commit(rules_repo, "a broken deploy")
    problems = engine(stack, "check", "--rules", str(rules_repo)).stderr.splitlines()[:-1]
    assert len(problems) == 2 and all(p.startswith("rules/") for p in problems)

    def degraded() -> bool:
        return stack.client.get("/healthz").json()["status"] == "degraded"

    stack.wait_for(degraded, timeout=20, what="/healthz to say degraded")
    health = stack.client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["rules_version"] == good  # the last valid version keeps running
    assert health.json()["rules_error"] == f"{problems[0]} (and 1 more error(s))"
    stack.wait_for(lambda: alerts(stack, "rules.invalid"), timeout=20, what="the rules alert")

    second = accepted(stack, purchase("s30-2", product_id=1111111, email=BIA, transaction="HP1111111002"))
    processed = stack.wait_event(second)
    assert (processed["status"], processed["rules_version"]) == ("processed", good)
    [alert] = alerts(stack, "rules.invalid")  # one alert, every file:line
    assert alert["count"] == 1
    for problem in problems:
        assert problem in alert["message"]
    assert f"keeping version {good}" in alert["message"]
    status = engine(stack, "status")
    assert status.returncode == 1  # the rules on disk are broken
    assert f"error: {problems[0]}" in status.stdout and "queue " in status.stdout and "oldest " in status.stdout

    lifecycle.write_text(lifecycle.read_text().replace("to: actve", "to: active", 1))
    curso.write_text(curso.read_text().replace("[aluno-cursos]", "[aluno-curso]").replace("Workshop", "Oficina"))
    commit(rules_repo, "the fix")
    fixed = version_of(rules_repo)

    def healthy() -> bool:
        return stack.client.get("/healthz").json() == {
            **stack.client.get("/healthz").json(),
            "status": "ok",
            "rules_version": fixed,
            "rules_error": None,
        }

    stack.wait_for(healthy, timeout=60, what="the fixed rules to be picked up")
    third = accepted(stack, purchase("s30-3", product_id=2222222, transaction="HP2222222001"))
    assert stack.wait_event(third)["rules_version"] == fixed
    assert len(alerts(stack, "rules.invalid")) == 1
    status = engine(stack, "status")
    assert status.returncode == 0 and f"rules      {fixed}" in status.stdout


def test_story_30_processes_started_on_broken_rules(start_stack, fakes, rules_repo, tmp_path):
    """After a restart with broken rules `engine serve` still stores webhooks and reports
    degraded health; `engine worker` holds events and alerts instead of crash-looping (one-line
    errors, no traceback), and processes them once a valid commit lands."""
    lifecycle = rules_repo / "lifecycle.yaml"
    lifecycle.write_text(lifecycle.read_text().replace("to: active", "to: actve", 1))
    commit(rules_repo, "a broken deploy")
    stack = start_stack(RULES_DIR=str(rules_repo), RULES_RELOAD_SECONDS="1")
    health = stack.client.get("/healthz").json()
    assert (health["status"], health["rules_version"]) == ("degraded", None)
    assert "unknown state 'actve'" in health["rules_error"]

    event_id = accepted(stack, purchase("s30-restart", product_id=1111111, transaction="HP1111111003"))
    held = stack.wait_event(event_id, statuses=("needs_attention", "processed"))
    assert held["status"] == "needs_attention"
    assert held["reason"].startswith("rules cannot be loaded: rules/lifecycle.yaml:")
    stack.wait_for(lambda: alerts(stack, "rules.unavailable") and alerts(stack, "rules.invalid"), what="alerts")

    lifecycle.write_text(lifecycle.read_text().replace("to: actve", "to: active", 1))
    commit(rules_repo, "the fix")
    processed = stack.wait_event(event_id, statuses=("processed",))
    assert processed["rules_version"] == version_of(rules_repo)
    assert fakes.manychat.flows_sent  # the onboarding flow went out
    logs = "".join(path.read_text() for path in tmp_path.glob("stack-*/*.log"))
    assert "Traceback" not in logs
    assert "error: invalid rules, holding events until they load: rules/lifecycle.yaml:" in logs
