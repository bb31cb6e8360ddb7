"""Credentials for the Agillic API: OAuth2 client credentials or HTTP Basic.

OAuth2 (``auth_method`` oauth2, the default): one token serves every
thread. It is fetched on first use, renewed shortly before ``expires_in``
runs out, and renewed once more when a call answers 401 (e.g. the instance
revoked it early).

HTTP Basic (``auth_method`` basic): Agillic also documents sending the
Developer Key and Secret on every call, with no token at all.
"""

from __future__ import annotations

import base64
import threading
import time
import typing as t

import requests
from typing_extensions import override

from singer_delivery.http import Authenticator, FatalApiError, Transport
from target_agillic.contract import TOKEN_PATH, error_of

OAUTH2 = "oauth2"
BASIC = "basic"
#: Values of the ``auth_method`` setting.
AUTH_METHODS = (OAUTH2, BASIC)

#: Renew when this share of the lifetime is left (capped at a minute).
RENEW_SHARE = 0.1
RENEW_CAP_SECONDS = 60.0


class ClientCredentials:
    """Thread-safe bearer token provider; never logs the key, secret or token."""

    def __init__(
        self,
        transport: Transport,
        key: str,
        secret: str,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._clock = clock
        self._key = key
        self._secret = secret
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self.tokens_fetched = 0

    @override
    def __repr__(self) -> str:
        return "ClientCredentials(<redacted>)"

    def apply(self, headers: dict[str, str]) -> object:
        """Add the bearer header; return the token used so a 401 can renew it."""
        token = self.token()
        headers["Authorization"] = f"Bearer {token}"
        return token

    def refresh(self, failed: object) -> None:
        """Drop the token that failed, unless another thread already did."""
        with self._lock:
            if self._token == failed:
                self._token = None

    def token(self) -> str:
        """The current token, fetching a new one when it is missing or ageing."""
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._token = self._fetch()
            return self._token

    def _fetch(self) -> str:
        response = self._transport.request(
            "POST",
            TOKEN_PATH,
            route="POST /oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": _basic(self._key, self._secret)},
            authenticate=False,
        )
        if response.status_code != 200:
            raise token_refusal(response)
        body = _json_object(response)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            msg = (
                "Agillic's token endpoint answered 200 without an access_token; "
                "check that api_endpoint is the Agillic API (e.g. "
                "https://api-eu1.agillic.net)"
            )
            raise FatalApiError(msg, status=200)
        lifetime = float(body.get("expires_in") or 7200)
        self._renew_at = (
            self._clock() + lifetime - min(lifetime * RENEW_SHARE, RENEW_CAP_SECONDS)
        )
        self.tokens_fetched += 1
        return token


def token_refusal(response: requests.Response) -> FatalApiError:
    """What a non-200 answer of the token endpoint means, and the fix."""
    status = response.status_code
    code, _ = error_of(response)
    if status in (400, 401, 403):
        msg = (
            f"Agillic refused the credentials (HTTP {status} {code}); check "
            "developer_key and developer_secret against the Developer API key in "
            "Agillic's settings"
        )
    elif status in (404, 405):
        msg = (
            f"Agillic's token endpoint was not found (HTTP {status}); "
            "api_endpoint must be the API's base URL, e.g. "
            "https://api-eu1.agillic.net, with no path"
        )
    else:
        msg = (
            f"Agillic's token endpoint answered HTTP {status} ({code}): the "
            "service looks unavailable, not your credentials; try again later"
        )
    return FatalApiError(msg, status=status, code=code)


def _json_object(response: requests.Response) -> dict[str, t.Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class BasicCredentials:
    """HTTP Basic with the Developer Key and Secret on every call.

    There is no token to renew, so ``refresh`` has nothing to do: the call is
    repeated once with the same credentials and a second 401 stops the run.
    The header is built once and never logged; ``repr`` is redacted.
    """

    def __init__(self, key: str, secret: str) -> None:
        self._header = _basic(key, secret)

    @override
    def __repr__(self) -> str:
        return "BasicCredentials(<redacted>)"

    def apply(self, headers: dict[str, str]) -> object:
        """Add the Basic header; every call carries the same one."""
        headers["Authorization"] = self._header
        return None

    def refresh(self, failed: object) -> None:
        """Nothing to renew: the key and secret are what they are."""


def authenticator(
    auth_method: str, transport: Transport, key: str, secret: str
) -> Authenticator:
    """The credentials ``auth_method`` names (oauth2 unless basic)."""
    if auth_method == BASIC:
        return BasicCredentials(key, secret)
    return ClientCredentials(transport, key, secret)


def _basic(key: str, secret: str) -> str:
    """HTTP Basic: how the token request, and every basic-auth call, sign in."""
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()
