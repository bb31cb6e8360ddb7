"""Retry classification, backoff and the transport's retry loop."""

from __future__ import annotations

import pytest
import requests
import requests_mock

from singer_delivery.http import (
    FatalApiError,
    RetriesExhausted,
    RetryPolicy,
    Transport,
    parse_retry_after,
)
from singer_delivery.report import StreamStats

FAST = RetryPolicy(total=3, backoff_factor=0.001, backoff_max=0.01)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    assert RetryPolicy().is_retry(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413])
def test_client_errors_are_not_retried(status: int) -> None:
    assert not RetryPolicy().is_retry(status)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(backoff_factor=1, backoff_max=8, backoff_jitter=0.5)
    for retry, base in [(1, 1), (2, 2), (3, 4), (4, 8), (6, 8)]:
        sleep = policy.get_backoff_time(retry)
        assert base * 0.5 <= sleep <= base


def test_retry_after_wins_over_backoff() -> None:
    policy = RetryPolicy(backoff_factor=100, backoff_max=100)
    assert policy.get_sleep_time(1, "3") == 3
    assert parse_retry_after("not a date") is None
    assert policy.get_sleep_time(1, None) >= 50


def transport(**kwargs: object) -> Transport:
    return Transport(base_url="http://127.0.0.1:9", retry=FAST, **kwargs)  # type: ignore[arg-type]


def test_429_and_5xx_are_retried_until_success_and_counted() -> None:
    stats = StreamStats("s")
    with requests_mock.Mocker() as m:
        m.post(
            "http://127.0.0.1:9/x",
            [
                {"status_code": 429, "headers": {"Retry-After": "0"}},
                {"status_code": 503},
                {"status_code": 200, "json": {}},
            ],
        )
        response = transport().request("POST", "/x", observer=stats)
    assert response.status_code == 200
    assert stats["api_calls"] == 3
    assert stats["retries"] == 2


@pytest.mark.parametrize("status", [400, 404, 409])
def test_client_errors_are_returned_after_one_attempt(status: int) -> None:
    with requests_mock.Mocker() as m:
        m.post("http://127.0.0.1:9/x", status_code=status)
        response = transport().request("POST", "/x")
        assert m.call_count == 1
    assert response.status_code == status


def test_dropped_connections_and_timeouts_are_retried() -> None:
    with requests_mock.Mocker() as m:
        m.get(
            "http://127.0.0.1:9/x",
            [
                {"exc": requests.ConnectionError("reset")},
                {"exc": requests.ReadTimeout("slow")},
                {"status_code": 200},
            ],
        )
        assert transport().request("GET", "/x").status_code == 200
        assert m.call_count == 3


def test_retries_are_bounded() -> None:
    with requests_mock.Mocker() as m:
        m.get("http://127.0.0.1:9/x", status_code=500)
        with pytest.raises(RetriesExhausted, match="after 3 retries"):
            transport().request("GET", "/x")
        assert m.call_count == 4


def test_fatal_check_stops_without_retrying() -> None:
    with requests_mock.Mocker() as m:
        m.get("http://127.0.0.1:9/x", status_code=429, json={"code": "QUOTA"})
        t = transport(
            fatal_check=lambda r: "quota spent" if r.status_code == 429 else None
        )
        with pytest.raises(FatalApiError, match="quota spent"):
            t.request("GET", "/x")
        assert m.call_count == 1


class CountingAuth:
    def __init__(self) -> None:
        self.token = 1
        self.refreshes = 0

    def apply(self, headers: dict[str, str]) -> object:
        headers["Authorization"] = f"Bearer {self.token}"
        return self.token

    def refresh(self, failed: object) -> None:
        self.refreshes += 1
        self.token += 1


def test_401_gets_one_refresh_then_succeeds() -> None:
    auth = CountingAuth()
    with requests_mock.Mocker() as m:
        m.get("http://127.0.0.1:9/x", [{"status_code": 401}, {"status_code": 200}])
        assert transport(auth=auth).request("GET", "/x").status_code == 200
        assert m.request_history[1].headers["Authorization"] == "Bearer 2"
    assert auth.refreshes == 1


def test_second_401_fails_the_run() -> None:
    auth = CountingAuth()
    with requests_mock.Mocker() as m:
        m.get("http://127.0.0.1:9/x", status_code=401)
        with pytest.raises(FatalApiError, match="401"):
            transport(auth=auth).request("GET", "/x")
        assert m.call_count == 2


def test_429s_in_a_row_over_the_window_mean_the_quota_is_spent() -> None:
    policy = RetryPolicy(
        total=100, backoff_factor=0, give_up_after_429s=6, give_up_window=0
    )
    transport = Transport(base_url="http://127.0.0.1:9", retry=policy)
    with requests_mock.Mocker() as m:
        m.post("http://127.0.0.1:9/x", status_code=429)
        with pytest.raises(FatalApiError, match="the daily quota is probably spent"):
            transport.request("POST", "/x")
        assert m.call_count == 6


def test_truncated_and_undecodable_answers_are_retried() -> None:
    transport = Transport(
        base_url="http://127.0.0.1:9", retry=RetryPolicy(backoff_factor=0)
    )
    with requests_mock.Mocker() as m:
        m.get(
            "http://127.0.0.1:9/x",
            [
                {"exc": requests.exceptions.ChunkedEncodingError("cut")},
                {"exc": requests.exceptions.ContentDecodingError("garbled")},
                {"status_code": 200, "json": {}},
            ],
        )
        assert transport.request("GET", "/x").status_code == 200
        assert m.call_count == 3


def test_tls_and_proxy_failures_stop_at_once_naming_the_host() -> None:
    transport = Transport(base_url="https://api.example.com", retry=RetryPolicy())
    with requests_mock.Mocker() as m:
        m.get("https://api.example.com/x", exc=requests.exceptions.SSLError("bad cert"))
        with pytest.raises(FatalApiError, match=r"TLS connection to api\.example\.com"):
            transport.request("GET", "/x")
        m.get("https://api.example.com/y", exc=requests.exceptions.ProxyError("no"))
        with pytest.raises(FatalApiError, match=r"proxy in front of api\.example\.com"):
            transport.request("GET", "/y")
        assert m.call_count == 2


def test_proxies_and_the_ca_bundle_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read once when the transport is made, and used for every request: a
    proxy that refuses connections stops the run naming it."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "bypassed.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/inspecting-proxy.pem")
    proxied = Transport(base_url="http://api.example", retry=FAST)
    assert proxied.session.proxies["http"] == "http://127.0.0.1:9"
    assert proxied.session.verify == "/etc/ssl/inspecting-proxy.pem"
    with pytest.raises(FatalApiError, match=r"proxy in front of api\.example"):
        proxied.request("GET", "/x")
    bypassed = Transport(base_url="http://bypassed.example", retry=FAST)
    assert "http" not in bypassed.session.proxies
