"""Resilient HTTP: timeouts, retry classification, backoff, bounded concurrency.

One :class:`Transport` serves every sink of a target, because the limits it
enforces (concurrent requests, requests per second, the access token, the
daily call budget) belong to the remote instance, not to a stream. Naming
follows urllib3's ``Retry``.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import threading
import time
import typing as t
import urllib.parse
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter

from singer_delivery.errors import Abandoned, OperationalError
from singer_delivery.ratelimit import RateLimiter

if t.TYPE_CHECKING:
    from singer_delivery.budget import CallBudget

logger = logging.getLogger(__name__)

# urllib3 logs every URL at DEBUG, and URLs here carry recipient IDs and
# emails; this module logs each call by route instead.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

RETRY_AFTER_CAP = 120.0
#: A retry that waits at least this long is announced at INFO.
ANNOUNCE_WAIT = 2.0
#: At most one INFO retry line per this many seconds (the rest at DEBUG).
ANNOUNCE_EVERY = 10.0

#: Answers that arrive broken (cut off mid-body, undecodable): the request
#: may or may not have applied, exactly as after a dropped connection.
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class ApiError(Exception):
    """An answer from the API that the caller has to act on."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class FatalApiError(ApiError, OperationalError):
    """Every further record would fail the same way, so the run must stop."""


class RetriesExhausted(FatalApiError):
    """The API stayed unavailable through every retry."""


@dataclass(frozen=True)
class RetryPolicy:
    """When to repeat a request and how long to wait before doing so.

    ``total`` counts repeats, not attempts: ``total=3`` allows four attempts.
    Sleeps grow as ``backoff_factor * 2**(retry - 1)`` up to ``backoff_max``,
    and jitter removes up to ``backoff_jitter`` of each one so that parallel
    workers do not retry in lockstep. ``give_up_after_429s`` stops the run
    when that many 429 answers came in a row (no other answer between them)
    over at least ``give_up_window`` seconds: a spent daily quota looks like
    any other 429, and retrying every request to exhaustion only spends time.
    """

    total: int = 5
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    backoff_jitter: float = 0.5
    status_forcelist: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    respect_retry_after_header: bool = True
    give_up_after_429s: int | None = None
    give_up_window: float = 120.0

    def is_retry(self, status: int) -> bool:
        """Whether a response status is transient (nothing applied, or unsure)."""
        return status in self.status_forcelist or status >= 500

    def get_backoff_time(self, retry_number: int) -> float:
        """Exponential backoff with jitter for the n-th retry (1-based)."""
        base = min(self.backoff_max, self.backoff_factor * 2.0 ** (retry_number - 1))
        return float(base * (1 - self.backoff_jitter * random.random()))

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


class _Streak:
    """Consecutive 429 answers across every thread, for ``give_up_after_429s``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.since = 0.0

    def observe(self, status: int | None) -> tuple[int, float]:
        with self._lock:
            if status != 429:
                self.count = 0
                return 0, 0.0
            if self.count == 0:
                self.since = time.monotonic()
            self.count += 1
            return self.count, time.monotonic() - self.since


@dataclass
class Transport:
    """A connection pool with limits, retries, authentication and a budget.

    Thread-safe: every sink's delivery threads go through here. ``stop``
    ends waiting: once set, a retry or rate-limit sleep raises ``Abandoned``
    instead of sleeping on, so a stopping run ends in bounded time.
    """

    base_url: str
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_concurrency: int = 10
    auth: Authenticator | None = None
    rate_limiter: RateLimiter | None = None
    fatal_check: FatalCheck | None = None
    budget: CallBudget | None = None
    user_agent: str = "singer-delivery"
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.host = urllib.parse.urlsplit(self.base_url).hostname or self.base_url
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._streak = _Streak()
        self._announced = 0.0
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_maxsize=self.max_concurrency, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = self.user_agent
        self._read_environment()

    def _read_environment(self) -> None:
        """Take the proxies and CA bundle for ``base_url`` from the
        environment once (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``
        and the like), as requests would.

        requests reads the environment again for every request (and looks for
        a ``.netrc``): a quarter of a millisecond each, which a per-record
        mode pays per record. Every request goes to ``base_url``'s host, so
        one reading holds for the run; ``.netrc`` is never used, since every
        call carries its own credentials.
        """
        environment = self.session.merge_environment_settings(
            self.base_url, {}, None, None, None
        )
        self.session.proxies = environment["proxies"]
        self.session.verify = environment["verify"]
        self.session.trust_env = False

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
        run cannot go on: retries exhausted, credentials refused twice, a TLS
        or proxy failure, the budget spent, or the ``fatal_check`` recognising
        a stop condition such as a spent quota. ``route`` names the call in
        logs and counts, so personal data in the path (recipient IDs, emails)
        never reaches a log line.
        """
        route = route or f"{method} {path}"
        url = f"{self.base_url}{path}"
        refreshed = False
        retry_number = 0
        while True:
            if self.stop.is_set():
                raise Abandoned
            if self.budget is not None and authenticate:
                self.budget.acquire()
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
            except requests.exceptions.SSLError as exc:
                raise FatalApiError(self._tls_message(exc)) from exc
            except requests.exceptions.ProxyError as exc:
                raise FatalApiError(self._proxy_message(exc)) from exc
            except TRANSIENT_ERRORS as exc:
                reason = _describe(exc)
                self._observe(observer, route, None)
                retry_number = self._before_retry(observer, route, retry_number, reason)
                self._sleep(self.retry.get_backoff_time(retry_number), route, reason)
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
            self._check_streak(response.status_code)
            if not self.retry.is_retry(response.status_code):
                return response
            reason = f"HTTP {response.status_code}"
            retry_number = self._before_retry(observer, route, retry_number, reason)
            wait = self.retry.get_sleep_time(
                retry_number, response.headers.get("Retry-After")
            )
            self._sleep(wait, route, reason)

    def set_aside(self, calls: int) -> t.ContextManager[None]:
        """Keep ``calls`` of the daily budget for work that must finish once
        started, or refuse to start it (see ``CallBudget.set_aside``)."""
        if self.budget is None:
            return contextlib.nullcontext()
        return self.budget.set_aside(calls)

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
            self.rate_limiter.observe(method, response.headers, response.status_code)
        logger.debug(
            "%s -> %s in %.0f ms",
            route,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _sleep(self, seconds: float, route: str, reason: str) -> None:
        """Wait before a retry; a stopping run abandons the request instead."""
        if seconds >= ANNOUNCE_WAIT and self._may_announce():
            logger.info(
                "%s answered %s; retrying in %.0f s (the API looks busy or "
                "unreachable; each request is retried up to max_retries=%d times)",
                route,
                reason,
                seconds,
                self.retry.total,
            )
        if self.stop.wait(seconds):
            raise Abandoned

    def _may_announce(self) -> bool:
        now = time.monotonic()
        if now - self._announced < ANNOUNCE_EVERY:
            return False
        self._announced = now
        return True

    def _check_streak(self, status: int) -> None:
        limit = self.retry.give_up_after_429s
        count, span = self._streak.observe(status)
        if limit and count >= limit and span >= self.retry.give_up_window:
            msg = (
                f"{self.host} answered 429 to the last {count} requests over "
                f"{span:.0f} s with no other answer: the daily quota is probably "
                "spent. The run stopped; nothing after the last STATE was lost. "
                "Run again after the quota resets."
            )
            raise FatalApiError(msg, status=429)

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
                f"{route} to {self.host} still failed after {self.retry.total} "
                f"retries ({reason}); the API looks unavailable, try again later "
                "or raise max_retries"
            )
            raise RetriesExhausted(msg)
        if observer:
            observer.on_retry(route, reason)
        logger.debug("retrying %s after %s (retry %d)", route, reason, retry_number)
        return retry_number

    def _tls_message(self, exc: BaseException) -> str:
        return (
            f"TLS connection to {self.host} failed ({_root_cause(exc)}); the "
            "certificate is not trusted or the host is not the API. Check the "
            "endpoint setting, or give Python the CA bundle of your proxy "
            "(REQUESTS_CA_BUNDLE). Not retried: it would fail the same way."
        )

    def _proxy_message(self, exc: BaseException) -> str:
        return (
            f"the proxy in front of {self.host} refused or failed the connection "
            f"({_root_cause(exc)}); check HTTPS_PROXY / HTTP_PROXY / NO_PROXY. "
            "Not retried."
        )

    @staticmethod
    def _observe(observer: CallObserver | None, route: str, status: int | None) -> None:
        if observer:
            observer.on_request(route, status)


def json_body(response: requests.Response) -> t.Any:
    """The answer's JSON, or None when it has none (APIs answer HTML too)."""
    try:
        return response.json()
    except ValueError:
        return None


def _root_cause(exc: BaseException) -> str:
    """The innermost exception's message, without URLs or object reprs."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = t.cast(BaseException, exc.__cause__ or exc.__context__)
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc)
    return " ".join(text.split())[:200] or type(exc).__name__


def _describe(exc: BaseException) -> str:
    """Why a request failed, in words; DNS failures say so."""
    text = str(exc)
    if "NameResolutionError" in text or "Name or service not known" in text:
        return "the host name could not be resolved (DNS)"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the answer was cut off mid-body"
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return "the answer could not be decoded"
    if isinstance(exc, requests.Timeout):
        return "no answer within request_timeout"
    return "the connection failed"
