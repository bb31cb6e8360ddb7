"""OAuth2 client credentials: fetch once, renew before expiry, renew on 401."""

from __future__ import annotations

import base64
import threading
import time

import pytest
import requests_mock

from singer_delivery.http import FatalApiError, RetryPolicy, Transport
from target_agillic.auth import ClientCredentials

BASE = "http://127.0.0.1:9"


def make(
    lifetime: int = 7200,
) -> tuple[Transport, ClientCredentials, requests_mock.Mocker]:
    transport = Transport(
        base_url=BASE, retry=RetryPolicy(total=1, backoff_factor=0.001)
    )
    auth = ClientCredentials(transport, "key-1", "secret-1")
    transport.auth = auth
    counter = iter(range(1, 1000))
    m = requests_mock.Mocker()
    m.post(
        f"{BASE}/oauth2/token",
        json=lambda req, ctx: {
            "access_token": f"tok-{next(counter)}",
            "token_type": "bearer",
            "expires_in": lifetime,
        },
    )
    return transport, auth, m


def test_token_is_fetched_once_with_basic_credentials_and_shared_by_threads() -> None:
    transport, auth, m = make()
    with m:
        m.get(f"{BASE}/x", status_code=200)
        threads = [
            threading.Thread(target=transport.request, args=("GET", "/x"))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        token_calls = [r for r in m.request_history if r.path == "/oauth2/token"]
    assert len(token_calls) == 1
    expected = base64.b64encode(b"key-1:secret-1").decode()
    assert token_calls[0].headers["Authorization"] == f"Basic {expected}"
    assert "grant_type=client_credentials" in token_calls[0].text
    assert auth.tokens_fetched == 1


def test_token_is_renewed_before_it_expires() -> None:
    _transport, auth, m = make(lifetime=1)
    with m:
        first = auth.token()
        time.sleep(0.95)
        second = auth.token()
    assert first != second
    assert auth.tokens_fetched == 2


def test_401_renews_the_token_once() -> None:
    transport, _auth, m = make()
    with m:
        m.get(f"{BASE}/x", [{"status_code": 401}, {"status_code": 200}])
        assert transport.request("GET", "/x").status_code == 200
        bearer = [
            r.headers["Authorization"] for r in m.request_history if r.path == "/x"
        ]
    assert bearer == ["Bearer tok-1", "Bearer tok-2"]


def test_bad_credentials_name_the_settings_and_never_the_secret() -> None:
    _transport, auth, m = make()
    with m:
        m.post(
            f"{BASE}/oauth2/token", status_code=401, json={"error": "invalid_client"}
        )
        with pytest.raises(FatalApiError) as exc:
            auth.token()
    message = str(exc.value)
    assert "developer_key" in message and "developer_secret" in message
    assert "secret-1" not in message and "key-1" not in message
    assert "secret-1" not in repr(auth)
