"""Agillic REST API emulator, per docs/api-contracts.md ("Agillic").

Start it with `agillic-emulator --port 8765` (or
`python -m delivery_emulators.agillic --port 8765`); it prints
"listening on http://127.0.0.1:8765" and serves until SIGTERM or Ctrl-C.
Every setting is also a command-line flag, e.g. `--task-delay 0.5`.

Default credentials: developer key `demo-key`, developer secret
`demo-secret`. Get a token with `POST /oauth2/token` (form body
`grant_type=client_credentials`, the key and secret as HTTP Basic or as
`client_id` / `client_secret`), or send them as HTTP Basic on every call.

Control endpoints (no authentication, never counted as API calls):
  GET  /_emulator/state    settings, faults, counters and all stored data
                           (recipients, tasks, target groups with members,
                           OTM tables, fired events, quota used)
  GET  /_emulator/calls    call counts per route, peak concurrency,
                           write calls, status counts, faults fired
  POST /_emulator/reset    forget data, counters and faults; keep settings
  POST /_emulator/config   a JSON object; each key is a setting (its value
                           replaces the setting) or one of these actions:
    {"task_delay": 0.5, "task_status_words": "pending"}
    {"add_group": {"name": "VIP"}}
    {"add_group": {"name": "Newsletter", "static": false}}
    {"remove_member": {"group": "VIP", "recipient_id": "a@x.com"}}
    {"add_otm_table": {"name": "TICKETS", "fields": [
        {"name": "ID", "identifier": true, "type": "STRING"},
        {"name": "TOPIC", "identifier": false, "type": "STRING"}]}}
    {"refuse": {"field": "EMAIL", "contains": "spam", "message": "no spam"}}
    {"refuse": [{"field": "TIER", "equals": "banned"}]}   (replaces all rules)
    {"fail_next_tasks": 2}
    {"expire_tokens": true}
    {"faults": [{"route": "POST /recipients/v2/:upsert", "kind": "status",
                 "status": 503, "count": 1}]}
    {"faults": [{"kind": "truncate", "rate": 0.1}]}
    {"clear_faults": true}
  Fault kinds: status (with "status", "retry_after"), drop, slow (with
  "delay"), truncate, undecodable, expire_token; each optionally limited by
  "route" (a label like "GET /recipients/{id}"), "rate" and "count".

Answer shapes that no public source shows are assumed (see the contracts
file); several can be switched to the variants real instances were seen to
use: task_status_words, task_result_shape, task_path, quota_code.
"""

from __future__ import annotations

import copy
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, ClassVar
from urllib.parse import parse_qs

from typing_extensions import override

from delivery_emulators.base import (
    EmulatorServer,
    Fault,
    Request,
    Response,
    basic_credentials,
    choice,
    optional_int,
    optional_names,
    run_cli,
    status_word,
)

TOKEN_ROUTE = "POST /oauth2/token"
UPSERT_ROUTE = "POST /recipients/v2/:upsert"
MAX_BATCH = 1000
MAX_GROUP_IDS = 100
MAX_BODY_BYTES = 20 * 1024 * 1024
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
FINISHED = frozenset({"completed", "failed"})
as_result_shape = choice("structured", "string", "missing")
as_task_path = choice("recipients", "messages")
# An RSQL equality: FIELD==value, the value bare or in single or double quotes.
RSQL_COMPARISON = re.compile(
    r"(?P<field>[A-Za-z_]\w*)=="
    r"""(?:'(?P<single>[^']*)'|"(?P<double>[^"]*)"|(?P<bare>[^'"]+))"""
)
DEFAULT_PERSON_FIELDS: tuple[tuple[str, str], ...] = (
    ("EMAIL", "STRING"),
    ("FIRSTNAME", "STRING"),
    ("LASTNAME", "STRING"),
    ("MOBILE", "STRING"),
    ("CUSTOMER_ID", "STRING"),
    ("COUNTRY", "STRING"),
    ("BIRTHDATE", "DATE"),
    ("CREATED_AT", "TIMESTAMP"),
    ("TIER", "STRING"),
    ("LIFETIME_VALUE", "NUMBER"),
    ("OPT_IN", "BOOLEAN"),
)
DEFAULT_OTM_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "ID", "identifier": True, "type": "STRING"},
    {"name": "AMOUNT", "identifier": False, "type": "NUMBER"},
    {"name": "ORDER_DATE", "identifier": False, "type": "DATE"},
    {"name": "STATUS", "identifier": False, "type": "STRING"},
)

PersonData = dict[str, Any]
RefuseRule = tuple[Callable[[PersonData], bool], str]
Filter = list[list[tuple[str, str]]]  # OR of ANDs of (field, value)


def _empty_result() -> dict[str, Any]:
    return {"processed": 0, "created": 0, "updated": 0, "failed": 0, "errors": []}


@dataclass
class Task:
    """An async batch; `status` stays None until it is due and applied."""

    task_id: str
    kind: str  # "recipients" or "otm"
    created: float
    entries: list[Any]
    table: str | None = None
    doomed: bool = False
    status: str | None = None
    result: dict[str, Any] = field(default_factory=_empty_result)
    polls: int = 0


@dataclass(frozen=True)
class FiredEvent:
    """One `:achieveWithContext` call: the flows listening on `event` ran once."""

    recipient_id: str
    event: str
    context_parameters: dict[str, Any]
    fired_at: float  # seconds since the epoch


def unfinished_word(value: Any) -> str:
    """`standard` (queued, then running) or the one word unfinished tasks answer."""
    word = str(value)
    if word.split() != [word] or word in FINISHED:
        raise ValueError(
            f"task_status_words must be one word other than {sorted(FINISHED)}"
        )
    return word


def _blank(value: Any) -> bool:
    return value is None or value == ""


def _person_data(body: Any) -> PersonData | None:
    """The `personData` object of a recipient body, None when malformed."""
    person = body.get("personData") if isinstance(body, dict) else None
    return person if isinstance(person, dict) else None


def _bearer(request: Request) -> str | None:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def parse_rsql(text: str) -> Filter:
    """Parse `FIELD==value` comparisons joined by `;` (AND) and `,` (OR).

    AND binds tighter, as in RSQL. Anything else (other operators,
    parentheses, empty parts) raises ValueError.
    """
    return [
        [_comparison(part) for part in _split_unquoted(group, ";")]
        for group in _split_unquoted(text, ",")
    ]


def _split_unquoted(text: str, separator: str) -> list[str]:
    """Split on `separator` except inside single or double quotes."""
    parts: list[str] = []
    current, quote = "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == separator:
            parts.append(current)
            current = ""
            continue
        current += char
    if quote:
        raise ValueError(f"unterminated quote in filter {text!r}")
    return [*parts, current]


def _comparison(text: str) -> tuple[str, str]:
    found = RSQL_COMPARISON.fullmatch(text)
    if found is None:
        raise ValueError(f"filter part {text!r} is not FIELD==value")
    values = (found["single"], found["double"], found["bare"])
    return found["field"], next(v for v in values if v is not None)


def _rsql_text(value: Any) -> str:
    """A stored value as a filter value spells it (booleans in lower case)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _matches(person: PersonData, rsql: Filter) -> bool:
    return any(
        all(
            name in person and _rsql_text(person[name]) == value for name, value in ands
        )
        for ands in rsql
    )


def _query_int(request: Request, name: str, default: int) -> int:
    values = request.query.get(name)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None


def _context_parameters(request: Request) -> dict[str, Any] | None:
    """An event's optional `context_parameters`: None unless names → scalars.

    Scalars are strings, numbers and booleans; an empty body means none.
    """
    body = request.json if request.raw else {}
    parameters = body.get("context_parameters", {}) if isinstance(body, dict) else None
    if not isinstance(parameters, dict):
        return None
    scalar = all(isinstance(v, str | int | float) for v in parameters.values())
    return parameters if scalar else None


def _rule_predicate(spec: dict[str, Any]) -> Callable[[PersonData], bool]:
    """Build a refuse predicate from `{"field", "equals" | "contains"}`."""
    name = spec["field"]
    if "equals" in spec:
        return lambda person: person.get(name) == spec["equals"]
    needle = str(spec["contains"])
    return lambda person: isinstance(person.get(name), str) and needle in person[name]


class AgillicEmulator(EmulatorServer):
    """In-memory Agillic instance for tests and trying the target without an account.

    It serves OAuth2 tokens (and HTTP Basic), single and batch recipient
    writes with async tasks, recipient listing by RSQL filter, events,
    static target groups, one-to-many tables and discovery.

    The daily quota (`quota_used`) counts authenticated calls that passed the
    concurrency and body-size checks; token calls never count. Faults fire
    before any check, so a faulted request applies nothing, except
    `truncate` and `undecodable`, which apply it and then spoil the answer.
    """

    settings: ClassVar[dict[str, Callable[[Any], Any]]] = {
        **EmulatorServer.settings,
        "developer_key": str,
        "developer_secret": str,
        "token_lifetime": float,
        "task_delay": float,
        "max_concurrency": int,
        "daily_quota": optional_int,
        "recipient_id_field": str,
        "max_body_bytes": int,
        "task_status_words": unfinished_word,
        "task_polls_before_done": int,
        "task_result_shape": as_result_shape,
        "task_path": as_task_path,
        "quota_code": str,
        "basic_auth": bool,
        "group_api": bool,
        "known_events": optional_names,
    }
    setting_help: ClassVar[dict[str, str]] = {
        **EmulatorServer.setting_help,
        "developer_key": "developer key (OAuth2 client id, HTTP Basic user)",
        "developer_secret": "developer secret (OAuth2 client secret, Basic password)",
        "token_lifetime": "seconds an access token stays valid",
        "task_delay": "seconds before an async batch task is applied and finished",
        "max_concurrency": "requests served at once; one more gets 429",
        "daily_quota": "authenticated calls allowed before every call gets 429 "
        "(default: unlimited)",
        "recipient_id_field": "the Person Data field that is the recipient ID",
        "max_body_bytes": "largest request body; a larger one gets 413",
        "task_status_words": "status of unfinished tasks: 'standard' (queued, "
        "then running), or one word such as 'pending' or 'IN_PROGRESS'",
        "task_polls_before_done": "status polls a task answers unfinished "
        "before it is applied, even with no task delay",
        "task_result_shape": "task details.result: 'structured' (counts and "
        "per-entry errors), 'string' (e.g. 'Processed 10 entries'; refused "
        "entries are skipped silently) or 'missing' (no details)",
        "task_path": "where task status is served: 'recipients' "
        "(GET /recipients/v2/task/{id}) or 'messages' (GET /messages/v2/task/{id})",
        "quota_code": "error code of the daily-quota 429; empty makes it "
        "identical to the concurrency 429 (TOO_MANY_REQUESTS)",
        "basic_auth": "accept HTTP Basic (developer key and secret) on API calls "
        "besides bearer tokens",
        "group_api": "serve the static target group add/remove endpoints",
        "known_events": "comma-separated event names that exist; other names "
        "get 404 (default: any name)",
    }
    fault_kinds = (*EmulatorServer.fault_kinds, "expire_token")
    write_methods = frozenset({"POST", "PUT", "DELETE"})
    unwritten_routes = frozenset({TOKEN_ROUTE})

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        developer_key: str = "demo-key",
        developer_secret: str = "demo-secret",
        token_lifetime: float = 7200.0,
        task_delay: float = 0.0,
        max_concurrency: int = 20,
        daily_quota: int | None = None,
        recipient_id_field: str = "EMAIL",
        max_body_bytes: int = MAX_BODY_BYTES,
        task_status_words: str = "standard",
        task_polls_before_done: int = 0,
        task_result_shape: str = "structured",
        task_path: str = "recipients",
        quota_code: str = "DAILY_QUOTA_EXCEEDED",
        basic_auth: bool = True,
        group_api: bool = True,
        known_events: Iterable[str] | None = None,
        person_fields: Iterable[tuple[str, str]] = DEFAULT_PERSON_FIELDS,
        latency: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(host, port, latency=latency, seed=seed)
        self.developer_key = developer_key
        self.developer_secret = developer_secret
        self.token_lifetime = token_lifetime
        self.task_delay = task_delay
        self.max_concurrency = max_concurrency
        self.daily_quota = daily_quota
        self.recipient_id_field = recipient_id_field
        self.max_body_bytes = max_body_bytes
        self.task_status_words = unfinished_word(task_status_words)
        self.task_polls_before_done = task_polls_before_done
        self.task_result_shape = as_result_shape(task_result_shape)
        self.task_path = as_task_path(task_path)
        self.quota_code = quota_code
        self.basic_auth = basic_auth
        self.group_api = group_api
        self.known_events = optional_names(known_events)
        self.person_fields: dict[str, str] = dict(person_fields)
        self._register_routes()
        self._reset_data()

    # -- state access (applies due tasks first) --------------------------

    @property
    def recipients(self) -> dict[str, PersonData]:
        """Recipient id → personData."""
        with self._lock:
            self._tick()
            return self._recipients

    @property
    def otm_tables(self) -> dict[str, dict[str, Any]]:
        """Table name → {"fields": [...], "rows": {recipient id: {row id: row}}}."""
        with self._lock:
            self._tick()
            return self._otm_tables

    @property
    def tasks(self) -> dict[str, Task]:
        with self._lock:
            self._tick()
            return self._tasks

    # -- helpers for tests -----------------------------------------------

    def add_group(self, name: str, static: bool = True, description: str = "") -> None:
        with self._lock:
            self.target_groups[name] = {
                "description": description,
                "static": static,
                "global": False,
                "members": set(),
            }

    def add_otm_table(self, name: str, fields: Iterable[dict[str, Any]]) -> None:
        """Add a table; exactly one field must be the identifier."""
        fields = [dict(f) for f in fields]
        if sum(bool(f.get("identifier")) for f in fields) != 1:
            raise ValueError("an OTM table needs exactly one identifier field")
        with self._lock:
            self._otm_tables[name] = {"fields": fields, "rows": {}}

    def members(self, group: str) -> set[str]:
        """Recipient IDs in `group` (no API call lists them)."""
        with self._lock:
            return set(self._group(group)["members"])

    def remove_member(self, group: str, recipient_id: str) -> None:
        """Take a recipient out of a group behind the client's back."""
        with self._lock:
            self._group(group)["members"].discard(recipient_id)

    def fired(self, event: str | None = None) -> list[FiredEvent]:
        """Every event fired (repeats included), optionally only those named `event`."""
        with self._lock:
            return [e for e in self.fired_events if event in (None, e.event)]

    def refuse(
        self, predicate: Callable[[PersonData], bool], message: str = "refused by rule"
    ) -> None:
        """Reject recipients for which `predicate(personData)` is true."""
        with self._lock:
            self.refuse_rules.append((predicate, message))

    def upserted_ids(self, since: int = 0) -> list[str]:
        """Recipient IDs of every accepted batch-upsert entry, from request ``since``.

        Lets tests count what a run sent (e.g. only the changed records).
        """
        with self._lock:
            return [
                entry["personData"].get(self.recipient_id_field)
                for request in self.requests[since:]
                if request.route == UPSERT_ROUTE and request.status == 202
                for entry in request.body["recipients"]
            ]

    def fail_next_tasks(self, n: int) -> None:
        """The next `n` created tasks end `failed` and apply nothing."""
        with self._lock:
            self._doomed_tasks = n

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    @override
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            return {
                **super().snapshot(),
                "recipients": self._recipients,
                "tasks": {i: self._task_body(t, now) for i, t in self._tasks.items()},
                "target_groups": {
                    name: {**group, "members": sorted(group["members"])}
                    for name, group in self.target_groups.items()
                },
                "otm_tables": self._otm_tables,
                "fired_events": [asdict(event) for event in self.fired_events],
                "tokens_issued": self.tokens_issued,
                "quota_used": self.quota_used,
            }

    # -- base hooks --------------------------------------------------------

    @override
    def error(self, status: int, message: str, code: str | None = None) -> Response:
        body = {
            "status": status,
            "code": code or status_word(status),
            "message": message,
        }
        return Response(status, body)

    @override
    def _reset_data(self) -> None:
        self._recipients: dict[str, PersonData] = {}
        self._tasks: dict[str, Task] = {}
        self._otm_tables: dict[str, dict[str, Any]] = {}
        self.target_groups: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, float] = {}  # token → monotonic expiry
        self.tokens_issued = 0
        self.quota_used = 0
        self.refuse_rules: list[RefuseRule] = []
        self.fired_events: list[FiredEvent] = []
        self._doomed_tasks = 0
        self.add_otm_table("ORDERS", DEFAULT_OTM_FIELDS)

    @override
    def _tick(self) -> None:
        """Apply every task that is due by time and polls, in creation order."""
        now = time.monotonic()
        for task in self._tasks.values():
            if (
                task.status is None
                and now - task.created >= self.task_delay
                and task.polls >= self.task_polls_before_done
            ):
                self._run(task)

    @override
    def _gate(self, request: Request) -> Response | None:
        """Concurrency, body size, credentials, then the daily quota."""
        if request.in_flight > self.max_concurrency:
            return self._busy()
        if request.too_large:
            return self.error(413, f"request body exceeds {self.max_body_bytes} bytes")
        if request.route == TOKEN_ROUTE:
            return None
        problem = self._auth_problem(request)
        if problem:
            return self.error(401, problem)
        if self.daily_quota is not None and self.quota_used >= self.daily_quota:
            if not self.quota_code:
                return self._busy()
            return self.error(429, "daily call quota spent", self.quota_code)
        self.quota_used += 1
        return None

    def _busy(self) -> Response:
        """The plain 429: without a quota code every limit answers this."""
        return self.error(429, "too many concurrent requests")

    def _auth_problem(self, request: Request) -> str | None:
        """Why the request's credentials are refused, None when they are fine."""
        credentials = basic_credentials(request.headers)
        if credentials is None and not self._token_valid(request):
            return "missing, unknown or expired access token"
        if credentials is None:
            return None
        if not self.basic_auth:
            return "HTTP Basic is not accepted; use a bearer token"
        if credentials != (self.developer_key, self.developer_secret):
            return "bad developer key or secret"
        return None

    def _token_valid(self, request: Request) -> bool:
        """True for a known bearer token that has not expired (expired ones go)."""
        token = _bearer(request) or ""
        expires = self.tokens.get(token)
        if expires is not None and expires <= time.monotonic():
            del self.tokens[token]
            expires = None
        return expires is not None

    @override
    def _fault_applies(self, fault: Fault, request: Request) -> bool:
        return fault.kind != "expire_token" or request.route != TOKEN_ROUTE

    @override
    def _custom_fault(self, fault: Fault, request: Request) -> Response:
        """expire_token: the presented token stops being valid, as if it aged out."""
        self.tokens.pop(_bearer(request) or "", None)
        return self.error(401, "access token expired")

    @override
    def _config_actions(self) -> dict[str, Callable[[Any], None]]:
        return {
            **super()._config_actions(),
            "refuse": self._configure_refuse,
            "add_group": lambda spec: self.add_group(**spec),
            "add_otm_table": lambda spec: self.add_otm_table(**spec),
            "fail_next_tasks": lambda n: self.fail_next_tasks(int(n)),
            "expire_tokens": lambda expire: self.expire_tokens() if expire else None,
            "remove_member": lambda spec: self.remove_member(**spec),
        }

    def _configure_refuse(self, specs: Any) -> None:
        """Replace the refuse rules with `{"field", "equals"|"contains"}` specs."""
        specs = [] if specs is None else specs
        specs = [specs] if isinstance(specs, dict) else specs
        self.refuse_rules = [
            (_rule_predicate(s), s.get("message", "refused by rule")) for s in specs
        ]

    # -- routes --------------------------------------------------------------

    def _register_routes(self) -> None:
        self.route("POST", "/oauth2/token", self._token)
        self.route("GET", "/discovery/persondata", self._persondata)
        self.route("GET", "/discovery/targetgroups", self._groups)
        self.route("GET", "/discovery/onetomany", self._otm_names)
        self.route("GET", "/discovery/onetomany/{table}", self._otm_table)
        self.route("GET", "/recipients", self._list)
        self.route("POST", "/recipients", self._create)
        self.route("POST", "/recipients/v2/:upsert", self._upsert)
        for prefix in ("recipients", "messages"):
            self.route(
                "GET",
                f"/{prefix}/v2/task/{{task_id}}",
                self._task,
                when=partial(self._serves_tasks_at, prefix),
            )
        self.route("POST", "/recipients/v2/oneToManyTables/:upsert", self._otm_upsert)
        self.route(
            "POST",
            "/recipients/:addToStaticTargetGroup",
            lambda request: self._group_change(request, add=True),
            when=lambda: self.group_api,
        )
        self.route(
            "POST",
            "/recipients/:removeFromStaticTargetGroup",
            lambda request: self._group_change(request, add=False),
            when=lambda: self.group_api,
        )
        self.route(
            "POST", "/recipients/{id}/events/{event}/:achieveWithContext", self._event
        )
        self.route("GET", "/recipients/{id}/oneToManyTables/{table}", self._otm_rows)
        self.route("GET", "/recipients/{id}", self._read)
        self.route("PUT", "/recipients/{id}", self._put)
        self.route("DELETE", "/recipients/{id}", self._delete)

    def _serves_tasks_at(self, prefix: str) -> bool:
        return self.task_path == prefix

    def _token(self, request: Request) -> Response:
        form = {
            k: v[-1] for k, v in parse_qs(request.raw.decode(errors="replace")).items()
        }
        grant = form.get("grant_type")
        if grant != "client_credentials":
            error = "unsupported_grant_type" if grant else "invalid_request"
            return Response(400, {"error": error})
        credentials = basic_credentials(request.headers) or (
            form.get("client_id"),
            form.get("client_secret"),
        )
        if credentials != (self.developer_key, self.developer_secret):
            return Response(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_lifetime
        self.tokens_issued += 1
        body = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(self.token_lifetime),
        }
        return Response(200, body, {"Cache-Control": "no-store"})

    def _persondata(self, request: Request) -> Response:
        fields = [
            {"name": name, "type": kind, "identifier": name == self.recipient_id_field}
            for name, kind in self.person_fields.items()
        ]
        return Response(200, fields)

    def _list(self, request: Request) -> Response:
        """Recipients matching `filter` (all without one), paged, in insertion order."""
        try:
            rsql = self._list_filter(request)
            page_size = _query_int(request, "pageSize", DEFAULT_PAGE_SIZE)
            start = _query_int(request, "pageStart", 0)
        except ValueError as exc:
            return self.error(400, str(exc))
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            return self.error(400, f"pageSize must be 1..{MAX_PAGE_SIZE}")
        if start < 0:
            return self.error(400, "pageStart must be 0 or more")
        found = [
            {"personData": person}
            for person in self._recipients.values()
            if rsql is None or _matches(person, rsql)
        ]
        return Response(200, found[start : start + page_size])

    def _list_filter(self, request: Request) -> Filter | None:
        """The parsed `filter` parameter; ValueError when malformed or unknown."""
        text = request.query.get("filter")
        if text is None:
            return None
        rsql = parse_rsql(text[-1])
        unknown = self._unknown_fields(name for ands in rsql for name, _ in ands)
        if unknown:
            raise ValueError(unknown)
        return rsql

    def _event(self, request: Request) -> Response:
        """Fire an event for one recipient; the `{}` success body is assumed."""
        parameters = _context_parameters(request)
        if parameters is None:
            return self.error(
                400, 'body must be {"context_parameters": {NAME: scalar, ...}}'
            )
        recipient_id, event = request.params["id"], request.params["event"]
        if recipient_id not in self._recipients:
            return self.error(404, "recipient not found")
        if self.known_events is not None and event not in self.known_events:
            return self.error(404, f"event {event} not found")
        self.fired_events.append(
            FiredEvent(recipient_id, event, parameters, time.time())
        )
        return Response(200, {})

    def _create(self, request: Request) -> Response:
        person = _person_data(request.json)
        if person is None:
            return self.error(400, 'body must be {"personData": {...}}')
        problem = (
            self._unknown_fields(person)
            or self._missing_id(person)
            or self._refusal(person)
        )
        if problem:
            return self.error(400, problem)
        recipient_id = str(person[self.recipient_id_field])
        if recipient_id in self._recipients:
            return self.error(409, f"recipient {recipient_id} exists")
        self._recipients[recipient_id] = dict(person)
        return Response(201, {"personData": person})

    def _put(self, request: Request) -> Response:
        recipient_id = request.params["id"]
        person = _person_data(request.json)
        if person is None:
            return self.error(400, 'body must be {"personData": {...}}')
        unknown = self._unknown_fields(person)
        if unknown:
            return self.error(400, unknown)
        given = person.get(self.recipient_id_field)
        if not _blank(given) and str(given) != recipient_id:
            return self.error(
                409, f"{self.recipient_id_field} differs from the path id"
            )
        person = {**person, self.recipient_id_field: given or recipient_id}
        refusal = self._refusal(person)
        if refusal:
            return self.error(400, refusal)
        existed = recipient_id in self._recipients
        merged = {**self._recipients.get(recipient_id, {}), **person}
        self._recipients[recipient_id] = merged
        return Response(200 if existed else 201, {"personData": merged})

    def _read(self, request: Request) -> Response:
        person = self._recipients.get(request.params["id"])
        if person is None:
            return self.error(404, "recipient not found")
        return Response(200, {"personData": person})

    def _delete(self, request: Request) -> Response:
        recipient_id = request.params["id"]
        if self._recipients.pop(recipient_id, None) is None:
            return self.error(404, "recipient not found")
        for group in self.target_groups.values():
            group["members"].discard(recipient_id)
        for table in self._otm_tables.values():
            table["rows"].pop(recipient_id, None)
        return Response(200, {})

    def _upsert(self, request: Request) -> Response:
        body = request.json
        entries = body.get("recipients") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_BATCH:
            return self.error(400, f"recipients must hold 1..{MAX_BATCH} entries")
        return self._new_task("recipients", entries)

    def _task(self, request: Request) -> Response:
        task = self._tasks.get(request.params["task_id"])
        if task is None:
            return self.error(404, "task not found")
        task.polls += 1
        return Response(200, self._task_body(task, time.monotonic()))

    def _groups(self, request: Request) -> Response:
        groups = [
            {"name": name, **{k: v for k, v in group.items() if k != "members"}}
            for name, group in self.target_groups.items()
        ]
        return Response(200, groups)

    def _group(self, name: str) -> dict[str, Any]:
        if name not in self.target_groups:
            raise ValueError(f"no target group {name!r}")
        return self.target_groups[name]

    def _group_change(self, request: Request, add: bool) -> Response:
        body = request.json if isinstance(request.json, dict) else {}
        name, ids = body.get("targetGroupName"), body.get("recipientIds")
        if not isinstance(name, str) or not isinstance(ids, list):
            return self.error(400, "targetGroupName and recipientIds are required")
        group = self.target_groups.get(name)
        if group is None:
            return self.error(404, f"target group {name} not found")
        if not group["static"]:
            return self.error(400, f"target group {name} is not static")
        if not 1 <= len(ids) <= MAX_GROUP_IDS:
            return self.error(400, f"recipientIds must hold 1..{MAX_GROUP_IDS} ids")
        errors = []
        for recipient_id in map(str, ids):
            if recipient_id not in self._recipients:
                errors.append(
                    {
                        "recipientId": recipient_id,
                        "code": "NOT_FOUND",
                        "message": "recipient not found",
                    }
                )
            elif add:
                group["members"].add(recipient_id)
            else:
                group["members"].discard(recipient_id)
        return Response(200, {"processed": len(ids), "errors": errors})

    def _otm_names(self, request: Request) -> Response:
        return Response(200, list(self._otm_tables))

    def _otm_table(self, request: Request) -> Response:
        name = request.params["table"]
        if name not in self._otm_tables:
            return self.error(404, f"one-to-many table {name} not found")
        return Response(200, {"name": name, "fields": self._otm_tables[name]["fields"]})

    def _otm_rows(self, request: Request) -> Response:
        recipient_id, name = request.params["id"], request.params["table"]
        if recipient_id not in self._recipients:
            return self.error(404, "recipient not found")
        if name not in self._otm_tables:
            return self.error(404, f"one-to-many table {name} not found")
        rows = self._otm_tables[name]["rows"].get(recipient_id, {})
        return Response(200, {"recordList": list(rows.values())})

    def _otm_upsert(self, request: Request) -> Response:
        body = request.json if isinstance(request.json, dict) else {}
        name = body.get("oneToManyTableId")
        if not isinstance(name, str):
            return self.error(400, "oneToManyTableId is required")
        if name not in self._otm_tables:
            return self.error(404, f"one-to-many table {name} not found")
        rows = _otm_rows(body.get("recipients"))
        if rows is None:
            return self.error(400, 'recipients must be [{"recipientId", "records"}]')
        if not 1 <= len(rows) <= MAX_BATCH:
            return self.error(400, f"a request must hold 1..{MAX_BATCH} rows")
        return self._new_task("otm", rows, table=name)

    # -- validation --------------------------------------------------------

    def _unknown_fields(self, names: Iterable[str]) -> str | None:
        """A message naming the fields the instance lacks (names or a personData)."""
        unknown = sorted(set(names) - set(self.person_fields))
        return f"unknown field(s): {', '.join(unknown)}" if unknown else None

    def _missing_id(self, person: PersonData) -> str | None:
        if _blank(person.get(self.recipient_id_field)):
            return f"{self.recipient_id_field} (the recipient ID) is required"
        return None

    def _refusal(self, person: PersonData) -> str | None:
        for predicate, message in self.refuse_rules:
            if predicate(person):
                return message
        return None

    # -- tasks ---------------------------------------------------------------

    def _new_task(
        self, kind: str, entries: list[Any], table: str | None = None
    ) -> Response:
        task_id = f"t-{len(self._tasks) + 1}"
        doomed = self._doomed_tasks > 0
        if doomed:
            self._doomed_tasks -= 1
        self._tasks[task_id] = Task(
            task_id, kind, time.monotonic(), entries, table, doomed
        )
        return Response(202, {"taskId": task_id})

    def _task_body(self, task: Task, now: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            "taskId": task.task_id,
            "status": task.status or self._unfinished_status(task, now),
        }
        if self.task_result_shape != "missing":
            body["details"] = {"result": self._task_result(task)}
        return body

    def _unfinished_status(self, task: Task, now: float) -> str:
        if self.task_status_words != "standard":
            return self.task_status_words
        return "queued" if now - task.created < self.task_delay / 2 else "running"

    def _task_result(self, task: Task) -> Any:
        """The result in `task_result_shape`; a string hides per-entry failures."""
        if self.task_result_shape == "structured":
            return task.result
        if task.status == "failed":
            return "Processing failed, no entries applied"
        return f"Processed {task.result['processed']} entries"

    def _run(self, task: Task) -> None:
        if task.doomed:
            task.status = "failed"
            task.result = {**_empty_result(), "failed": len(task.entries)}
            return
        if task.kind == "recipients":
            task.result = self._apply_recipients(task.entries)
        else:
            task.result = self._apply_otm(task.table or "", task.entries)
        task.status = "completed"

    def _apply_recipients(self, entries: list[Any]) -> dict[str, Any]:
        result = _empty_result()
        for index, entry in enumerate(entries):
            person = _person_data(entry) or {}
            failure = self._entry_failure(person)
            if failure:
                result["errors"].append(
                    _entry_error(index, self._id_of(person), *failure)
                )
                continue
            recipient_id = str(person[self.recipient_id_field])
            result["updated" if recipient_id in self._recipients else "created"] += 1
            self._recipients[recipient_id] = {
                **self._recipients.get(recipient_id, {}),
                **copy.deepcopy(person),
            }
        result["processed"] = len(entries)
        result["failed"] = len(result["errors"])
        return result

    def _entry_failure(self, person: PersonData) -> tuple[str, str] | None:
        """(code, message) for a batch entry that must not be applied."""
        problem = self._unknown_fields(person) or self._missing_id(person)
        if problem:
            return "INVALID_FIELD", problem
        refusal = self._refusal(person)
        return ("REFUSED", refusal) if refusal else None

    def _id_of(self, person: PersonData) -> str | None:
        value = person.get(self.recipient_id_field)
        return None if _blank(value) else str(value)

    def _apply_otm(self, name: str, rows: list[tuple[str, Any]]) -> dict[str, Any]:
        table = self._otm_tables[name]
        key = next(f["name"] for f in table["fields"] if f.get("identifier"))
        known = {f["name"] for f in table["fields"]}
        result = _empty_result()
        for index, (recipient_id, record) in enumerate(rows):
            failure = self._row_failure(recipient_id, record, key, known)
            if failure:
                result["errors"].append(_entry_error(index, recipient_id, *failure))
                continue
            stored = table["rows"].setdefault(recipient_id, {})
            row_id = str(record[key])
            result["updated" if row_id in stored else "created"] += 1
            stored[row_id] = {**stored.get(row_id, {}), **copy.deepcopy(record)}
        result["processed"] = len(rows)
        result["failed"] = len(result["errors"])
        return result

    def _row_failure(
        self, recipient_id: str, record: Any, key: str, known: set[str]
    ) -> tuple[str, str] | None:
        if recipient_id not in self._recipients:
            return "NOT_FOUND", "recipient not found"
        if not isinstance(record, dict) or _blank(record.get(key)):
            return "INVALID_FIELD", f"row needs its identifier field {key}"
        unknown = sorted(set(record) - known)
        if unknown:
            return "INVALID_FIELD", f"unknown field(s): {', '.join(unknown)}"
        return None


def _entry_error(
    index: int, recipient_id: str | None, code: str, message: str
) -> dict[str, Any]:
    return {
        "index": index,
        "recipientId": recipient_id,
        "code": code,
        "message": message,
    }


def _otm_rows(recipients: Any) -> list[tuple[str, Any]] | None:
    """Flatten `[{"recipientId", "records": [...]}]` into rows in request order."""
    if not isinstance(recipients, list):
        return None
    rows: list[tuple[str, Any]] = []
    for entry in recipients:
        if not isinstance(entry, dict) or not isinstance(entry.get("records"), list):
            return None
        rows.extend((str(entry.get("recipientId")), r) for r in entry["records"])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(AgillicEmulator, argv)


if __name__ == "__main__":
    sys.exit(main())
