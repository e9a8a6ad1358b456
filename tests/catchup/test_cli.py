"""`engine sync hotmart`'s refusals, before it reads anything (the runs themselves: tests/e2e/test_hotmart_sync.py)."""

from __future__ import annotations

import os

from tests.cli import run_engine


def engine(pg: str, *args: str, **env: str):
    base = {k: v for k, v in os.environ.items() if not k.startswith("HOTMART_")}
    return run_engine({**base, "DATABASE_URL": pg, "ENGINE_ENV": "test", **env}, "sync", "hotmart", *args)


def test_options_that_go_with_apply_need_it(pg):
    for option in ("--confirm", "--grants-only", "--max-revokes=3"):
        done = engine(pg, option)
        assert done.returncode == 2 and "--grants-only, --confirm and --max-revokes go with --apply" in done.stderr


def test_without_credentials_it_says_which_are_missing_and_reads_nothing(pg):
    done = engine(pg, HOTMART_CLIENT_ID="id")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: HOTMART_CLIENT_SECRET, HOTMART_BASIC not set: the credentials of Hotmart's API (docs: Hotmart's API)"
    )


def test_a_bad_since_and_no_run_yet(pg):
    done = engine(pg, "--since", "yesterday")
    assert done.returncode == 2 and "'yesterday' is not an ISO date (e.g. 2026-03-01)" in done.stderr
    done = engine(pg, "--last")
    assert (done.returncode, done.stdout.strip()) == (1, "no hotmart sync run stored yet")
