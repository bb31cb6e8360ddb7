"""Resilient HTTP: timeouts, retry classification, backoff, bounded concurrency.

One :class:`Transport` serves every sink of a target, because the limits it
enforces (concurrent requests, requests per second, the access token) belong
to the remote instance, not to a stream. Naming follows urllib3's ``Retry``.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
import typing as t
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter

from singer_delivery.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

# urllib3 logs every URL at DEBUG, and URLs here carry recipient IDs and
# emails; this module logs each call by route instead.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

RETRY_AFTER_CAP = 120.0


class ApiError(Exception):
    """An answer from the API that the caller has to act on."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class FatalApiError(ApiError):
    """Every further record would fail the same way, so the run must stop."""


class RetriesExhausted(FatalApiError):
    """The API stayed unavailable through every retry."""


@dataclass(frozen=True)
class RetryPolicy:
    """When to repeat a request and how long to wait before doing so.

    ``total`` counts repeats, not attempts: ``total=3`` allows four attempts.
    Sleeps grow as ``backoff_factor * 2**(retry - 1)`` up to ``backoff_max``,
    and jitter removes up to ``backoff_jitter`` of each one so that parallel
    workers do not retry in lockstep.
    """

    total: int = 5
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    backoff_jitter: float = 0.5
    status_forcelist: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    respect_retry_after_header: bool = True

    def is_retry(self, status: int) -> bool:
        """Whether a response status is transient (nothing applied, or unsure)."""
        return status in self.status_forcelist or status >= 500

    def get_backoff_time(self, retry_number: int) -> float:
        """Exponential backoff with jitter for the n-th retry (1-based)."""
        base = min(self.backoff_max, self.backoff_factor * 2 ** (retry_number - 1))
        return base * (1 - self.backoff_jitter * random.random())

    def get_sleep_time(self, retry_number: int, retry_after: str | None) -> float:
        """Retry-After wins when present and parseable; clients never need it."""
        if self.respect_retry_after_header and retry_after:
            seconds = parse_retry_after(retry_after)
            if seconds is not None:
                return min(seconds, RETRY_AFTER_CAP)
        return self.get_backoff_time(retry_number)


def parse_retry_after(value: str) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class CallObserver(t.Protocol):
    """Receives one event per HTTP attempt, for per-stream counts."""

    def on_request(self, route: str, status: int | None) -> None: ...

    def on_retry(self, route: str, reason: str) -> None: ...


class Authenticator(t.Protocol):
    """Adds credentials to a request and renews them after a 401."""

    def apply(self, headers: dict[str, str]) -> object:
        """Set the auth header; return a marker of the credential used."""
        ...

    def refresh(self, failed: object) -> None:
        """Renew the credential unless another thread already replaced ``failed``."""
        ...


FatalCheck = t.Callable[[requests.Response], str | None]


@dataclass
class Transport:
    """A connection pool with limits, retries and authentication.

    Thread-safe: sinks drain on threads and all of them go through here.
    """

    base_url: str
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_concurrency: int = 10
    auth: Authenticator | None = None
    rate_limiter: RateLimiter | None = None
    fatal_check: FatalCheck | None = None
    user_agent: str = "singer-delivery"

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_maxsize=self.max_concurrency, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = self.user_agent

    def request(
        self,
        method: str,
        path: str,
        *,
        observer: CallObserver | None = None,
        route: str | None = None,
        body: bytes | None = None,
        data: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        authenticate: bool = True,
    ) -> requests.Response:
        """Send one request, retrying transient failures; return the final answer.

        Non-transient answers (4xx other than 429, or the last 401) are returned
        for the caller to turn into rejects. Raises ``FatalApiError`` when the
        run cannot go on: retries exhausted, credentials refused twice, or the
        ``fatal_check`` recognising a stop condition such as a spent quota.
        ``route`` names the call in logs and counts, so personal data in the
        path (recipient IDs, emails) never reaches a log line.
        """
        route = route or f"{method} {path}"
        url = f"{self.base_url}{path}"
        refreshed = False
        retry_number = 0
        while True:
            request_headers = dict(headers or {})
            if body is not None:
                request_headers["Content-Type"] = "application/json; charset=utf-8"
            marker = (
                self.auth.apply(request_headers) if self.auth and authenticate else None
            )
            try:
                response = self._send(
                    method,
                    url,
                    route,
                    request_headers,
                    data=body if body is not None else data,
                    params=params,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                reason = type(exc).__name__
                self._observe(observer, route, None)
                retry_number = self._before_retry(observer, route, retry_number, reason)
                time.sleep(self.retry.get_backoff_time(retry_number))
                continue
            self._observe(observer, route, response.status_code)
            if response.status_code == 401 and self.auth and authenticate:
                if refreshed:
                    msg = f"{route} was refused with 401 even after a new token"
                    raise FatalApiError(msg, status=401, code="UNAUTHORIZED")
                refreshed = True
                self.auth.refresh(marker)
                continue
            if self.fatal_check and (stop := self.fatal_check(response)):
                raise FatalApiError(stop, status=response.status_code)
            if not self.retry.is_retry(response.status_code):
                return response
            reason = f"HTTP {response.status_code}"
            retry_number = self._before_retry(observer, route, retry_number, reason)
            time.sleep(
                self.retry.get_sleep_time(
                    retry_number, response.headers.get("Retry-After")
                )
            )

    def _send(
        self,
        method: str,
        url: str,
        route: str,
        headers: dict[str, str],
        **kwargs: t.Any,
    ) -> requests.Response:
        if self.rate_limiter:
            self.rate_limiter.acquire(method)
        with self._slots:
            started = time.monotonic()
            response = self.session.request(
                method,
                url,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                **kwargs,
            )
        if self.rate_limiter:
            self.rate_limiter.observe(method, response.headers)
        logger.debug(
            "%s -> %s in %.0f ms",
            route,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _before_retry(
        self,
        observer: CallObserver | None,
        route: str,
        retry_number: int,
        reason: str,
    ) -> int:
        retry_number += 1
        if retry_number > self.retry.total:
            msg = (
                f"{route} still failed after {self.retry.total} retries "
                f"({reason}); the API looks unavailable, try again later or "
                "raise max_retries"
            )
            raise RetriesExhausted(msg)
        if observer:
            observer.on_retry(route, reason)
        logger.debug("retrying %s after %s (retry %d)", route, reason, retry_number)
        return retry_number

    @staticmethod
    def _observe(observer: CallObserver | None, route: str, status: int | None) -> None:
        if observer:
            observer.on_request(route, status)
