"""Probes: check the API shapes a target assumes against a real instance.

Some request and answer shapes a target relies on are not publicly
documented; its ``contract`` module fixes them. A probe (``<target>-probe``)
puts each of them to a real instance and reports, one row per shape,
``confirmed``, ``differs`` (with what was seen) or ``not checked`` (with
why). The same rows go to a JSON file a user can attach to a bug report.

This module is what both probes share: the row and report format, the
table, the call cap, and the command line. What to check, and how, lives in
each target's ``probe`` module.

Rules every probe keeps, and this module enforces where it can:

- At most ``MAX_CALLS`` HTTP requests (token requests and retries
  included): an adapter on the transport's session counts every request
  and refuses the one over the cap.
- Without ``--write`` nothing is written. A probe may send a write-method
  request that is built to be refused (an empty member list, an id that
  does not exist): such *inert* calls change nothing and the report lists
  every write-method call it made under ``write_calls``.
- No secret, token or personal data reaches the table or the file: a row
  says what was seen in words (status codes, key names, types, counts,
  error codes), never in values the instance returned. The only data a
  probe sends are synthetic (``probe-...@example.invalid``).
- Exit 0 when the probe could run (shapes may still differ); exit 2 with
  one line when it could not reach the instance or sign in.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import textwrap
import threading
import typing as t
import urllib.parse
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from singer_delivery.http import ApiError, RetryPolicy
from singer_delivery.serialization import dumps
from singer_delivery.settings import instance_of

if t.TYPE_CHECKING:
    from singer_delivery.http import Transport
    from singer_delivery.target import DeliveryTarget

CONFIRMED = "confirmed"
DIFFERS = "differs"
NOT_CHECKED = "not checked"
#: HTTP requests one probe may make, whatever it finds (Agillic staging
#: allows 5,000 calls a day).
MAX_CALLS = 25
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Exit status when the instance could not be reached or refused the
#: credentials (2, like a usage error: nothing was probed).
EXIT_UNREACHABLE = 2
NEEDS_WRITE = "needs --write"


class CallCapReached(Exception):
    """The probe would go over ``MAX_CALLS``; the request was not sent."""


class ProbeStopped(Exception):
    """The instance cannot be probed (its first answer was not the API's)."""


class ProbeRetry(RetryPolicy):
    """Repeat only what says nothing about the shape: a 429 or a lost connection.

    A 5xx answer is returned rather than retried, so that a probe reports
    what the instance answers (a real server may answer 500 to an id it
    cannot parse) instead of spending the call cap on repeats.
    """

    @override
    def is_retry(self, status: int) -> bool:
        """Only a 429 (nothing was applied) is repeated."""
        return status == 429


#: One repeat: a blip does not end the probe, a dead host ends it quickly.
PROBE_RETRY = ProbeRetry(total=1)


@dataclass(frozen=True)
class Shape:
    """One API shape a target assumes: what the probe expects to see."""

    name: str
    expected: str
    needs_write: bool = False


@dataclass
class Check:
    """One row of the report."""

    shape: str
    status: str
    seen: str
    expected: str
    calls: list[str] = field(default_factory=list)


@dataclass(eq=False)
class Answer:
    """One API call the probe made and what came back (equal only to itself)."""

    method: str
    route: str
    response: requests.Response

    @property
    def status(self) -> int:
        """The HTTP status of the answer."""
        return self.response.status_code

    @property
    def label(self) -> str:
        """The call in the report: its route (no IDs) and the status."""
        return f"{self.route} -> {self.status}"

    def json(self) -> t.Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return self.response.json()
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        """A response header (case-insensitive)."""
        return self.response.headers.get(name)


@dataclass(frozen=True)
class Exchange:
    """One HTTP request on the wire and its answer (token requests included)."""

    path: str
    response: requests.Response


class CallCounter(HTTPAdapter):
    """Counts every request the transport sends and refuses the one over ``limit``.

    Mounted on the transport's session, below its retries and its
    authenticator, so token requests and repeats count too. It keeps the
    answers in memory (never written out) for checks on requests the probe
    does not make itself, such as the token request.
    """

    def __init__(self, limit: int, pool_maxsize: int) -> None:
        super().__init__(pool_maxsize=pool_maxsize, max_retries=0)
        self.limit = limit
        self.sent = 0
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

    @classmethod
    def install(cls, transport: Transport, limit: int) -> CallCounter:
        """Mount a counter for every scheme of the transport's session."""
        counter = cls(limit, transport.max_concurrency)
        transport.session.mount("http://", counter)
        transport.session.mount("https://", counter)
        return counter

    @override
    def send(
        self, request: requests.PreparedRequest, *args: t.Any, **kwargs: t.Any
    ) -> requests.Response:
        """Count the request, refusing it when the cap is reached."""
        with self._lock:
            if self.sent >= self.limit:
                msg = f"the probe's cap of {self.limit} API calls was reached"
                raise CallCapReached(msg)
            self.sent += 1
        response = super().send(request, *args, **kwargs)
        path = urllib.parse.urlsplit(request.url or "").path
        with self._lock:
            self.exchanges.append(Exchange(path, response))
        return response

    def answered(self, path: str) -> list[requests.Response]:
        """Answers to requests for ``path``, oldest first."""
        with self._lock:
            return [e.response for e in self.exchanges if e.path == path]

    def statuses(self, status: int) -> list[requests.Response]:
        """Every answer with ``status``, oldest first."""
        with self._lock:
            return [
                e.response for e in self.exchanges if e.response.status_code == status
            ]


class Prober:
    """Makes a probe's calls and collects one result per declared shape.

    ``shapes`` are every shape the probe knows, in report order; a shape
    the probe never reached is reported ``not checked`` with the reason
    (needs ``--write``, the probe stopped, the call cap).
    """

    def __init__(
        self,
        transport: Transport,
        shapes: t.Sequence[Shape],
        *,
        write: bool,
        limit: int = MAX_CALLS,
    ) -> None:
        transport.retry = PROBE_RETRY
        self.transport = transport
        self.shapes = list(shapes)
        self.write = write
        self.counter = CallCounter.install(transport, limit)
        self.answers: list[Answer] = []
        #: Answers that came from no endpoint at all (left out of envelope checks).
        self.unknown_routes: list[Answer] = []
        #: Synthetic entries the probe created and could not remove.
        self.left_behind: list[str] = []
        self._results: dict[str, Check] = {}

    def call(
        self,
        method: str,
        path: str,
        route: str,
        *,
        params: dict[str, str] | None = None,
        body: t.Any = None,
    ) -> Answer:
        """One API call through the target's transport (its auth and pacing)."""
        response = self.transport.request(
            method,
            path,
            route=route,
            params=params,
            body=None if body is None else dumps(body),
        )
        answer = Answer(method, route, response)
        self.answers.append(answer)
        return answer

    def record(
        self,
        shape: Shape,
        status: str,
        seen: str,
        *answers: Answer,
        expected: str | None = None,
    ) -> None:
        """The result for ``shape``; ``expected`` overrides the declared text."""
        self._results[shape.name] = Check(
            shape=shape.name,
            status=status,
            seen=seen,
            expected=expected or shape.expected,
            calls=[answer.label for answer in answers],
        )

    def confirm(self, shape: Shape, seen: str, *answers: Answer) -> None:
        """The instance answered as the target assumes."""
        self.record(shape, CONFIRMED, seen, *answers)

    def differ(self, shape: Shape, seen: str, *answers: Answer) -> None:
        """The instance answered otherwise; ``seen`` says how."""
        self.record(shape, DIFFERS, seen, *answers)

    def skip(self, shape: Shape, why: str, *answers: Answer) -> None:
        """The shape could not be checked; ``why`` says so."""
        self.record(shape, NOT_CHECKED, why, *answers)

    def checks(self, stopped: bool) -> list[Check]:
        """Every declared shape's row, in order; missing ones say why."""
        rows = []
        for shape in self.shapes:
            check = self._results.get(shape.name)
            if check is None:
                why = self._missing_reason(shape, stopped)
                check = Check(shape.name, NOT_CHECKED, why, shape.expected)
            rows.append(check)
        return rows

    def _missing_reason(self, shape: Shape, stopped: bool) -> str:
        if shape.needs_write and not self.write:
            return NEEDS_WRITE
        if stopped:
            return "not reached: the probe stopped first (see error)"
        return "not reached"

    def write_calls(self) -> list[str]:
        """Labels of every write-method call the probe made itself."""
        return [a.label for a in self.answers if a.method in WRITE_METHODS]


def probe_id(email: bool) -> str:
    """A synthetic, unguessable ID for a probe entry (no real person has it)."""
    token = f"probe-{secrets.token_hex(6)}"
    return f"{token}@example.invalid" if email else token


def body_shape(answer: Answer) -> str:
    """An answer's body in words, without its values."""
    body = answer.json()
    if isinstance(body, dict):
        keys = ", ".join(sorted(map(str, body))) or "no keys"
        return f"a JSON object with keys {keys}"
    if isinstance(body, list):
        return f"a JSON array of {len(body)}"
    if body is not None:
        return f"JSON {type(body).__name__}"
    if not answer.response.content:
        return "an empty body"
    kind = answer.header("Content-Type") or "no Content-Type"
    return f"a non-JSON body ({kind.split(';')[0]})"


def safe_word(value: t.Any) -> str:
    """An error code as the report may show it: a short word, else its type."""
    text = str(value)
    if len(text) <= 40 and text.replace("_", "").replace("-", "").isalnum():
        return text
    return f"<{type(value).__name__}>"


# --- the report --------------------------------------------------------------


@dataclass
class Report:
    """What the output file holds: the rows plus where, when and how many calls."""

    target: str
    version: str
    instance: str
    time: str
    write: bool
    api_calls: int
    call_cap: int
    error: str | None
    checks: list[Check]
    write_calls: list[str]
    left_behind: list[str]

    def to_json(self) -> str:
        """The file's text: one JSON object, checks as {shape, status, ...}."""
        return json.dumps(asdict(self), indent=2) + "\n"

    def table(self, width: int) -> str:
        """The rows as a table for a terminal ``width`` characters wide."""
        mode = "with --write" if self.write else "read-only"
        title = (
            f"{self.target} {self.version} probe of {self.instance} ({mode}): "
            f"{self.api_calls} API calls of at most {self.call_cap}"
        )
        lines = [title, ""]
        shape_width = max(len(c.shape) for c in self.checks)
        status_width = len(NOT_CHECKED)
        indent = status_width + shape_width + 4
        wrap = max(30, width - indent)
        for check in self.checks:
            seen = textwrap.wrap(check.seen, wrap) or [""]
            head = f"{check.status:<{status_width}}  {check.shape:<{shape_width}}  "
            lines.append(head + seen[0])
            lines.extend(" " * indent + rest for rest in seen[1:])
        if self.left_behind:
            lines += [
                "",
                "Left behind (remove by hand): " + ", ".join(self.left_behind),
            ]
        return "\n".join(lines)


def now() -> str:
    """The current time in UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- the command line --------------------------------------------------------

Probe = t.Callable[[t.Any, Prober], None]


def parse_args(name: str, argv: t.Sequence[str] | None) -> argparse.Namespace:
    """``--config FILE``, ``--output FILE``, ``--write``."""
    parser = argparse.ArgumentParser(
        prog=f"{name}-probe",
        description=(
            f"Check the API shapes {name} assumes against a real instance and "
            "write the results to a JSON file for a bug report. Read-only "
            f"unless --write; at most {MAX_CALLS} API calls."
        ),
    )
    parser.add_argument(
        "--config", required=True, help=f"the JSON config file of {name}"
    )
    parser.add_argument(
        "--output",
        default=f"{name}-probe.json",
        help="where the results go (default: %(default)s)",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="also check the write shapes on one synthetic probe entry, "
        "which is created and removed again",
    )
    return parser.parse_args(argv)


def run(
    name: str,
    target_class: type[DeliveryTarget[t.Any]],
    probe: Probe,
    shapes: t.Sequence[Shape],
    argv: t.Sequence[str] | None = None,
) -> int:
    """A probe's command line: read the config, probe, print, write the file."""
    args = parse_args(name, argv)
    program = f"{name}-probe"
    try:
        config = read_config(Path(args.config))
    except (OSError, ValueError, TypeError) as exc:
        return fail(program, f"cannot read --config {args.config}: {exc}")
    try:
        target = target_class(config=config)
    except ConfigValidationError as exc:
        problems = "; ".join(exc.errors) or str(exc)
        return fail(program, f"--config {args.config} is not valid: {problems}")
    transport = target.create_transport(budget=None)
    prober = Prober(transport, shapes, write=args.write)
    stopped, failed = None, False
    try:
        probe(target, prober)
    except (ApiError, ProbeStopped) as exc:
        stopped, failed = str(exc), True
    except CallCapReached as exc:
        stopped = str(exc)  # the probe's own limit: what it found still stands
    finally:
        transport.session.close()
    report = Report(
        target=name,
        version=str(target.plugin_version),
        instance=instance_of(target.api_url),
        time=now(),
        write=args.write,
        api_calls=prober.counter.sent,
        call_cap=prober.counter.limit,
        error=stopped,
        checks=prober.checks(stopped is not None),
        write_calls=prober.write_calls(),
        left_behind=prober.left_behind,
    )
    output = Path(args.output)
    try:
        output.write_text(report.to_json())
    except OSError as exc:
        return fail(program, f"cannot write --output {output}: {exc.strerror}")
    if failed:
        return fail(
            program, f"could not probe {report.instance}: {stopped} (see {output})"
        )
    print(report.table(shutil.get_terminal_size((100, 24)).columns))
    print(f"\nResults written to {output}")
    return 0


def read_config(path: Path) -> dict[str, t.Any]:
    """The target's JSON config file (an object)."""
    config = json.loads(path.read_text())
    if not isinstance(config, dict):
        msg = "the file does not hold a JSON object"
        raise TypeError(msg)
    return config


def fail(program: str, message: str) -> int:
    """One line on stderr, and the exit status of a probe that could not run."""
    print(f"{program}: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_UNREACHABLE


def check_envelope(
    prober: Prober,
    shape: Shape,
    errors: list[Answer],
    fits: t.Callable[[Answer], bool],
    describe: t.Callable[[Answer], str],
) -> None:
    """Every 4xx answer seen against the API's error envelope (``fits``)."""
    if not errors:
        prober.skip(shape, "no endpoint answered with a 4xx")
        return
    odd = [a for a in errors if not fits(a)]
    if odd:
        seen = "; ".join(f"{a.label} with {body_shape(a)}" for a in odd)
        prober.differ(shape, seen, *errors)
        return
    codes = "; ".join(sorted({describe(a) for a in errors}))
    prober.confirm(shape, f"{len(errors)} error answer(s), all fit: {codes}", *errors)
