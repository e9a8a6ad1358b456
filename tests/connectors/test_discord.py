"""DiscordConnector unit tests.

The ``@pytest.mark.vcr`` tests replay hand-written cassettes
(``cassettes/test_discord/*.yaml``) built from the wire formats in
``shared/reference/discord.md``; a spy transport records what the connector really
sent. The rest drive rate-limit corner cases through ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from connectors.base import Step, StepContext, StepStatus, StudentRef
from connectors.discord import DiscordConnector
from connectors.errors import WireError

TOKEN = "MTk4NjIy.test.token"
GUILD = "1180000000000000000"
USER = "80351110224678912"
ROLE_1, ROLE_2, ROLE_3 = "1180000000000000001", "1180000000000000002", "1180000000000000003"
ALERT_CHANNEL = "1180000000000000500"
GLOBAL_RATE = 1e6  # keep the client-side global pacing out of the way, but see test_global_pacing
REASON = "engine%3A%20PURCHASE_APPROVED%20python-pro%20event%2042"


@pytest.fixture(scope="module")
def vcr_config():
    return {
        "record_mode": "none",
        "filter_headers": ["authorization"],
        "match_on": ["method", "uri"],
    }


class FakeTime:
    """A clock that only moves when the connector sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.all_sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.all_sleeps.append(seconds)
        # Always move on: float rounding may leave a token bucket a hair short.
        self.now += max(seconds, 1e-6)

    @property
    def sleeps(self) -> list[float]:
        """Waits that matter (not the sub-millisecond global pacing of these tests)."""
        return [round(s, 3) for s in self.all_sleeps if s >= 1e-3]


class SpyTransport(httpx.HTTPTransport):
    """Records requests; the (vcr-patched) HTTPTransport answers them."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def ctx(event_type: str = "PURCHASE_APPROVED", event_id: int = 42, discord_id=USER, run_id=None):
    student = StudentRef(id=123, email="nelly@example.org", discord_id=discord_id)
    return StepContext(
        student,
        event_id=event_id,
        event_type=event_type,
        product_key="python-pro",
        action_run_id=run_id,
    )


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def spy() -> SpyTransport:
    return SpyTransport()


@pytest.fixture
def connector(spy, fake_time):
    conn = DiscordConnector(
        TOKEN,
        GUILD,
        alert_channel_id=ALERT_CHANNEL,
        transport=spy,
        global_rate=GLOBAL_RATE,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    )
    yield conn
    conn.close()


def add(*roles: str) -> Step:
    return Step("add_role", {"role_ids": list(roles)})


def remove(*roles: str) -> Step:
    return Step("remove_role", {"role_ids": list(roles)})


# --------------------------------------------------------------- cassettes


@pytest.mark.vcr
def test_add_role(connector, spy):
    result = connector.run(add(ROLE_1, ROLE_2), ctx())

    assert result.status is StepStatus.DONE
    assert result.data["role_ids"] == [ROLE_1, ROLE_2]
    assert [(r.method, r.url.path) for r in spy.requests] == [
        ("PUT", f"/api/v10/guilds/{GUILD}/members/{USER}/roles/{ROLE_1}"),
        ("PUT", f"/api/v10/guilds/{GUILD}/members/{USER}/roles/{ROLE_2}"),
    ]
    request = spy.requests[0]
    assert request.headers["Authorization"] == f"Bot {TOKEN}"
    assert request.headers["User-Agent"] == "DiscordBot (https://github.com/lifecycle-engine, 0.1)"
    assert request.headers["X-Audit-Log-Reason"] == REASON
    assert request.content == b""


@pytest.mark.vcr
def test_remove_role(connector, spy):
    result = connector.run(remove(ROLE_1), ctx("PURCHASE_REFUNDED", 43))

    assert result.status is StepStatus.DONE
    assert spy.requests[0].method == "DELETE"
    assert spy.requests[0].headers["X-Audit-Log-Reason"] == ("engine%3A%20PURCHASE_REFUNDED%20python-pro%20event%2043")


@pytest.mark.vcr
def test_add_role_missing_permissions(connector, spy):
    result = connector.run(add(ROLE_1, ROLE_2, ROLE_3), ctx())

    assert result.status is StepStatus.FAILED
    assert result.error == "discord.forbidden"
    assert result.retryable is False
    assert ROLE_2 in result.detail and "50013" in result.detail
    assert "Server Settings → Roles" in result.detail
    assert result.data == {"role_id": ROLE_2, "applied": [ROLE_1]}
    assert len(spy.requests) == 2  # stopped at the first failure: ROLE_3 never sent


@pytest.mark.vcr
def test_add_role_unknown_member(connector):
    result = connector.run(add(ROLE_1, ROLE_2), ctx())

    assert result.status is StepStatus.SKIPPED
    assert result.error == "discord.unknown_member"
    assert result.data == {"pending_join": True}
    assert result.ok


@pytest.mark.vcr
def test_remove_role_unknown_member(connector):
    result = connector.run(remove(ROLE_1, ROLE_2), ctx("PURCHASE_REFUNDED", 43))

    assert result.status is StepStatus.DONE
    assert "already gone" in result.detail


@pytest.mark.vcr
def test_add_role_unknown_role(connector):
    result = connector.run(add(ROLE_3), ctx())

    assert result.status is StepStatus.FAILED
    assert result.error == "discord.unknown_role"
    assert result.retryable is False
    assert ROLE_3 in result.detail


@pytest.mark.vcr
def test_unauthorized_stops_further_calls(connector, spy):
    first = connector.run(add(ROLE_1), ctx())
    second = connector.run(add(ROLE_1), ctx())
    alert = connector.post_alert("anything")

    assert first.error == "discord.unauthorized" and first.retryable is False
    assert TOKEN not in first.detail
    for later in (second, alert):
        assert (later.error, later.detail, later.retryable) == (
            first.error,
            first.detail,
            False,
        )
    assert len(spy.requests) == 1  # the cassette holds one interaction: no second call


@pytest.mark.vcr
def test_server_error(connector):
    result = connector.run(add(ROLE_1), ctx())  # bare 500, text body

    assert result.error == "discord.unavailable"
    assert result.retryable is True
    assert "500" in result.detail


@pytest.mark.vcr
def test_rate_limited_then_ok(connector, spy, fake_time):
    result = connector.run(add(ROLE_1), ctx())

    assert result.status is StepStatus.DONE
    assert fake_time.sleeps == [64.57]  # body retry_after, not the rounded Retry-After: 65
    assert len(spy.requests) == 2


@pytest.mark.vcr
def test_alert_with_nonce(connector, spy):
    content = "⚠️ Step failed: add_role for student 123 (event 42): 403 Missing Permissions (50013)"
    result = connector.post_alert(content, nonce="alert-42-3")

    assert result.status is StepStatus.DONE
    assert result.data == {"message_id": "1190000000000000777"}
    request = spy.requests[0]
    assert request.url.path == f"/api/v10/channels/{ALERT_CHANNEL}/messages"
    assert request.headers["Content-Type"] == "application/json"
    assert "X-Audit-Log-Reason" not in request.headers
    assert json.loads(request.content) == {
        "content": content,
        "allowed_mentions": {"parse": []},
        "nonce": "alert-42-3",
        "enforce_nonce": True,
    }


# ----------------------------------------------------------- no HTTP at all


def test_not_linked(connector, spy):
    added = connector.run(add(ROLE_1), ctx(discord_id=None))
    removed = connector.run(remove(ROLE_1), ctx(discord_id=None))
    dm = connector.run(Step("send_dm", {"content": "oi"}), ctx(discord_id=None))

    assert added.status is StepStatus.SKIPPED and added.error == "discord.not_linked"
    assert added.data == {"pending_join": True}
    assert removed.status is StepStatus.DONE
    assert dm.status is StepStatus.SKIPPED and dm.error == "discord.not_linked"
    assert spy.requests == []


def test_bad_params_are_not_sent(connector, spy):
    assert connector.run(add("../../channels/1"), ctx()).error == "discord.bad_request"
    assert connector.run(Step("add_role", {"role_ids": "1"}), ctx()).error == "discord.bad_request"
    assert connector.run(add(ROLE_1), ctx(discord_id="abc")).error == "discord.bad_request"
    assert connector.run(Step("kick", {}), ctx()).error == "discord.bad_request"
    assert spy.requests == []


def test_alert_without_channel_is_skipped():
    conn = DiscordConnector(TOKEN, GUILD, transport=httpx.MockTransport(_unexpected))
    assert conn.post_alert("hello").status is StepStatus.SKIPPED
    conn.close()


def _unexpected(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request {request.method} {request.url}")


# ----------------------------------------------------- MockTransport cases


def _headers(remaining: int, reset_after: float, reset: str, bucket: str = "b1") -> dict:
    return {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": reset,
        "X-RateLimit-Reset-After": str(reset_after),
        "X-RateLimit-Bucket": bucket,
    }


def _mock(
    handler: Callable[[httpx.Request], httpx.Response], fake_time: FakeTime, **kwargs
) -> tuple[DiscordConnector, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    conn = DiscordConnector(
        TOKEN,
        GUILD,
        transport=httpx.MockTransport(record),
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        **{"global_rate": GLOBAL_RATE, **kwargs},
    )
    return conn, seen


def test_waits_for_reset_when_bucket_is_exhausted(fake_time):
    # Window 1 allows two requests; the third must wait the full 2.5 s reset-after.
    replies = iter(
        [
            httpx.Response(204, headers=_headers(1, 2.5, "5000.5")),
            httpx.Response(204, headers=_headers(0, 2.5, "5000.5")),
            httpx.Response(204, headers=_headers(1, 2.5, "5003.0")),
        ]
    )
    conn, seen = _mock(lambda request: next(replies), fake_time)

    result = conn.run(add(ROLE_1, ROLE_2, ROLE_3), ctx())

    assert result.status is StepStatus.DONE
    assert len(seen) == 3
    assert fake_time.sleeps == [2.5]


def test_role_routes_share_a_learned_bucket(fake_time):
    # PUT and DELETE answer with the same bucket id: the DELETE waits on PUT's quota.
    replies = iter(
        [
            httpx.Response(204, headers=_headers(1, 4.0, "7000.0")),
            httpx.Response(204, headers=_headers(0, 4.0, "7000.0")),
            httpx.Response(204, headers=_headers(1, 4.0, "7004.0")),
            httpx.Response(204, headers=_headers(0, 4.0, "7004.0")),
        ]
    )
    conn, seen = _mock(lambda request: next(replies), fake_time)

    assert conn.run(add(ROLE_1), ctx()).ok
    assert conn.run(remove(ROLE_1), ctx()).ok  # route not learned yet: goes (one at a time)
    assert conn.run(remove(ROLE_2), ctx()).ok  # learned: shares the exhausted bucket
    assert fake_time.sleeps == [4.0]
    assert [r.method for r in seen] == ["PUT", "DELETE", "DELETE"]


def test_global_pacing(fake_time):
    conn, seen = _mock(lambda request: httpx.Response(204), fake_time, global_rate=10.0)

    assert conn.run(add(ROLE_1, ROLE_2, ROLE_3), ctx()).ok
    assert fake_time.sleeps == [0.1, 0.1]  # one request per 1/10 s, no burst


def test_global_429_pauses_and_retries(fake_time):
    replies = iter(
        [
            httpx.Response(
                429,
                json={"message": "You are being rate limited.", "retry_after": 0.75, "global": True},
                headers={"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"},
            ),
            httpx.Response(204),
        ]
    )
    conn, seen = _mock(lambda request: next(replies), fake_time)

    assert conn.run(add(ROLE_1), ctx()).status is StepStatus.DONE
    assert fake_time.sleeps == [0.75]
    assert len(seen) == 2


def test_retry_after_header_when_body_has_none(fake_time):
    replies = iter([httpx.Response(429, json={"message": "slow"}, headers={"Retry-After": "3"})])
    conn, _ = _mock(lambda request: next(replies, httpx.Response(204)), fake_time)

    assert conn.run(add(ROLE_1), ctx()).ok
    assert fake_time.sleeps == [3.0]


def test_429_without_json_is_a_cloudflare_block(fake_time):
    html = httpx.Response(429, text="<html>Access denied | discord.com used Cloudflare</html>")
    conn, seen = _mock(lambda request: html, fake_time)

    result = conn.run(add(ROLE_1), ctx())

    assert result.error == "discord.unavailable" and result.retryable
    assert len(seen) == 1 and fake_time.sleeps == []


def test_persistent_429_gives_up(fake_time):
    body = {"message": "You are being rate limited.", "retry_after": 0.5, "global": False}
    conn, seen = _mock(lambda request: httpx.Response(429, json=body), fake_time)

    result = conn.run(add(ROLE_1), ctx())

    assert result.error == "discord.rate_limited" and result.retryable
    assert len(seen) == 6  # first try + 5 retries


def test_invalid_requests_slow_down_then_refuse(fake_time):
    forbidden = httpx.Response(403, json={"message": "Missing Permissions", "code": 50013})
    conn, seen = _mock(lambda request: forbidden, fake_time)
    conn._wire._INVALID_SLOWDOWN_AT, conn._wire._INVALID_REFUSE_AT = 2, 3

    for _ in range(3):
        assert conn.run(add(ROLE_1), ctx()).error == "discord.forbidden"
    refused = conn.run(add(ROLE_1), ctx())

    assert refused.error == "discord.invalid_request_limit" and refused.retryable
    assert len(seen) == 3
    assert fake_time.sleeps == [conn._wire._INVALID_PACING]  # the third request was paced
    fake_time.now += 601  # the 10-minute window slides past them
    assert conn.run(add(ROLE_1), ctx()).error == "discord.forbidden"


def test_shared_scope_429_is_not_counted(fake_time):
    shared = httpx.Response(
        429,
        json={"message": "The resource is being rate limited.", "retry_after": 0.1, "global": False},
        headers={"X-RateLimit-Scope": "shared"},
    )
    replies = iter([shared])
    conn, _ = _mock(lambda request: next(replies, httpx.Response(204)), fake_time)

    assert conn.run(add(ROLE_1), ctx()).ok
    assert len(conn._wire._invalid) == 0


def test_timeout_and_connection_errors_are_unavailable(fake_time):
    def boom(request):
        raise httpx.ReadTimeout("slow", request=request)

    conn, _ = _mock(boom, fake_time)
    result = conn.run(add(ROLE_1), ctx())
    assert result.error == "discord.unavailable" and result.retryable
    assert result.maybe_delivered is False  # role changes are idempotent

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    conn, _ = _mock(refused, fake_time)
    assert conn.post_message(ALERT_CHANNEL, "x").maybe_delivered is False

    conn, _ = _mock(boom, fake_time)
    assert conn.post_message(ALERT_CHANNEL, "x").maybe_delivered is True  # no nonce
    assert conn.post_message(ALERT_CHANNEL, "x", nonce="a-1").maybe_delivered is False


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (404, 10003, "discord.config"),
        (404, 10004, "discord.config"),
        (403, 50001, "discord.config"),
        (403, 50013, "discord.forbidden"),
        (400, 50035, "discord.bad_request"),
        (403, 50007, "discord.dm_closed"),
        (502, None, "discord.unavailable"),
    ],
)
def test_message_error_classes(fake_time, status, code, error):
    body = {"message": "x", "code": code} if code else None
    reply = httpx.Response(status, json=body) if body else httpx.Response(status, text="Bad Gateway")
    conn, _ = _mock(lambda request: reply, fake_time)

    result = conn.post_message(ALERT_CHANNEL, "hello")

    assert result.error == error
    assert result.retryable is (status >= 500)


def test_send_dm_opens_channel_once_and_uses_a_nonce(fake_time):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/users/@me/channels"):
            assert json.loads(request.content) == {"recipient_id": USER}
            return httpx.Response(200, json={"id": "1190000000000001234", "type": 1})
        if json.loads(request.content)["content"] == "closed":
            return httpx.Response(403, json={"message": "Cannot send messages to this user", "code": 50007})
        return httpx.Response(200, json={"id": "1190000000000009999"})

    conn, seen = _mock(handler, fake_time)

    ok = conn.run(Step("send_dm", {"content": "Seu acesso foi liberado ✅"}), ctx(run_id=77))
    closed = conn.run(Step("send_dm", {"content": "closed"}), ctx(run_id=78))

    assert ok.status is StepStatus.DONE
    assert closed.error == "discord.dm_closed" and closed.retryable is False
    paths = [r.url.path for r in seen]
    assert paths.count("/api/v10/users/@me/channels") == 1
    sent = json.loads(seen[1].content)
    assert sent["nonce"] == "dm-77" and sent["enforce_nonce"] is True


def test_content_nonce_and_reason_are_capped(fake_time):
    conn, seen = _mock(lambda request: httpx.Response(200, json={"id": "1"}), fake_time)

    conn.post_message(ALERT_CHANNEL, "x" * 2500, nonce="alert-" + "9" * 40)
    body = json.loads(seen[0].content)
    assert len(body["content"]) == 2000
    assert len(body["nonce"]) == 25

    conn2, seen2 = _mock(lambda request: httpx.Response(204), fake_time)
    conn2.run(add(ROLE_1), ctx(event_type="É" * 600))
    reason = seen2[0].headers["X-Audit-Log-Reason"]
    assert reason.startswith("engine%3A%20%C3%89")
    assert len(httpx.URL("/?r=" + reason).params["r"]) == 512  # 512 chars once decoded


def test_non_json_error_body_does_not_crash(fake_time):
    conn, _ = _mock(lambda request: httpx.Response(400, text="<html>bad</html>"), fake_time)
    result = conn.run(add(ROLE_1), ctx())
    assert result.error == "discord.bad_request" and "400" in result.detail


def test_get_member(fake_time):
    member = {"user": {"id": USER}, "roles": [ROLE_1], "pending": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(USER):
            return httpx.Response(200, json=member)
        if request.url.path.endswith("1"):
            return httpx.Response(404, json={"message": "Unknown Member", "code": 10007})
        return httpx.Response(404, json={"message": "Unknown Guild", "code": 10004})

    conn, _ = _mock(handler, fake_time)

    assert conn.get_member(USER) == member
    assert conn.get_member("1") is None
    with pytest.raises(WireError) as raised:
        conn.get_member("2")
    assert raised.value.result.error == "discord.config"


def test_list_members_pages_by_user_id_until_a_short_page(fake_time):
    members = [{"user": {"id": str(100 + i)}, "roles": [ROLE_1] if i % 2 else []} for i in range(5)]

    def handler(request: httpx.Request) -> httpx.Response:
        limit, after = int(request.url.params["limit"]), int(request.url.params["after"])
        page = [m for m in members if int(m["user"]["id"]) > after][:limit]
        return httpx.Response(
            200,
            json=page,
            headers={
                "X-RateLimit-Limit": "10",
                "X-RateLimit-Remaining": "9",
                "X-RateLimit-Reset-After": "1",
                "X-RateLimit-Bucket": "m",
            },
        )

    conn, seen = _mock(handler, fake_time)
    assert list(conn.list_members(page_size=2)) == members
    assert [(r.url.path, dict(r.url.params)) for r in seen] == [
        (f"/api/v10/guilds/{GUILD}/members", {"limit": "2", "after": after}) for after in ("0", "101", "103")
    ]


def test_list_members_without_the_intent_names_it(fake_time):
    conn, _ = _mock(lambda request: httpx.Response(403, json={"message": "Missing Access", "code": 50001}), fake_time)
    with pytest.raises(WireError) as raised:
        list(conn.list_members())
    assert raised.value.result.error == "discord.intent"
    assert "Server Members Intent" in raised.value.result.detail
