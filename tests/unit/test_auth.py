"""Agillic credentials: OAuth2 tokens (fetch, renew) or HTTP Basic on every call."""

from __future__ import annotations

import base64
import threading
import time
import typing as t
from pathlib import Path

import pytest
import requests_mock

from singer_delivery.http import FatalApiError, RetryPolicy, Transport
from target_agillic.auth import BasicCredentials, ClientCredentials, authenticator
from target_agillic.target import TargetAgillic

BASE = "http://127.0.0.1:9"


def make(
    lifetime: int = 7200, clock: t.Callable[[], float] = time.monotonic
) -> tuple[Transport, ClientCredentials, requests_mock.Mocker]:
    transport = Transport(
        base_url=BASE, retry=RetryPolicy(total=1, backoff_factor=0.001)
    )
    auth = ClientCredentials(transport, "key-1", "secret-1", clock=clock)
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
    now = [1000.0]
    _transport, auth, m = make(lifetime=100, clock=lambda: now[0])
    with m:
        first = auth.token()
        now[0] += 89.0  # ten percent of the lifetime left: not yet
        assert auth.token() == first
        now[0] += 1.0
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
    assert "developer_key" in message
    assert "developer_secret" in message
    assert "secret-1" not in message
    assert "key-1" not in message
    assert "secret-1" not in repr(auth)


def basic_transport() -> tuple[Transport, BasicCredentials]:
    transport = Transport(
        base_url=BASE, retry=RetryPolicy(total=1, backoff_factor=0.001)
    )
    auth = BasicCredentials("key-1", "secret-1")
    transport.auth = auth
    return transport, auth


def test_basic_sends_the_key_and_secret_on_every_call_and_fetches_no_token() -> None:
    transport, _auth = basic_transport()
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/x", status_code=200)
        token = m.post(f"{BASE}/oauth2/token", status_code=500)
        for _ in range(3):
            transport.request("GET", "/x")
    expected = "Basic " + base64.b64encode(b"key-1:secret-1").decode()
    assert [r.headers["Authorization"] for r in m.request_history] == [expected] * 3
    assert not token.called


def test_basic_stops_the_run_at_the_second_401() -> None:
    transport, _auth = basic_transport()
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/x", status_code=401)
        with pytest.raises(FatalApiError) as exc:
            transport.request("GET", "/x")
        assert m.call_count == 2
    assert exc.value.status == 401
    assert "secret-1" not in str(exc.value)
    assert "key-1" not in str(exc.value)


def test_basic_never_shows_the_key_secret_or_header() -> None:
    auth = BasicCredentials("key-1", "secret-1")
    header = base64.b64encode(b"key-1:secret-1").decode()
    shown = repr(auth) + str(auth)
    for secret in ("key-1", "secret-1", header):
        assert secret not in shown
    assert repr(auth) == "BasicCredentials(<redacted>)"


def test_auth_method_picks_the_authenticator() -> None:
    transport = Transport(base_url=BASE)
    assert isinstance(authenticator("basic", transport, "k", "s"), BasicCredentials)
    assert isinstance(authenticator("oauth2", transport, "k", "s"), ClientCredentials)
    schema = TargetAgillic.config_jsonschema["properties"]["auth_method"]
    assert schema["default"] == "oauth2"
    assert schema["enum"] == ["oauth2", "basic"]


@pytest.mark.parametrize(
    ("auth_method", "expected"),
    [(None, ClientCredentials), ("basic", BasicCredentials)],
)
def test_the_agillic_target_uses_the_auth_method_setting(
    tmp_path: Path, auth_method: str | None, expected: type
) -> None:
    config = {
        "api_endpoint": BASE,
        "developer_key": "key-1",
        "developer_secret": "secret-1",
        "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
    }
    if auth_method:
        config["auth_method"] = auth_method
    with requests_mock.Mocker() as m:
        token = m.post(f"{BASE}/oauth2/token", json={"access_token": "t"})
        target = TargetAgillic(config=config)
        m.get(f"{BASE}/discovery/persondata", json=[])
        run = target.start()
    target.finish(error=None, interrupted=False)
    assert isinstance(run.transport.auth, expected)
    assert token.called is (expected is ClientCredentials)
