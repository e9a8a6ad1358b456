"""Operators' secrets are hashed, never kept; the settings refuse a plain password."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from engine.service.operators import API_OPERATOR, authenticate, hash_secret, operators, verify_secret
from engine.settings import Settings


def test_a_hash_verifies_its_secret_only():
    hashed = hash_secret("a long passphrase")
    assert hashed.startswith("scrypt$16384$8$1$") and hashed.count("$") == 5 and "a long passphrase" not in hashed
    assert verify_secret("a long passphrase", hashed)
    assert not verify_secret("a long passphrasE", hashed)
    assert hash_secret("a long passphrase") != hashed  # salted


@pytest.mark.parametrize("broken", ["", "scrypt$", "scrypt$1$8$1$AA==$AA==", "md5$a$b$c", "scrypt$16384$8$1$!!$!!"])
def test_a_malformed_hash_verifies_nothing(broken):
    assert not verify_secret("anything", broken)


def test_settings_refuse_a_plain_password_and_name_the_entry():
    with pytest.raises(ValidationError, match="ADMIN_USERS: bruno"):
        Settings(ENGINE_ENV="test", admin_users=SecretStr(f"ana:{hash_secret('x' * 12)},bruno:hunter2hunter2"))


def test_operators_come_from_the_variable_and_the_file(tmp_path):
    users = tmp_path / "users"
    users.write_text(f"# operators\ncaio:{hash_secret('file secret here')}\n\n", encoding="utf-8")
    settings = Settings(
        ENGINE_ENV="test", admin_users=SecretStr(f"ana:{hash_secret('env secret here')}"), admin_users_file=users
    )
    assert sorted(operators(settings)) == ["ana", "caio"]
    assert authenticate(settings, "caio", "file secret here") == "caio"
    assert authenticate(settings, " ana ", "env secret here") == "ana"
    assert authenticate(settings, "ana", "file secret here") is None


def test_the_admin_token_signs_in_as_admin_and_an_empty_token_never_does():
    settings = Settings(ENGINE_ENV="test", admin_api_token=SecretStr("t" * 32))
    assert authenticate(settings, API_OPERATOR, "t" * 32) == API_OPERATOR
    assert authenticate(Settings(ENGINE_ENV="test"), API_OPERATOR, "") is None
