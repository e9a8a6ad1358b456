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
from tests.browser.conftest import EN, PT, buy, waiting_since
from tests.conftest import shipped_rules

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
