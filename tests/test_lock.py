"""Dependencies are locked (versions and hashes); the image and `make install` install from the locks."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import REPO

RUN_LOCK = REPO / "requirements.lock"
TEST_LOCK = REPO / "requirements-test.lock"
PIN = re.compile(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", re.MULTILINE)


def name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def pins(lock) -> dict[str, str]:
    return {package.replace("_", "-"): version for package, version in PIN.findall(lock.read_text(encoding="utf-8"))}


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_dependency_is_pinned_with_hashes():
    for lock in (RUN_LOCK, TEST_LOCK):
        text = lock.read_text(encoding="utf-8")
        entries = re.split(r"\n(?=[a-z0-9])", text.split("\n\n", 1)[-1] if text.startswith("#") else text)
        pinned = [entry for entry in entries if PIN.match(entry)]
        assert len(pinned) == len(pins(lock)) > 20
        assert [entry.split()[0] for entry in pinned if "--hash=sha256:" not in entry] == []


def test_run_lock_has_the_runtime_and_no_test_tools():
    run, test = pins(RUN_LOCK), pins(TEST_LOCK)
    runtime = {name(r) for r in project()["dependencies"]}
    tools = {name(r) for r in project()["optional-dependencies"]["test"]}
    assert runtime <= run.keys() and not tools & run.keys()
    assert runtime | tools <= test.keys()
    # One resolution: the test environment runs the very versions the image runs.
    assert {package: test[package] for package in run} == run


def test_the_image_and_make_install_from_the_locks_with_hashes():
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY requirements.lock ./" in dockerfile
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "pip install -q --require-hashes -r requirements-test.lock" in makefile  # make install / test
    assert "pip install -q --require-hashes -r requirements.lock" in makefile  # make run
    assert re.search(r"^run: install-run$", makefile, re.MULTILINE)  # no test tools to run the service
    assert re.search(r"^lock: ", makefile, re.MULTILINE)  # the documented upgrade command
