"""Wire helpers shared by the connector clients."""

from __future__ import annotations

import ssl

import httpx

from connectors import _http
from connectors.discord_client import DiscordClient
from connectors.manychat_client import ManyChatClient


def test_every_client_of_a_process_shares_one_verified_tls_context(monkeypatch):
    contexts: list[ssl.SSLContext] = []  # every context a client's transport ends up with
    original = httpx.create_ssl_context

    def recording(*args, **kwargs) -> ssl.SSLContext:
        contexts.append(original(*args, **kwargs))
        return contexts[-1]

    monkeypatch.setattr(httpx, "create_ssl_context", recording)
    monkeypatch.setattr(httpx._transports.default, "create_ssl_context", recording)
    _http.tls_context.cache_clear()
    try:
        clients = [DiscordClient("token"), ManyChatClient("token"), DiscordClient("token")]
        # One CA bundle read per process, not one per client (about 90 ms each).
        assert len(contexts) >= len(clients) and len({id(c) for c in contexts}) == 1
        assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
        for client in clients:
            client.close()
    finally:
        _http.tls_context.cache_clear()
