"""The admin page in a real headless Chromium (Debian's ``chromium``, driven by Playwright's sync API;
no browser is downloaded): ``engine serve`` and ``engine worker`` as the end-to-end stories start
them (``tests/e2e/conftest.py``: a throwaway PostgreSQL database, Redis, the fake Discord and
ManyChat servers), with two operators (``tests/web/conftest.py``) and ``ENGINE_ENV=test`` (the
session cookie is not ``Secure`` over plain HTTP). One browser per test process, a new context
per test. Every console error, failed request and error response a test did not expect fails it;
every story keeps screenshots in ``var/screenshots/`` (artefacts, not committed).

In CI (CI=true) a missing browser is a failure, never a skip."""

from __future__ import annotations

import copy
import json
import os
import shutil
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright
from sqlalchemy import select, update

from engine.db.models import Membership, Student
from engine.db.session import session_factory
from engine.settings import Settings
from engine.web.i18n import Translator
from tests.conftest import REPO, load_payload
from tests.e2e import conftest as e2e
from tests.e2e import test_attention_stories as attention_stories
from tests.e2e.conftest import Fakes, Stack
from tests.e2e.test_attention_stories import accepted
from tests.web.conftest import ANA_OPERATOR, ANA_SECRET, admin_users

# The end-to-end stories' fixtures, shared: the fake Discord and ManyChat servers, and the
# engine's processes on the test's own database and queue.
fakes = e2e.fakes
start_stack = e2e.start_stack
rules_repo = attention_stories.rules_repo  # a git work tree holding a copy of the shipped rules

CHROMIUM_INSTALL = "apt-get install -y --no-install-recommends chromium (.ci/services does)"
SCREENSHOTS = REPO / "var" / "screenshots"
ICON = "/ui/static/favicon.svg"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
EN, PT = Translator("en"), Translator("pt-BR")

# Every page a test opens reports its Content-Security-Policy violations as console errors, so
# that the watch below fails the test on one whatever words the browser uses for it.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""

# The page's width when it scrolls sideways, and the outermost elements that make it do so.
TOO_WIDE = """() => {
  const page = document.documentElement.scrollWidth;
  if (page <= window.innerWidth) return [];
  const past = (el) => el.getBoundingClientRect().right > window.innerWidth + 0.5;
  const wide = [...document.querySelectorAll("body *")].filter(
    (el) => past(el) && !el.parentElement.closest(".scroll"));
  const name = (el) => el.tagName.toLowerCase() + (el.className ? "." + el.className : "");
  const text = (el) => el.textContent.trim().slice(0, 40);
  return [`the page is ${page} px wide`, ...wide.slice(0, 8).map((el) => `${name(el)}: "${text(el)}"`)];
}"""


def chromium_path() -> str | None:
    """Debian's browser (``CHROMIUM_PATH`` names another build)."""
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")


def require_chromium() -> str:
    path = chromium_path()
    if path and os.access(path, os.X_OK):
        return path
    message = f"no Chromium on this machine: {CHROMIUM_INSTALL}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def launch_chromium(playwright) -> Browser:
    # Chromium's sandbox needs user namespaces that root (CI's containers) does not get.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=require_chromium(), args=args, headless=True)


@pytest.fixture(scope="module", autouse=True)
def chromium() -> Iterator[Browser]:
    """One browser per test module; first of a test's fixtures, so that a missing browser skips
    (or, in CI, fails) the test before any process starts. Not per session: while Playwright's sync
    API runs, its event loop is this thread's running loop, and the next test of this process that
    runs a loop of its own (the bot's, httpx's) would fail; pytest ends a module's fixtures before a
    test of another module runs."""
    require_chromium()  # before Playwright starts its driver
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


class AdminPage:
    """A browser tab on the admin page that writes down what went wrong in it: console errors
    (a CSP violation among them), requests that failed, and responses of status 400 or more
    other than those the test said it expects (``expect_status``)."""

    def __init__(self, page: Page, stack: Stack, story: str):
        self.page = page
        self.stack = stack
        self.story = story
        self.problems: list[str] = []
        self._expected: set[tuple[str, int]] = set()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught error: {error}"))
        page.on("requestfailed", self._request_failed)
        page.on("response", self._response)

    def expect_status(self, path: str, status: int) -> None:
        self._expected.add((path, status))

    def _expected_response(self, url: str, status: int) -> bool:
        return (urlsplit(url).path, status) in self._expected

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        # Chromium also logs each error response it loaded; one the test expects is no problem.
        if message.text.startswith("Failed to load resource") and any(
            self._expected_response(url, status) and f"status of {status}" in message.text
            for _, status in self._expected
        ):
            return
        self.problems.append(f"console error: {message.text} ({url})")

    def _request_failed(self, request: Request) -> None:
        if request.failure == "net::ERR_ABORTED" and urlsplit(request.url).path == ICON:
            return  # the browser fetches the icon after the page; the next page load cancels it
        self.problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400 and not self._expected_response(response.url, response.status):
            self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def take_problems(self) -> list[str]:
        """What went wrong so far, forgotten (for a test that caused it on purpose)."""
        taken, self.problems = self.problems, []
        return taken

    def goto(self, path: str) -> Response | None:
        return self.page.goto(self.stack.api + path)

    def sign_in(self, name: str = ANA_OPERATOR, secret: str = ANA_SECRET, t: Translator = EN) -> None:
        """Types into the sign-in form as a person does (found by its labels) and sends it."""
        if urlsplit(self.page.url).path != "/ui/login":
            self.goto("/ui/login")
        self.page.get_by_label(t("sign_in.name"), exact=True).fill(name)
        self.page.get_by_label(t("sign_in.secret"), exact=True).fill(secret)
        self.page.get_by_role("button", name=t("sign_in.submit")).click()
        self.page.wait_for_load_state()

    def shot(self, name: str) -> None:
        """The whole page as ``var/screenshots/<story>-<name>.png``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SCREENSHOTS / f"{self.story}-{name}.png", full_page=True)

    def too_wide(self) -> list[str]:
        """Nothing when the whole page does not scroll sideways (a wide table may scroll in its own
        ``.scroll`` box); otherwise the page's width and the elements past the screen's right edge."""
        return self.page.evaluate(TOO_WIDE)


@pytest.fixture
def start_admin(start_stack) -> Callable[..., Stack]:
    """``start_admin(**environment)``: the API and a worker, with ana and caio as operators."""

    def start(**extra: str) -> Stack:
        # No settling wait: the stories deliver one purchase at a time, and wait for each.
        return start_stack(ENGINE_ENV="test", ADMIN_USERS=admin_users(), ORDER_SETTLE_SECONDS="0", **extra)

    return start


@pytest.fixture
def stack(start_admin) -> Stack:
    return start_admin()


@pytest.fixture
def open_page(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., AdminPage]]:
    """``open_page(stack, viewport=DESKTOP, locale="en-US")``: a tab in a new browser context
    (its own cookies). The test fails if anything went wrong in one of its tabs."""
    contexts, tabs = [], []

    def open_(stack: Stack, *, viewport: dict[str, int] = DESKTOP, locale: str = "en-US") -> AdminPage:
        context = chromium.new_context(viewport=viewport, locale=locale)
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        contexts.append(context)
        story = request.node.name.removeprefix("test_")
        tab = AdminPage(context.new_page(), stack, story if not tabs else f"{story}-{len(tabs) + 1}")
        tabs.append(tab)
        return tab

    yield open_
    problems = [problem for tab in tabs for problem in tab.problems]
    for context in contexts:
        context.close()
    if problems:
        pytest.fail("the browser saw:\n" + "\n".join(problems))


@pytest.fixture
def admin(stack: Stack, open_page) -> AdminPage:
    """A desktop tab on the default stack, not signed in yet."""
    return open_page(stack)


# ----------------------------------------------------------------------------- the course's data


def purchase(
    email: str, name: str, *, envelope: str, product_id: int = 1111111, transaction: str = "", phone: str = ""
) -> bytes:
    """A Hotmart PURCHASE_APPROVED of ``product_id`` (the shipped rules' course by default) for one
    buyer (``phone``: a Brazilian number, +55 and its area code)."""
    payload = copy.deepcopy(load_payload("purchase_approved.json"))
    payload["id"] = envelope
    buyer = payload["data"]["buyer"]
    buyer.update(email=email, name=name, first_name=name.split()[0])
    if phone:
        buyer.update(checkout_phone_code=phone[3:5], checkout_phone=phone[5:])
    payload["data"]["product"]["id"] = product_id
    payload["data"]["purchase"]["transaction"] = transaction or f"HP{zlib.crc32(envelope.encode()):010d}"
    return json.dumps(payload).encode()


def buy(stack: Stack, fakes: Fakes, email: str, name: str, phone: str, **options) -> int:
    """``email`` buys (a ManyChat contact of hers exists, as for every student who bought through
    the funnel); the event id once the worker has processed it."""
    fakes.manychat.seed_subscriber(email=email, whatsapp_phone=phone, first_name=name.split()[0])
    event_id = accepted(stack, purchase(email, name, envelope=f"buy-{email}", phone=phone, **options))
    event = stack.wait_event(event_id, statuses=("processed", "needs_attention", "failed", "ignored"))
    assert event["status"] == "processed", event
    return event_id


def waiting_since(pg: str, email: str, days: float) -> datetime:
    """Backdates ``email``'s memberships: they entered their state ``days`` ago."""
    since = datetime.now(UTC) - timedelta(days=days)
    sessions = session_factory(Settings(ENGINE_ENV="test", database_url=pg))
    with sessions.begin() as session:
        student_id = session.scalar(select(Student.id).where(Student.email == email))
        assert student_id is not None, email
        session.execute(update(Membership).where(Membership.student_id == student_id).values(state_changed_at=since))
    return since
