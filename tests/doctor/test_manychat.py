"""`engine doctor --manychat` against the fake ManyChat on loopback."""

from __future__ import annotations

import pytest

from tests.doctor.conftest import World, doctor, lines


def test_manychat_setup_problems_are_each_named(world: World, monkeypatch: pytest.MonkeyPatch):
    world.manychat.tags.pop("assinante")
    world.manychat.fields["codigo_discord"]["type"] = "number"
    result = doctor("--manychat")
    assert result.exit_code == 1
    assert lines(result, "FAIL") == [
        "FAIL  manychat  tag 'assinante' does not exist in ManyChat: create it (Settings → Tags) or fix the rules",
        "FAIL  manychat  custom field 'codigo_discord' is number, the rules write text: recreate it as text",
    ]
    monkeypatch.setenv("MANYCHAT_API_TOKEN", "wrong")
    bad = doctor("--manychat")
    assert lines(bad, "FAIL") == ["FAIL  manychat  MANYCHAT_API_TOKEN is not valid: copy it again (Settings → API)"]
