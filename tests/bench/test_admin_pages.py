"""bench/admin_pages.py still measures every page of the admin page on a filled database: it finds
the /ui routes at run time, gives the parameterised ones real values, and every page answers 200."""

from __future__ import annotations

import pytest

from engine.db.migrate import upgrade
from engine.settings import Settings
from tests.conftest import throwaway_database

pytestmark = pytest.mark.integration


def test_every_admin_page_is_measured_on_a_small_course(capsys):
    from bench import admin_pages, history

    with throwaway_database("engine_test_admin_pages") as url:
        upgrade(Settings(ENGINE_ENV="test", database_url=url))
        history.fill(url, students=40, days=30, seed=3)
        pages, skipped, sample = admin_pages.measure(url, requests=2, warmup=0)
        admin_pages.report(pages, skipped, sample, 2)
    paths = {page.path.split("?")[0] for page in pages}
    assert {"/ui/", "/ui/students", "/ui/students.csv"} <= paths
    assert skipped == []
    for page in pages:
        assert page.statuses == {200}, (page.label, page.statuses)
        assert len(page.seconds) == 2 and all(seconds > 0 for seconds in page.seconds)
    assert "search: phone" in capsys.readouterr().out
