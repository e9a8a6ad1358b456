"""The admin page as an operator meets it, in a real headless Chromium: signing in, the language,
the overview's stuck students, the keyboard, the Content-Security-Policy and a phone's screen.
Every test also fails on a console error, a failed request or an unexpected error response
(``tests/browser/conftest.py``)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from engine.settings import Settings
from tests.browser.conftest import EN, PHONE, PT, AdminPage, accepted, buy, purchase, waiting_since
from tests.web.conftest import ANA_OPERATOR, ANA_SECRET

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUCK_DAYS = Settings.model_fields["stuck_days"].default
EVA = "eva.exemplo@example.com"


def heading(admin: AdminPage):
    return admin.page.get_by_role("heading", level=1)


def test_signing_in_and_a_wrong_password(admin):
    admin.goto("/")
    expect(admin.page).to_have_url(re.compile(r"/ui/login\?next=/ui/$"))
    expect(heading(admin)).to_have_text(EN("sign_in.title"))

    admin.expect_status("/ui/login", 401)
    admin.sign_in(secret="not the password")
    expect(admin.page.get_by_role("alert")).to_have_text(EN("sign_in.refused"))
    admin.shot("refused")

    admin.sign_in()
    expect(admin.page).to_have_url(f"{admin.stack.api}/ui/")
    expect(heading(admin)).to_have_text(EN("overview.title"))
    expect(admin.page.locator(".who")).to_have_text(ANA_OPERATOR)
    admin.shot("overview")


def test_the_language_switch_holds_across_pages_and_sessions(admin):
    admin.sign_in()
    page = admin.page
    page.get_by_label(EN("common.language")).select_option("pt-BR")
    page.get_by_role("button", name=EN("common.switch_language")).click()
    expect(page.locator("html")).to_have_attribute("lang", "pt-BR")
    expect(heading(admin)).to_have_text(PT("overview.title"))
    expect(page.get_by_role("navigation")).to_contain_text(PT("nav.students"))
    admin.shot("overview-pt")

    page.get_by_role("navigation").get_by_role("link", name=PT("nav.events")).click()  # another view
    expect(heading(admin)).to_have_text(PT("events.title"))
    page.get_by_role("link", name=PT("common.brand")).click()
    expect(heading(admin)).to_have_text(PT("overview.title"))
    page.reload()
    expect(heading(admin)).to_have_text(PT("overview.title"))
    page.get_by_role("button", name=PT("common.sign_out")).click()  # the choice outlives the session
    expect(heading(admin)).to_have_text(PT("sign_in.title"))
    admin.sign_in(t=PT)
    expect(heading(admin)).to_have_text(PT("overview.title"))
    expect(page.locator("html")).to_have_attribute("lang", "pt-BR")


def test_the_overview_shows_a_stuck_student_and_leads_to_her_page(stack, fakes, pg, admin):
    buy(stack, fakes, EVA, "Eva Exemplo", "+5511999990005")
    buy(stack, fakes, "rita.recente@example.com", "Rita Recente", "+5511999990006")
    waiting_since(pg, EVA, days=STUCK_DAYS + 2)  # Rita bought today: not stuck

    admin.sign_in()
    page = admin.page
    stuck = page.get_by_role("table").filter(has_text=EN("overview.waiting_since"))
    expect(stuck.locator("tbody tr")).to_have_count(1)
    expect(stuck).to_contain_text(EVA)
    expect(stuck).to_contain_text("pending_onboarding")
    tile = page.get_by_role("link", name=EN("overview.stuck_tile", days=STUCK_DAYS))
    expect(tile.locator(".figure")).to_have_text("1")
    admin.shot("overview")

    stuck.get_by_role("link", name="Eva Exemplo").click()
    expect(page).to_have_url(re.compile(r"/ui/students/eva\.exemplo(%40|@)example\.com$"))
    expect(page.get_by_role("main")).to_contain_text(EVA)
    admin.shot("student")


def test_the_waiting_tile_lists_the_stuck_students_and_the_search_finds_one(stack, fakes, pg, admin):
    buy(stack, fakes, EVA, "Eva Exemplo", "+5511999990005")
    buy(stack, fakes, "rita.recente@example.com", "Rita Recente", "+5511999990006")
    waiting_since(pg, EVA, days=STUCK_DAYS + 2)

    admin.sign_in()
    page = admin.page
    page.get_by_role("link", name=EN("overview.stuck_tile", days=STUCK_DAYS)).click()
    expect(page).to_have_url(re.compile(r"/ui/students\?stuck=1$"))
    expect(page.get_by_role("main")).to_contain_text(EN("students.found", count=1))
    expect(page.get_by_role("main")).to_contain_text(EVA)
    expect(page.get_by_role("main")).not_to_contain_text("rita.recente@example.com")

    page.get_by_role("link", name=EN("nav.students")).click()
    expect(page).to_have_url(re.compile(r"/ui/students$"))  # the stuck list has the same search box
    page.get_by_role("searchbox", name=EN("students.search")).fill("RECENTE")
    page.get_by_role("button", name=EN("students.apply"), exact=True).click()
    expect(page.get_by_role("main")).to_contain_text(EN("students.found", count=1))
    expect(page.get_by_role("main")).to_contain_text("rita.recente@example.com")
    admin.shot("students")


def test_the_keyboard_reaches_the_sign_in_form_and_the_nav(admin):
    admin.goto("/ui/login")
    page = admin.page
    name, secret = (page.get_by_label(EN(key), exact=True) for key in ("sign_in.name", "sign_in.secret"))
    expect(name).to_be_focused()  # on arrival
    page.keyboard.type(ANA_OPERATOR)
    page.keyboard.press("Tab")
    expect(secret).to_be_focused()
    page.keyboard.type(ANA_SECRET)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name=EN("sign_in.submit"))).to_be_focused()
    admin.shot("sign-in")
    page.keyboard.press("Enter")
    expect(heading(admin)).to_have_text(EN("overview.title"))

    # From the top of a page: the skip link, the brand, every link of the nav in order, then the language.
    nav_links = page.get_by_role("navigation").get_by_role("link").all_inner_texts()
    assert len(nav_links) >= 2
    reached = []
    for _ in range(2 + len(nav_links) + 1):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    assert reached == [EN("common.skip_to_content"), EN("common.brand"), *nav_links, "language"]
    admin.shot("nav-focus")

    # The skip link takes the keyboard past the header, into the page's content.
    page.reload()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('main') !== null")


def test_the_content_security_policy_holds(admin):
    response = admin.goto("/ui/login")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    admin.sign_in()
    page = admin.page
    assert page.evaluate("typeof window.htmx") == "object"  # the page's own (vendored) script runs
    assert admin.take_problems() == []  # and nothing on the way broke the policy

    # What an injection would add runs nowhere: an inline script, an inline style.
    with page.expect_console_message(lambda message: "CSP violation" in message.text):
        page.evaluate(
            """() => {
              const script = document.createElement("script");
              script.textContent = "window.injected = true";
              document.body.append(script);
            }"""
        )
    assert page.evaluate("window.injected === undefined")
    with page.expect_console_message(lambda message: "CSP violation" in message.text):
        page.evaluate("""() => document.body.insertAdjacentHTML("beforeend", '<p id="x" style="color: red">x</p>')""")
    assert page.evaluate("getComputedStyle(document.getElementById('x')).color") != "rgb(255, 0, 0)"
    violations = admin.take_problems()
    assert violations and all("CSP violation" in p or "Content Security Policy" in p for p in violations)
    admin.shot("after-injection")


def test_on_a_phone_the_nav_and_the_tables_stay_usable(stack, fakes, pg, open_page):
    long_email = "maria.aparecida.dos.santos.exemplo@example.com"
    buy(stack, fakes, long_email, "Maria Aparecida dos Santos Exemplo", "+5511999990007")
    waiting_since(pg, long_email, days=STUCK_DAYS + 1)
    unknown = accepted(stack, purchase(EVA, "Eva Exemplo", envelope="phone-unknown", product_id=7777777))
    assert stack.wait_event(unknown, statuses=("needs_attention",))["status"] == "needs_attention"

    admin = open_page(stack, viewport=PHONE)
    admin.goto("/ui/login")
    assert admin.too_wide() == []
    admin.shot("sign-in")
    admin.sign_in()
    page = admin.page
    expect(page.get_by_role("table")).to_have_count(3)  # memberships, the stuck, the causes
    admin.shot("overview")
    assert admin.too_wide() == [], "the whole page scrolls sideways"
    for link in page.get_by_role("navigation").get_by_role("link").all():
        expect(link).to_be_visible()
        box = link.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], link.inner_text()
    # A table fits the screen or scrolls inside its own box.
    for table in page.get_by_role("table").all():
        assert table.evaluate("t => (t.closest('.scroll') || t).getBoundingClientRect().right <= innerWidth + 0.5")

    # The events that need attention, through the tile, on the same screen: the filters and the table fit.
    page.get_by_role("link", name=EN("overview.attention_tile")).click()
    expect(page.locator("#events-table tbody tr")).to_have_count(1)
    assert admin.too_wide() == []
    admin.shot("events")


def test_the_hotmart_sync_view_is_in_the_nav_and_says_how_to_turn_it_on(admin):
    admin.sign_in()
    page = admin.page
    page.get_by_role("navigation").get_by_role("link", name=EN("nav.sync")).click()
    expect(heading(admin)).to_have_text(EN("sync.title"))
    expect(page.locator("#sync-off")).to_have_text(EN("sync.is_off"))  # the stack runs with the sync off
    expect(page.get_by_role("button", name=EN("sync.report_button"))).to_have_count(0)
    expect(page.get_by_text(EN("sync.no_runs"))).to_be_visible()
    admin.shot("sync-off")
