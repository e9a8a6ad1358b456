"""The admin page through FastAPI's TestClient, on the real PostgreSQL, with two operators."""

from __future__ import annotations

import re
from functools import lru_cache

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from engine.api.app import create_app
from engine.service.operators import hash_secret

ANA_OPERATOR, ANA_SECRET = "ana", "correct horse battery"
CAIO_OPERATOR, CAIO_SECRET = "caio", "another long passphrase"


@lru_cache(maxsize=1)
def admin_users() -> str:
    """Hashing is slow on purpose: once per test process."""
    return f"{ANA_OPERATOR}:{hash_secret(ANA_SECRET)},{CAIO_OPERATOR}:{hash_secret(CAIO_SECRET)}"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: TestClient, name: str = ANA_OPERATOR, secret: str = ANA_SECRET, *, next_path: str = ""):
    """Posts the sign-in form as a browser does (the form's own token and cookie); the response."""
    form = client.get("/ui/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
    return client.post(
        "/ui/login",
        data={"name": name, "secret": secret, "next": next_path, "login_csrf": token},
        follow_redirects=False,
    )


@pytest.fixture
def h(make_harness):
    return make_harness(admin_users=SecretStr(admin_users()))


@pytest.fixture
def browser(h) -> TestClient:
    """A client with no session yet."""
    return TestClient(create_app(h.runtime))


@pytest.fixture
def signed_in(browser) -> TestClient:
    """A client signed in as ana."""
    assert sign_in(browser).status_code == 303
    return browser
