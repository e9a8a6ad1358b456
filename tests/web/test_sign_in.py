"""Signing in and out of the admin page: named operators, the API token as "admin", sessions,
CSRF on every change, the lockout shared with the admin API, and the audit rows they leave."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine.db.models import AdminSession, History, LoginAttempt
from tests.conftest import ADMIN_TOKEN
from tests.web.conftest import ANA_OPERATOR, CAIO_OPERATOR, CAIO_SECRET, csrf_of, sign_in

pytestmark = pytest.mark.integration


def test_the_root_leads_to_the_sign_in_form_and_back_to_the_page_asked_for(browser):
    root = browser.get("/", follow_redirects=False)
    assert root.status_code == 303 and root.headers["location"] == "/ui/"
    overview = browser.get("/ui/", follow_redirects=False)
    assert overview.status_code == 303 and overview.headers["location"].startswith("/ui/login?next=/ui/")
    signed = sign_in(browser, next_path="/ui/?x=1")
    assert signed.status_code == 303 and signed.headers["location"] == "/ui/?x=1"
    page = browser.get("/ui/")
    assert page.status_code == 200 and ANA_OPERATOR in page.text


def test_a_session_cookie_is_http_only_strict_and_stored_only_as_a_hash(h, browser):
    signed = sign_in(browser, CAIO_OPERATOR, CAIO_SECRET)
    cookie = signed.headers["set-cookie"]
    assert (
        "engine_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    )
    token = browser.cookies["engine_session"]
    with h.runtime.sessions() as session:
        stored = session.scalars(select(AdminSession)).all()
    assert [row.operator for row in stored] == [CAIO_OPERATOR]
    assert stored[0].token_hash != token and token not in stored[0].token_hash


def test_the_api_token_signs_in_as_admin(browser):
    assert sign_in(browser, "admin", ADMIN_TOKEN).status_code == 303
    assert "admin" in browser.get("/ui/").text


def test_a_wrong_password_is_refused_with_the_same_answer_as_an_unknown_name(browser):
    wrong = sign_in(browser, ANA_OPERATOR, "not the password")
    unknown = sign_in(browser, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "engine_session" not in browser.cookies


def test_a_sign_in_form_posted_from_elsewhere_is_refused(browser):
    response = browser.post(
        "/ui/login", data={"name": ANA_OPERATOR, "secret": "x", "login_csrf": "forged"}, follow_redirects=False
    )
    assert response.status_code == 400 and "engine_session" not in browser.cookies


def test_only_paths_of_the_page_are_followed_after_signing_in(browser):
    for target in ("https://evil.example/", "//evil.example/", "/admin/events", "/ui\\..\\x"):
        assert sign_in(browser, next_path=target).headers["location"] == "/ui/"


def test_five_failures_lock_the_address_out_of_the_page_and_the_api_alike(h, browser):
    for _ in range(h.runtime.settings.login_max_failures):
        assert sign_in(browser, ANA_OPERATOR, "guess").status_code == 401
    locked = sign_in(browser)  # the right password, too late
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    api = browser.get("/admin/events", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert api.status_code == 429
    h.clock.advance(minutes=h.runtime.settings.login_lockout_minutes + 1)
    assert sign_in(browser).status_code == 303


def test_wrong_api_tokens_count_towards_the_lockout_but_missing_ones_do_not(h, browser):
    for _ in range(10):
        assert browser.get("/admin/events").status_code == 401
    for _ in range(h.runtime.settings.login_max_failures):
        assert browser.get("/admin/events", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert browser.get("/admin/events", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 429
    assert browser.get("/admin/events").status_code == 401  # no token, no attempt: nothing to refuse


def test_a_success_forgets_the_addresses_earlier_typos(h, browser):
    for _ in range(h.runtime.settings.login_max_failures - 1):
        sign_in(browser, ANA_OPERATOR, "typo")
    assert sign_in(browser).status_code == 303
    with h.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 0


def test_signing_out_ends_the_session_everywhere(h, signed_in):
    cookie = signed_in.cookies["engine_session"]
    csrf = csrf_of(signed_in.get("/ui/").text)
    out = signed_in.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    signed_in.cookies.set("engine_session", cookie)  # a copy of the old cookie no longer signs in
    assert signed_in.get("/ui/", follow_redirects=False).status_code == 303
    with h.runtime.sessions() as session:
        kinds = session.scalars(select(History.kind).where(History.actor == "admin:ana").order_by(History.id)).all()
    assert kinds == ["signed_in", "signed_out"]


def test_a_change_without_the_sessions_csrf_token_is_refused(h, signed_in):
    response = signed_in.post("/ui/logout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert response.status_code == 403
    assert signed_in.get("/ui/").status_code == 200  # still signed in: nothing was done


def test_sessions_expire(h, signed_in):
    h.clock.advance(hours=h.runtime.settings.admin_session_hours + 0.1)
    assert signed_in.get("/ui/", follow_redirects=False).status_code == 303


def test_an_htmx_request_without_a_session_is_sent_to_the_sign_in_page(browser):
    response = browser.get("/ui/", headers={"HX-Request": "true"}, follow_redirects=False)
    assert response.status_code == 204 and response.headers["hx-redirect"].startswith("/ui/login")


def test_pages_forbid_framing_and_foreign_scripts_and_are_not_cached(signed_in):
    response = signed_in.get("/ui/")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


def test_the_language_switch_after_an_action_comes_back_to_a_page_not_to_the_action(signed_in):
    """A page rendered by a POST (an action's result) has the action's address: switching language
    there must not GET it."""
    csrf = csrf_of(signed_in.get("/ui/").text)
    refused = signed_in.post("/ui/logout", data={"csrf_token": csrf + "x"})  # the 403 page, rendered by a POST
    assert refused.status_code == 403
    assert 'name="back" value="/ui/"' in refused.text
