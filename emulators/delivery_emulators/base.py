"""Shared machinery for the HTTP emulators of the remote APIs.

The emulators are real HTTP servers on 127.0.0.1 so that the targets are
exercised through their actual HTTP stack (sessions, retries, timeouts),
with call counting, concurrency tracking and fault injection for assertions.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import inspect
import json
import random
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, unquote, urlsplit

from typing_extensions import override

CONTROL_PREFIX = "/_emulator/"
UNMATCHED = "UNMATCHED"
DROPPED = 0  # response status meaning "connection closed without an answer"
_CHUNK = 1 << 20
_STATUS_WORDS = {413: "PAYLOAD_TOO_LARGE"}
# Faults that let the request take effect and then spoil the answer on the wire.
WIRE_FAULTS = ("truncate", "undecodable")
_FAKE_PARTIAL_BODY = b'{"truncated": tr'
_FAKE_FULL_LENGTH = len(b'{"truncated": true}')
_NOT_GZIP = b"this body is not gzip"


@dataclass
class Response:
    """What a handler answers; status DROPPED closes the connection instead.

    `wire_fault` (one of WIRE_FAULTS) spoils how the answer is sent.
    """

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    wire_fault: str | None = None


@dataclass
class Request:
    """One parsed request as handlers see it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    raw: bytes
    body_size: int
    too_large: bool
    json: Any = None
    route: str = UNMATCHED
    params: dict[str, str] = field(default_factory=dict)
    in_flight: int = 0


@dataclass
class RequestRecord:
    """Request log entry for test assertions (status 0 = dropped)."""

    method: str
    route: str
    path: str
    query: dict[str, list[str]]
    body: Any
    body_size: int
    status: int


@dataclass
class Fault:
    """An injected failure; `count` None with `rate` None means every match."""

    kind: str
    route: str | None = None
    rate: float | None = None
    count: int | None = None
    status: int = 503
    retry_after: float | str | None = None
    delay: float = 1.0


@dataclass(frozen=True)
class Route:
    """A method plus path pattern; `{name}` matches one percent-encoded segment.

    While `when` returns False the route does not exist (unknown-route 404),
    so an emulator can switch endpoints off like an instance lacking them.
    """

    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Callable[[Request], Response]
    when: Callable[[], bool] | None = None

    @property
    def enabled(self) -> bool:
        return self.when is None or self.when()

    @property
    def label(self) -> str:
        return f"{self.method} {self.pattern}"


def status_word(status: int) -> str:
    """Upper-case reason word used as an error code, e.g. TOO_MANY_REQUESTS."""
    return _STATUS_WORDS.get(status) or HTTPStatus(status).name


def optional_int(value: Any) -> int | None:
    """Coerce a setting where None means unlimited."""
    return None if value is None else int(value)


def optional_names(value: Any) -> list[str] | None:
    """Coerce a setting where None means "any name": a list or "A,B" (the CLI)."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else value
    return [str(name).strip() for name in names if str(name).strip()]


def choice(*options: str) -> Callable[[Any], str]:
    """A setting converter that accepts only `options`."""

    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, not {value!r}")
        return str(value)

    convert.__name__ = "choice"  # argparse names it in "invalid choice value"
    return convert


def basic_credentials(headers: Message) -> tuple[str, str] | None:
    """Decode an HTTP Basic Authorization header, None when absent or garbled."""
    scheme, _, encoded = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _compile(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)"
        for i, part in enumerate(parts)
    )
    return re.compile(regex)


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _header_value(value: float | str) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _HTTPServer(ThreadingHTTPServer):
    """Threading server that can cut its open keep-alive connections on stop."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    @override
    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    @override
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up before its answer (a target killed by a test)
        is normal here; anything else is printed as socketserver does."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Stop idle keep-alive threads so a stopped emulator answers nothing."""
        with self._connections_lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _HTTPServer

    def _dispatch(self) -> None:
        self.server.emulator._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    @override
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet; the request log is the record."""


class EmulatorServer:
    """Base of the API emulators: routing, counters, faults, control endpoints.

    Subclasses register routes, implement `error` (the API's error envelope)
    and may override the `_gate`, `_finalize`, `_tick` and fault hooks.
    """

    settings: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "latency": float,
        "seed": int,
    }
    setting_help: ClassVar[dict[str, str]] = {
        "latency": "seconds added to every answer",
        "seed": "seed of the random numbers deciding which `rate` faults fire",
    }
    fault_kinds: ClassVar[tuple[str, ...]] = ("status", "drop", "slow", *WIRE_FAULTS)
    write_methods: ClassVar[frozenset[str]] = frozenset()
    unwritten_routes: ClassVar[frozenset[str]] = frozenset()
    max_body_bytes: int | None = None
    #: Whether `requests` keeps each request's parsed body, for tests that
    #: assert on what was sent. The command line turns it off: no control
    #: endpoint returns bodies, and a long session would otherwise grow by
    #: the size of everything it was sent (about 85 MB per 100,000 records).
    keep_request_bodies: bool = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self._lock = threading.RLock()
        self._routes: list[Route] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self.seed = seed
        self._reset_counters()

    # -- lifecycle -------------------------------------------------------

    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        """Reseed so that `rate` faults fire in a reproducible pattern."""
        self._seed = value
        self._rng = random.Random(value)

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("emulator is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError("emulator already started")
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- configuration and faults ---------------------------------------

    def route(
        self,
        method: str,
        pattern: str,
        handler: Callable[[Request], Response],
        when: Callable[[], bool] | None = None,
    ) -> None:
        """Register a handler; the first enabled match wins."""
        self._routes.append(Route(method, pattern, _compile(pattern), handler, when))

    def configure(self, **values: Any) -> None:
        """Change settings or run config actions (also `POST /_emulator/config`)."""
        actions = self._config_actions()
        unknown = set(values) - set(self.settings) - set(actions)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        with self._lock:
            for key, value in values.items():
                if key in self.settings:
                    setattr(self, key, self.settings[key](value))
                else:
                    actions[key](value)

    def inject(
        self,
        route: str | None = None,
        kind: str = "status",
        rate: float | None = None,
        count: int | None = None,
        status: int = 503,
        retry_after: float | str | None = None,
        delay: float = 1.0,
    ) -> Fault:
        """Add a fault for `route` (a label like "POST /recipients") or all routes.

        Kinds: `status` answers `status` (with `retry_after`), `drop` closes
        without an answer, `slow` waits `delay` seconds first; `truncate` and
        `undecodable` apply the request, then send a broken answer (cut short,
        or labelled gzip without being gzip), so a client cannot know it worked.
        """
        if kind not in self.fault_kinds:
            raise ValueError(f"fault kind must be one of {self.fault_kinds}")
        if route is not None and route not in {r.label for r in self._routes}:
            raise ValueError(f"no route labelled {route!r}")
        fault = Fault(kind, route, rate, count, status, retry_after, delay)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset(self) -> None:
        """Forget data, counters and faults; settings are kept."""
        with self._lock:
            self._reset_counters()
            self._reset_data()

    def write_calls(self) -> int:
        """Answered requests (any status) whose method is in `write_methods`.

        Dropped requests, `unwritten_routes` and control endpoints are not counted.
        """
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.method in self.write_methods
                and r.route not in self.unwritten_routes
                and r.status != DROPPED
            )

    def call_summary(self) -> dict[str, Any]:
        """Body of `GET /_emulator/calls`."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "peak_concurrency": self.peak_concurrency,
                "write_calls": self.write_calls(),
                "status_counts": {str(k): v for k, v in self.status_counts.items()},
                "faults_fired": self.faults_fired,
            }

    def snapshot(self) -> dict[str, Any]:
        """Body of `GET /_emulator/state`; subclasses add their data."""
        with self._lock:
            self._tick()
            return {
                "settings": {name: getattr(self, name) for name in self.settings},
                "faults": [asdict(fault) for fault in self.faults],
                **self.call_summary(),
            }

    # -- hooks for subclasses -------------------------------------------

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        """The API's error envelope."""
        raise NotImplementedError

    def _reset_data(self) -> None:
        """Recreate the emulated API's stored data."""

    def _tick(self) -> None:
        """Advance time-driven state (called under the lock before each answer)."""

    def _gate(self, request: Request) -> Response | None:
        """Checks before the route handler (auth, limits); a Response rejects."""
        return None

    def _finalize(self, request: Request, response: Response) -> Response:
        """Adjust every answered response (e.g. add rate-limit headers)."""
        return response

    def _fault_applies(self, fault: Fault, request: Request) -> bool:
        return True

    def _custom_fault(self, fault: Fault, request: Request) -> Response:
        """Answer a subclass-specific fault kind."""
        raise NotImplementedError(fault.kind)

    def _config_actions(self) -> dict[str, Callable[[Any], None]]:
        """Config keys that act rather than set a value."""
        return {
            "faults": self._inject_all,
            "clear_faults": lambda clear: self.clear_faults() if clear else None,
        }

    def _inject_all(self, faults: list[dict[str, Any]]) -> None:
        for fault in faults:
            self.inject(**fault)

    # -- request processing ---------------------------------------------

    def _reset_counters(self) -> None:
        self.calls: Counter[str] = Counter()
        self.status_counts: Counter[int] = Counter()
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.faults_fired = 0
        self.peak_concurrency = 0
        self.seed = self._seed

    def _serve(self, handler: _Handler) -> None:
        request = self._read_request(handler)
        if request.path.startswith(CONTROL_PREFIX):
            self._send(handler, self._control(request))
            return
        with self._lock:
            self._in_flight += 1
            request.in_flight = self._in_flight
            self.peak_concurrency = max(self.peak_concurrency, self._in_flight)
        try:
            response = self._process(request)
        finally:
            with self._lock:
                self._in_flight -= 1
        self._record(request, response)
        self._send(handler, response)

    def _read_request(self, handler: _Handler) -> Request:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        too_large = self.max_body_bytes is not None and length > self.max_body_bytes
        raw = b"" if too_large else handler.rfile.read(length)
        if too_large:
            self._discard(handler, length)
        return Request(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=handler.headers,
            raw=raw,
            body_size=length,
            too_large=too_large,
            json=_parse_json(raw),
        )

    @staticmethod
    def _discard(handler: _Handler, length: int) -> None:
        """Read an oversized body away so the connection stays usable."""
        while length > 0:
            chunk = handler.rfile.read(min(length, _CHUNK))
            if not chunk:
                break
            length -= len(chunk)

    def _process(self, request: Request) -> Response:
        with self._lock:
            route = self._match(request)
            self.calls[request.route] += 1
            fault = self._take_fault(request)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None
        wire_fault = None
        if fault is not None and fault.kind in WIRE_FAULTS:
            wire_fault, fault = fault.kind, None
        with self._lock:
            self._tick()
            if fault is None:
                response = self._answer(route, request)
            else:
                response = self._fault_response(fault, request)
            if response.status != DROPPED:
                response = self._finalize(request, response)
                response.wire_fault = wire_fault
            response.body = copy.deepcopy(response.body)  # detach from live state
        if self.latency > 0:
            time.sleep(self.latency)
        return response

    def _match(self, request: Request) -> Route | None:
        for route in self._routes:
            found = (
                route.method == request.method
                and route.enabled
                and route.regex.fullmatch(request.path)
            )
            if found:
                request.route = route.label
                request.params = {k: unquote(v) for k, v in found.groupdict().items()}
                return route
        request.route = f"{request.method} {UNMATCHED}"
        return None

    def _take_fault(self, request: Request) -> Fault | None:
        for fault in self.faults:
            if fault.route not in (None, request.route):
                continue
            if not self._fault_applies(fault, request):
                continue
            if fault.rate is not None and self._rng.random() >= fault.rate:
                continue
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
            self.faults_fired += 1
            return fault
        return None

    def _fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "drop":
            return Response(DROPPED)
        if fault.kind == "status":
            response = self.error(fault.status, "injected fault")
            if fault.retry_after is not None:
                response.headers["Retry-After"] = _header_value(fault.retry_after)
            return response
        return self._custom_fault(fault, request)

    def _answer(self, route: Route | None, request: Request) -> Response:
        rejection = self._gate(request)
        if rejection is not None:
            return rejection
        if route is None:
            return self.error(404, f"no endpoint {request.method} {request.path}")
        return route.handler(request)

    def _record(self, request: Request, response: Response) -> None:
        record = RequestRecord(
            method=request.method,
            route=request.route,
            path=request.path,
            query=request.query,
            body=request.json if self.keep_request_bodies else None,
            body_size=request.body_size,
            status=response.status,
        )
        with self._lock:
            self.requests.append(record)
            if response.status != DROPPED:
                self.status_counts[response.status] += 1

    def _control(self, request: Request) -> Response:
        endpoints: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "state"): lambda _: Response(200, self.snapshot()),
            ("GET", "calls"): lambda _: Response(200, self.call_summary()),
            ("POST", "config"): self._control_config,
            ("POST", "reset"): self._control_reset,
        }
        endpoint = endpoints.get((request.method, request.path[len(CONTROL_PREFIX) :]))
        if endpoint is None:
            return Response(404, {"error": "unknown control endpoint"})
        with self._lock:
            response = endpoint(request)
            response.body = copy.deepcopy(response.body)  # detach from live state
        return response

    def _control_config(self, request: Request) -> Response:
        if not isinstance(request.json, dict):
            return Response(400, {"error": "body must be a JSON object"})
        try:
            self.configure(**request.json)
        except (ValueError, TypeError, KeyError) as exc:
            return Response(400, {"error": str(exc)})
        return Response(200, self.snapshot()["settings"])

    def _control_reset(self, request: Request) -> Response:
        self.reset()
        return Response(200, {"reset": True})

    @staticmethod
    def _send(handler: _Handler, response: Response) -> None:
        if response.status == DROPPED:
            handler.close_connection = True
            return
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        if response.wire_fault is not None:
            _send_spoiled(handler, response, payload)
            return
        _send_head(handler, response)
        if response.status != 204:
            handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def _send_head(handler: _Handler, response: Response) -> None:
    """Status line and headers, without Content-Length or the blank line."""
    handler.send_response(response.status)
    if response.body is not None:
        handler.send_header("Content-Type", "application/json; charset=utf-8")
    for name, value in response.headers.items():
        handler.send_header(name, value)


def _send_spoiled(handler: _Handler, response: Response, payload: bytes) -> None:
    """Send an answer a client cannot read, after the request took effect.

    A 204 cannot carry a body, so it goes out as 200: a client reading the
    body raises before it sees the status either way.
    """
    if response.status == 204:
        response.status = 200
    if response.wire_fault == "truncate":
        length = len(payload) if payload else _FAKE_FULL_LENGTH
        sent = payload[: len(payload) // 2] if payload else _FAKE_PARTIAL_BODY
        handler.close_connection = True  # the client then sees the body end early
    else:
        sent = payload or _NOT_GZIP
        length = len(sent)
        response.headers["Content-Encoding"] = "gzip"
    _send_head(handler, response)
    handler.send_header("Content-Length", str(length))
    handler.end_headers()
    handler.wfile.write(sent)


def run_cli(cls: type[EmulatorServer], argv: Sequence[str] | None = None) -> int:
    """Serve `cls` from the command line until SIGTERM or SIGINT.

    `--help` shows the class docstring, one flag per setting with its
    `setting_help` text and default, then the module docstring (how to run
    it, credentials, control endpoints), so the help cannot drift from them.
    """
    options = vars(_cli_parser(cls).parse_args(argv))
    # Blocked before the serving thread starts (it inherits the mask), then
    # taken with sigwait: no handler runs, so none can deadlock on a lock the
    # interrupted code holds (setting an Event from a handler could, when the
    # signal landed while the main thread held that Event's own lock).
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    with cls(**options) as emulator:
        emulator.keep_request_bodies = False
        print(f"listening on {emulator.url}", flush=True)
        signal.sigwait(stop)
    return 0


def _cli_parser(cls: type[EmulatorServer]) -> argparse.ArgumentParser:
    """Flags are the class's settings; unset flags keep the constructor defaults."""
    parser = argparse.ArgumentParser(
        description=inspect.getdoc(cls),
        epilog=inspect.getdoc(sys.modules[cls.__module__]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    defaults = inspect.signature(cls).parameters
    for name, convert in cls.settings.items():
        flag = "--" + name.replace("_", "-")
        text = cls.setting_help.get(name, name)
        default = defaults[name].default if name in defaults else None
        if default is not None:  # a None default is explained by the help text
            text += f" (default: {default})"
        help_text = text.replace("%", "%%")
        if convert is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            parser.add_argument(flag, type=convert, help=help_text)
    return parser
