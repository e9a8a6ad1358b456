"""The admin page's lifecycle stories, as an operator lives them in a real headless Chromium, on
`engine serve` and `engine worker` against the fake Discord and ManyChat (``conftest.py``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from engine.db.models import History
from engine.db.session import session_factory
from engine.settings import Settings
from tests.browser.conftest import EN, PT, accepted, buy, purchase, waiting_since
from tests.conftest import shipped_rules
from tests.e2e.conftest import ANA
from tests.e2e.test_attention_stories import NEW_PRODUCT, add_product, commit, version_of
from tests.e2e.test_reconcile_cli import COURSE_ROLE
from tests.e2e.test_reconcile_cli import seed as seed_reconcile

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUCK_DAYS = Settings.model_fields["stuck_days"].default
EVA = "eva.exemplo@example.com"
# (e-mail, name, WhatsApp number, days waiting for the Discord link), oldest first
STUCK = [
    (EVA, "Eva Exemplo", "+5511999990201", STUCK_DAYS + 3),
    ("joao.pereira@example.com", "João Pereira", "+5511999990202", STUCK_DAYS + 2),
    ("lucia.santos@example.com", "Lúcia Santos", "+5511999990203", STUCK_DAYS + 1),
]


def when(moment: datetime) -> str:
    """A stored time as the page writes it."""
    return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def history(pg: str, kind: str) -> list[History]:
    with session_factory(Settings(ENGINE_ENV="test", database_url=pg))() as session:
        return list(session.scalars(select(History).where(History.kind == kind).order_by(History.id)))


def test_story_44_who_is_stuck(stack, fakes, pg, admin):
    """44. Who is stuck. The operator opens the page in the morning, sees the three students waiting
    in pending_onboarding for more than three days, opens Eva's timeline, and sends her a new code;
    the audit view shows who sent it and when."""
    for email, name, phone, days in STUCK:
        buy(stack, fakes, email, name, phone)
        waiting_since(pg, email, days=days)
    buy(stack, fakes, "rita.recente@example.com", "Rita Recente", "+5511999990204")  # bought today
    eva = fakes.manychat.find(email=EVA)
    first_code = eva.fields["codigo_discord"]
    onboarding = shipped_rules().products["curso"].flows["onboarding"]

    # The morning: the three, oldest first, and nobody else.
    admin.sign_in()
    page = admin.page
    stuck = page.get_by_role("table").filter(has_text=EN("overview.waiting_since"))
    rows = stuck.locator("tbody tr")
    expect(rows).to_have_count(3)
    for row, (email, name, _, _) in zip(rows.all(), STUCK, strict=True):
        expect(row).to_contain_text(name)
        expect(row).to_contain_text(email)
        expect(row).to_contain_text("pending_onboarding")
    admin.shot("overview")

    # Eva's page: her purchase in the timeline, waiting for the link.
    stuck.get_by_role("link", name="Eva Exemplo").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Eva Exemplo")
    timeline = page.get_by_role("region", name=EN("student.timeline"))
    expect(timeline).to_contain_text("PURCHASE_APPROVED")
    expect(page.get_by_role("region", name=EN("student.memberships"))).to_contain_text(EN("student.waiting_for_link"))
    admin.shot("timeline")

    # A new code: first what it will do (nothing sent yet), then the confirmation with a note.
    page.get_by_role("button", name=EN("student.new_code_for", product="curso")).click()
    panel = page.locator("#action-panel")
    expect(panel.get_by_role("heading", level=2)).to_have_text(EN("student.confirm_code"))
    expect(panel).to_contain_text("trigger_flow")
    assert fakes.manychat.find(email=EVA).fields["codigo_discord"] == first_code
    panel.get_by_label(EN("student.why")).fill("She never got the first message")
    admin.shot("confirm")
    panel.get_by_role("button", name=EN("student.do_code")).click()
    expect(page.get_by_role("status")).to_contain_text(EN("student.code_sent", product="curso"))
    # The answer is the POST's page: the language switch there comes back to Eva's page, not the action.
    page.get_by_label(EN("common.language")).select_option("pt-BR")
    page.get_by_role("button", name=EN("common.switch_language")).click()
    expect(page).to_have_url(re.compile(r"/ui/students/eva\.exemplo(%40|@)example\.com$"))
    expect(page.get_by_role("region", name=PT("student.timeline"))).to_be_visible()
    page.get_by_label(PT("common.language")).select_option("en")
    page.get_by_role("button", name=PT("common.switch_language")).click()
    # Wait for the switch's page: a navigation started before it lands would abort it.
    expect(page.get_by_role("region", name=EN("student.timeline"))).to_be_visible()

    # The worker runs the rules' steps: a new code in her ManyChat field and the onboarding flow again.
    def flows_to_eva() -> list[str]:
        return [ns for sid, ns, _ in fakes.manychat.flows_sent if sid == eva.id]

    stack.wait_for(lambda: len(flows_to_eva()) == 2, what="the onboarding flow to Eva again")
    assert flows_to_eva() == [onboarding, onboarding]
    assert fakes.manychat.find(email=EVA).fields["codigo_discord"] != first_code
    admin.goto(f"/ui/students/{quote(EVA)}")  # not a reload: that would send the form again
    expect(timeline).to_contain_text("CODE_REQUESTED")
    admin.shot("code-sent")
    [requested] = history(pg, "code_requested")
    assert (requested.actor, requested.detail["note"]) == ("admin:ana", "She never got the first message")

    # The audit view: who sent it, when, and why.
    page.get_by_role("navigation").get_by_role("link", name=EN("nav.audit")).click()
    page.get_by_label(EN("audit.kind")).select_option("code_requested")
    page.get_by_role("button", name=EN("audit.apply_filters")).click()
    rows = page.get_by_role("table").locator("tbody tr")
    expect(rows).to_have_count(1)
    for text in ("admin:ana", "code_requested", "She never got the first message", EVA, when(requested.created_at)):
        expect(rows).to_contain_text(text)
    admin.shot("audit")


def test_story_45_after_a_fix_replay(start_admin, fakes, pg, rules_repo, open_page):
    """45. After a fix, replay. Twelve events need attention because a new product had no rules
    file; after the file is merged, the operator replays the twelve from the page in one action
    with a confirmation, and each ends processed."""
    # The processes look at the rules on disk when a page or an event needs them (and every 30 s,
    # longer than this story): never between the new file and its commit (a "-dirty" version).
    stack = start_admin(RULES_DIR=str(rules_repo))
    cause, note = f"no product matches id {NEW_PRODUCT}", "products/mentoria.yaml is merged"
    events = []
    for number in range(1, 13):
        email, name, phone = f"aluna{number:02d}@example.com", f"Aluna {number:02d}", f"+551199999{number:04d}"
        fakes.manychat.seed_subscriber(email=email, whatsapp_phone=phone, first_name="Aluna")
        body = purchase(email, name, envelope=f"s45-{number}", product_id=NEW_PRODUCT, phone=phone)
        events.append(accepted(stack, body))
    for event_id in events:
        assert stack.wait_event(event_id, statuses=("needs_attention", "processed"))["status"] == "needs_attention"

    # The overview: twelve events, one cause.
    admin = open_page(stack)
    admin.sign_in()
    page = admin.page
    causes = page.get_by_role("table").filter(has_text=EN("overview.cause"))
    expect(causes.locator("tbody tr")).to_have_count(1)
    expect(causes.locator("tbody td.num")).to_have_text("12")
    admin.shot("overview")

    # The fix is merged: products/mentoria.yaml claims the product's id.
    add_product(rules_repo)
    commit(rules_repo, "products/mentoria.yaml")
    fixed = version_of(rules_repo)

    # From the cause to its events, then the replay of all twelve: what it will do first.
    causes.get_by_role("link", name=cause).click()
    expect(page.locator("#events-table tbody tr")).to_have_count(12)
    page.get_by_label(EN("events.bulk_cause"), exact=True).select_option(cause)
    page.get_by_role("button", name=EN("events.bulk_preview")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(EN("events.bulk_title"))
    expect(page.get_by_role("main")).to_contain_text(EN("events.bulk_count", count=12, version=fixed))
    # The first ten previewed one by one (each a dry-run), the count and the button say twelve.
    expect(page.get_by_role("main")).to_contain_text(EN("events.bulk_first", shown=10, count=12))
    would_be = page.get_by_role("table").locator("tbody tr td:nth-child(4) .badge")
    expect(would_be).to_have_count(10)
    expect(would_be).to_have_text(["processed"] * 10)
    assert {stack.event(event_id)["status"] for event_id in events} == {"needs_attention"}  # nothing changed yet
    page.get_by_label(EN("events.note_label")).fill(note)
    admin.shot("preview")
    page.get_by_role("button", name=EN("events.bulk_confirm", count=12)).click()
    expect(page.locator(".notice[role=status]")).to_have_text(EN("events.replayed", count=12, version=fixed))
    admin.shot("replayed")

    # Each ends processed, with the new rules, and is written to the history with the operator and the note.
    for event_id in events:
        event = stack.wait_event(event_id)
        assert (event["status"], event["product"], event["rules_version"]) == ("processed", "mentoria", fixed)
    replays = history(pg, "replay")
    assert sorted(row.event_id for row in replays) == events
    assert {(row.actor, row.detail.get("note")) for row in replays} == {("admin:ana", note)}
    admin.goto("/ui/events?status=needs_attention")
    expect(page.locator("#events-table")).to_contain_text(EN("events.none"))


def test_a_reconcile_over_the_guard_is_applied_once_the_operator_has_read_the_list(stack, fakes, pg, admin):
    """Twelve refunded students still hold the course's Discord role: more revocations than reconcile
    applies unasked (10). The operator runs a report, opens the apply confirmation, which names every
    revocation and applies nothing until she ticks that she has read the list; then the roles go."""
    seed_reconcile(pg, students=12, state="refunded")  # the rules say refunded students hold nothing
    members = [ANA["discord_id"], *(str(10**17 + i) for i in range(1, 12))]
    fakes.discord.set_member_roles(ANA["discord_id"], [COURSE_ROLE])
    for member in members[1:]:
        fakes.discord.add_member(member, [COURSE_ROLE])

    admin.sign_in()
    page = admin.page
    page.get_by_role("navigation").get_by_role("link", name=EN("nav.reconcile")).click()
    page.get_by_label(EN("reconcile.note")).fill("the morning check")
    page.get_by_role("button", name=EN("reconcile.report_button")).click()
    expect(page).to_have_url(re.compile(r"/ui/reconcile/\d+$"))
    curso = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="curso", exact=True))
    expect(curso.locator("td").nth(1)).to_have_text("12")  # extra: held without the rules wanting it
    admin.shot("report")
    assert all(fakes.discord.member_roles(member) == {COURSE_ROLE} for member in members)  # a report changes nothing

    page.get_by_role("link", name=EN("reconcile.apply_link")).click()
    expect(page.get_by_role("alert")).to_have_text(EN("reconcile.over_limit", count=12, limit=10))
    revocations = page.get_by_role("table").filter(has_text=EN("reconcile.revocations", count=12))
    expect(revocations.locator("tbody tr")).to_have_count(12)
    expect(revocations).to_contain_text(ANA["email"])
    admin.shot("guard")

    # Without the tick the browser does not send the form: nothing applied.
    apply_url = page.url
    page.get_by_role("button", name=EN("reconcile.apply_button"), exact=True).click()
    assert page.url == apply_url
    checkbox = page.get_by_label(EN("reconcile.confirm_checkbox", count=12))
    assert checkbox.evaluate("box => box.validity.valueMissing")
    checkbox.check()
    page.get_by_label(EN("reconcile.note")).fill("refunds of the launch week")
    page.get_by_role("button", name=EN("reconcile.apply_button"), exact=True).click()
    expect(page.locator(".notice.ok")).to_contain_text("RECONCILE")
    admin.shot("applied")

    stack.wait_for(
        lambda: all(fakes.discord.member_roles(member) == set() for member in members),
        what="the twelve roles to be removed",
    )
    [applied] = history(pg, "reconcile_applied")
    assert (applied.actor, applied.detail["confirm"]) == ("admin:ana", True)
