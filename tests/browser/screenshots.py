"""The README's screenshots of the admin page, made by hand when the page changes:

    .venv/bin/python -m tests.browser.screenshots

It needs what the browser tests need (PostgreSQL, Redis, Debian's chromium). It seeds a demo
course in a throwaway database (a few purchases through the webhook, three students waiting for
their Discord link longer than STUCK_DAYS, two purchases of a product the rules do not know),
runs `engine serve` and `engine worker` against the fake Discord and ManyChat, signs in as ana
in a 1100 px wide headless Chromium and writes ``docs/images/admin-overview.png`` (the overview) and
``docs/images/admin-student.png`` (a stuck student's page, a new code's preview open), each under ``MAX_BYTES``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright
from redis import Redis

from tests.browser.conftest import (
    EN,
    AdminPage,
    accepted,
    buy,
    launch_chromium,
    purchase,
    require_chromium,
    waiting_since,
)
from tests.conftest import REPO, TEST_REDIS_URL, _delete_this_runs_keys, throwaway_database
from tests.e2e.conftest import launch_stack, running_fakes, stack_env, stop_stacks
from tests.web.conftest import admin_users

IMAGES = REPO / "docs" / "images"
VIEWPORT = {"width": 1100, "height": 720}
STUDENT_VIEWPORT = {"width": 1100, "height": 960}
MAX_BYTES = 150_000

# (email, name, WhatsApp number, days waiting for the Discord link: 0 = bought today)
STUDENTS = [
    ("eva.exemplo@example.com", "Eva Exemplo", "+5511999990101", 6),
    ("joao.pereira@example.com", "João Pereira", "+5511999990102", 5),
    ("lucia.santos@example.com", "Lúcia Santos", "+5511999990103", 4),
    ("bruno.lima@example.com", "Bruno Lima", "+5511999990104", 1),
    ("carla.souza@example.com", "Carla Souza", "+5521999990105", 0),
    ("diego.alves@example.com", "Diego Alves", "+5531999990106", 0),
]
UNKNOWN_PRODUCT = 7777777  # on sale before its rules file exists


def keep(admin: AdminPage, name: str) -> None:
    """The tab as it is now, as ``docs/images/<name>``, if nothing went wrong in it on the way."""
    if admin.problems:
        sys.exit("the browser saw:\n" + "\n".join(admin.problems))
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / name
    admin.page.screenshot(path=path)
    if shutil.which("pngquant"):  # cuts a screenshot of flat colours to about a third
        subprocess.run(["pngquant", "--force", "--skip-if-larger", "--output", str(path), str(path)], check=False)
    size = path.stat().st_size
    if size > MAX_BYTES:
        sys.exit(f"{path.relative_to(REPO)}: {size} bytes, over {MAX_BYTES} (install pngquant, or shrink VIEWPORT)")
    print(f"{path.relative_to(REPO)}: {size} bytes")


def capture(admin: AdminPage) -> None:
    page = admin.page
    admin.sign_in()
    expect(page.get_by_role("heading", level=1)).to_have_text(EN("overview.title"))
    keep(admin, "admin-overview.png")
    stuck = page.get_by_role("table").filter(has_text=EN("overview.waiting_since"))
    stuck.get_by_role("link", name=STUDENTS[0][1]).click()
    # Her page with the preview of a new code open: what it will do, before it is confirmed.
    page.get_by_role("button", name=EN("student.new_code_for", product="curso")).click()
    expect(page.locator("#action-panel").get_by_role("heading")).to_have_text(EN("student.confirm_code"))
    page.set_viewport_size(STUDENT_VIEWPORT)  # her name, who she is and the whole preview
    page.evaluate("window.scrollTo(0, 0)")
    keep(admin, "admin-student.png")


def main() -> None:
    require_chromium_or_exit()
    with (
        tempfile.TemporaryDirectory() as logs,
        throwaway_database("engine_screenshots") as database,
        running_fakes() as fakes,
    ):
        env = stack_env(database, TEST_REDIS_URL, fakes, ENGINE_ENV="test", ADMIN_USERS=admin_users())
        stack = launch_stack(env, Path(logs))
        try:
            for email, name, phone, days in STUDENTS:
                buy(stack, fakes, email, name, phone)
                if days:
                    waiting_since(database, email, days=days)
            for index, (email, name, _, _) in enumerate(STUDENTS[3:5]):
                body = purchase(email, name, envelope=f"demo-unknown-{index}", product_id=UNKNOWN_PRODUCT)
                stack.wait_event(accepted(stack, body), statuses=("needs_attention",))
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                context = browser.new_context(viewport=VIEWPORT, locale="en-US")
                admin = AdminPage(context.new_page(), stack, "readme")
                capture(admin)
                browser.close()
        finally:
            stop_stacks([stack])
            redis = Redis.from_url(TEST_REDIS_URL)
            _delete_this_runs_keys(redis)  # the queue's keys (QUEUE_NAME is this run's own)
            redis.close()


def require_chromium_or_exit() -> str:
    """The browser, or the command that installs it (outside pytest, a skip is an exit)."""
    try:
        return require_chromium()
    except BaseException as missing:  # pytest's skip and fail are BaseExceptions
        sys.exit(str(missing))


if __name__ == "__main__":
    main()
