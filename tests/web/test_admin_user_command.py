"""``engine admin-user NAME`` prints the ADMIN_USERS entry that signs NAME in."""

from __future__ import annotations

from click.testing import CliRunner
from pydantic import SecretStr

from engine.cli import main
from engine.service.operators import authenticate
from engine.settings import Settings


def test_the_printed_entry_signs_the_operator_in_and_holds_no_password():
    result = CliRunner().invoke(main, ["admin-user", "bruno", "--password-stdin"], input="a passphrase of mine\n")
    assert result.exit_code == 0, result.output
    entry = result.stdout.strip()
    assert entry.startswith("bruno:scrypt$") and "passphrase" not in entry
    settings = Settings(ENGINE_ENV="test", admin_users=SecretStr(entry))
    assert authenticate(settings, "bruno", "a passphrase of mine") == "bruno"


def test_the_prompt_asks_twice():
    result = CliRunner().invoke(main, ["admin-user", "bruno"], input="a passphrase of mine\na passphrase of mine\n")
    assert result.exit_code == 0 and "bruno:scrypt$" in result.stdout


def test_a_short_password_or_a_name_that_breaks_the_list_is_refused():
    short = CliRunner().invoke(main, ["admin-user", "bruno", "--password-stdin"], input="short\n")
    assert short.exit_code == 2 and "12 characters" in short.output
    comma = CliRunner().invoke(main, ["admin-user", "a,b", "--password-stdin"], input="a passphrase of mine\n")
    assert comma.exit_code == 2 and "':'" in comma.output
