"""DiscordConnector against the fake Discord served on loopback (real HTTP, real clock)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from connectors.base import Step, StepContext, StepStatus, StudentRef
from connectors.discord import DiscordConnector
from tests.fakes.discord_app import ALERT_CHANNEL_ID, COURSE_ROLE_ID, create_app
from tests.fakes.server import serve

USER = "80351110224678912"
BONUS_ROLE = "1180000000000000002"


def ctx(user: str | None = USER, event_id: int = 42, run_id: int | None = None) -> StepContext:
    student = StudentRef(id=1, email="nelly@example.org", discord_id=user)
    return StepContext(
        student,
        event_id=event_id,
        event_type="PURCHASE_APPROVED",
        product_key="python-pro",
        action_run_id=run_id,
    )


def add(*roles: str) -> Step:
    return Step("add_role", {"role_ids": list(roles)})


def remove(*roles: str) -> Step:
    return Step("remove_role", {"role_ids": list(roles)})


@pytest.fixture
def discord():
    """Factory: ``discord(**create_app kwargs)`` -> (fake state, base URL, make_connector)."""
    opened = []

    def start(token: str = "test-token", **app_kwargs):
        app = create_app(token=token, **app_kwargs)
        server = serve(app)
        base = server.__enter__()
        opened.append(server)

        def connector(**kwargs) -> DiscordConnector:
            kwargs.setdefault("alert_channel_id", ALERT_CHANNEL_ID)
            conn = DiscordConnector(
                kwargs.pop("token", token),
                app.state.fake.guild_id,
                api_base=f"{base}/api/v10",
                **kwargs,
            )
            opened.append(conn)
            return conn

        return app.state.fake, base, connector

    yield start
    for item in reversed(opened):
        if isinstance(item, DiscordConnector):
            item.close()
        else:
            item.__exit__(None, None, None)


def test_grants_and_removes_roles(discord):
    fake, _, connector = discord()
    fake.add_member(USER)
    fake.add_role(BONUS_ROLE, "Bônus")
    conn = connector()

    assert conn.run(add(COURSE_ROLE_ID, BONUS_ROLE), ctx()).status is StepStatus.DONE
    assert fake.member_roles(USER) == {COURSE_ROLE_ID, BONUS_ROLE}
    assert conn.get_member(USER)["roles"] == sorted([COURSE_ROLE_ID, BONUS_ROLE])
    assert fake.requests[0]["audit_reason"] == ("engine%3A%20PURCHASE_APPROVED%20python-pro%20event%2042")

    assert conn.run(remove(BONUS_ROLE), ctx()).status is StepStatus.DONE
    assert fake.member_roles(USER) == {COURSE_ROLE_ID}


def test_member_and_role_errors(discord):
    fake, _, connector = discord()
    fake.add_member(USER)
    fake.add_role(BONUS_ROLE, "Above the bot", above_bot=True)
    conn = connector()

    stranger = conn.run(add(COURSE_ROLE_ID), ctx(user="1234567890"))
    assert (stranger.status, stranger.error) == (StepStatus.SKIPPED, "discord.unknown_member")
    assert stranger.data == {"pending_join": True}
    assert conn.run(remove(COURSE_ROLE_ID), ctx(user="1234567890")).status is StepStatus.DONE
    assert conn.get_member("1234567890") is None

    unknown = conn.run(add("1180000000000000099"), ctx())
    assert unknown.error == "discord.unknown_role" and not unknown.retryable

    forbidden = conn.run(add(COURSE_ROLE_ID, BONUS_ROLE), ctx())
    assert forbidden.error == "discord.forbidden" and not forbidden.retryable
    assert BONUS_ROLE in forbidden.detail and "Server Settings → Roles" in forbidden.detail
    assert fake.member_roles(USER) == {COURSE_ROLE_ID}  # the first role went through


@pytest.mark.slow
def test_burst_waits_as_the_headers_say(discord):
    fake, _, connector = discord(route_limit=10, route_window=1.0)
    users = [str(80351110224600000 + i) for i in range(40)]
    for user in users:
        fake.add_member(user)
    conn = connector()
    results = []

    def work(chunk: list[str]) -> None:
        for user in chunk:
            results.append(conn.run(add(COURSE_ROLE_ID), ctx(user=user)))

    threads = [threading.Thread(target=work, args=(users[i::4],)) for i in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started

    assert [r.status for r in results] == [StepStatus.DONE] * 40
    assert all(fake.member_roles(u) == {COURSE_ROLE_ID} for u in users)
    assert fake.max_429_per_window() <= 1
    assert elapsed >= 2.9  # 40 changes at 10 per window need four windows


@pytest.mark.slow
def test_429_from_the_server_is_waited_out(discord):
    fake, _, connector = discord(route_limit=2, route_window=1.0)
    fake.add_member(USER)
    first, second = connector(), connector()  # separate limiters: the second is caught out

    assert first.run(add(COURSE_ROLE_ID), ctx()).ok
    assert first.run(remove(COURSE_ROLE_ID), ctx()).ok
    assert second.run(add(COURSE_ROLE_ID), ctx()).status is StepStatus.DONE

    assert fake.rate_limited == 1
    assert fake.member_roles(USER) == {COURSE_ROLE_ID}


@pytest.mark.slow
def test_global_429_pauses_then_goes_on(discord):
    fake, _, connector = discord(route_limit=100, route_window=1.0, global_limit=2)
    users = [str(80351110224600000 + i) for i in range(6)]
    for user in users:
        fake.add_member(user)
    conn = connector(global_rate=1000.0)  # a client that paces wrongly meets the global limit

    for user in users:
        assert conn.run(add(COURSE_ROLE_ID), ctx(user=user)).status is StepStatus.DONE
    assert fake.rate_limited_global >= 1
    assert all(COURSE_ROLE_ID in fake.member_roles(u) for u in users)


def test_injected_failures(discord):
    fake, base, connector = discord()
    fake.add_member(USER)
    conn = connector()

    fake.queue_failure(503, path_contains="/roles/")
    unavailable = conn.run(add(COURSE_ROLE_ID), ctx())
    assert unavailable.error == "discord.unavailable" and unavailable.retryable

    httpx.post(
        f"{base}/_fake/failures",
        json={"status": 403, "code": 50013, "times": 1, "path_contains": "/roles/"},
    )
    forbidden = conn.run(add(COURSE_ROLE_ID), ctx())
    assert forbidden.error == "discord.forbidden" and not forbidden.retryable

    assert conn.run(add(COURSE_ROLE_ID), ctx()).status is StepStatus.DONE


def test_timeout_is_unavailable(discord):
    fake, _, connector = discord()
    fake.add_member(USER)
    fake.stall(0.8, path_contains="/roles/")
    conn = connector(timeout=0.2)

    result = conn.run(add(COURSE_ROLE_ID), ctx())

    assert result.error == "discord.unavailable" and result.retryable
    assert "timeout" in result.detail


def test_401_stops_further_calls(discord):
    fake, _, connector = discord(token="right-token")
    fake.add_member(USER)
    conn = connector(token="wrong-token")

    first = conn.run(add(COURSE_ROLE_ID), ctx())
    second = conn.run(add(COURSE_ROLE_ID), ctx())

    assert first.error == second.error == "discord.unauthorized"
    assert not first.retryable
    assert "wrong-token" not in first.detail
    assert fake.requests_total == 1 and fake.invalid_requests == 1


def test_alert_nonce_dedupe(discord):
    fake, _, connector = discord()
    conn = connector()

    one = conn.post_alert("⚠️ step failed @everyone", nonce="alert-42-3")
    again = conn.post_alert("⚠️ step failed @everyone", nonce="alert-42-3")
    other = conn.post_alert("another", nonce="alert-43-1")

    posted = fake.messages[ALERT_CHANNEL_ID]
    assert [m["content"] for m in posted] == ["⚠️ step failed @everyone", "another"]
    assert one.data["message_id"] == again.data["message_id"] != other.data["message_id"]
    assert posted[0]["allowed_mentions"] == {"parse": []}


def test_dm(discord):
    fake, _, connector = discord()
    fake.add_member(USER)
    fake.add_member("1111111111")
    fake.dms_closed.add("1111111111")
    conn = connector()

    sent = conn.run(Step("send_dm", {"content": "Acesso liberado ✅"}), ctx(run_id=5))
    retried = conn.run(Step("send_dm", {"content": "Acesso liberado ✅"}), ctx(run_id=5))
    closed = conn.run(Step("send_dm", {"content": "oi"}), ctx(user="1111111111"))

    assert sent.status is retried.status is StepStatus.DONE
    assert fake.dms_to(USER) == ["Acesso liberado ✅"]  # the nonce kept the retry out
    assert closed.error == "discord.dm_closed" and not closed.retryable


def test_control_endpoints(discord):
    fake, base, _ = discord()
    with httpx.Client(base_url=base) as http:
        http.post("/_fake/members", json={"user_id": USER, "roles": [COURSE_ROLE_ID]})
        http.post("/_fake/roles", json={"role_id": BONUS_ROLE, "name": "Bônus"})
        http.put(f"/_fake/members/{USER}/roles", json={"roles": [BONUS_ROLE]})
        assert fake.member_roles(USER) == {BONUS_ROLE}
        state = http.get("/_fake/state").json()
        assert state["members"] == {USER: [BONUS_ROLE]}

        api = http.get(
            f"/api/v10/guilds/{fake.guild_id}/roles",
            headers={"Authorization": "Bot test-token"},
        )
        assert api.headers["X-RateLimit-Limit"] == "10"
        assert BONUS_ROLE in [role["id"] for role in api.json()]

        http.delete(f"/_fake/members/{USER}")
        assert fake.member_roles(USER) is None
        http.post("/_fake/reset")
        assert fake.requests_total == 0
