"""Agillic REST API emulator, per /work/shared/api-contracts.md ("Agillic").

Run standalone: `python -m delivery_emulators.agillic --port 8765 --task-delay 0.5`.
"""

from __future__ import annotations

import copy
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs

from delivery_emulators.base import (
    EmulatorServer,
    Fault,
    Request,
    Response,
    basic_credentials,
    optional_int,
    run_cli,
    status_word,
)

TOKEN_ROUTE = "POST /oauth2/token"
UPSERT_ROUTE = "POST /recipients/v2/:upsert"
MAX_BATCH = 1000
MAX_GROUP_IDS = 100
MAX_BODY_BYTES = 20 * 1024 * 1024
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


def _blank(value: Any) -> bool:
    return value is None or value == ""


def _person_data(body: Any) -> PersonData | None:
    """The `personData` object of a recipient body, None when malformed."""
    person = body.get("personData") if isinstance(body, dict) else None
    return person if isinstance(person, dict) else None


def _bearer(request: Request) -> str | None:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _rule_predicate(spec: dict[str, Any]) -> Callable[[PersonData], bool]:
    """Build a refuse predicate from `{"field", "equals" | "contains"}`."""
    name = spec["field"]
    if "equals" in spec:
        return lambda person: person.get(name) == spec["equals"]
    needle = str(spec["contains"])
    return lambda person: isinstance(person.get(name), str) and needle in person[name]


class AgillicEmulator(EmulatorServer):
    """In-memory Agillic instance: OAuth2, recipients, async batches, groups, OTM.

    The daily quota (`quota_used`) counts authenticated calls that passed the
    concurrency and body-size checks; token calls never count. Faults fire
    before any check, so a faulted request applies nothing.
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
                "tokens_issued": self.tokens_issued,
                "quota_used": self.quota_used,
            }

    # -- base hooks --------------------------------------------------------

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        body = {
            "status": status,
            "code": code or status_word(status),
            "message": message,
        }
        return Response(status, body)

    def _reset_data(self) -> None:
        self._recipients: dict[str, PersonData] = {}
        self._tasks: dict[str, Task] = {}
        self._otm_tables: dict[str, dict[str, Any]] = {}
        self.target_groups: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, float] = {}  # token → monotonic expiry
        self.tokens_issued = 0
        self.quota_used = 0
        self.refuse_rules: list[RefuseRule] = []
        self._doomed_tasks = 0
        self.add_otm_table("ORDERS", DEFAULT_OTM_FIELDS)

    def _tick(self) -> None:
        """Apply every task whose delay has passed, in creation order."""
        now = time.monotonic()
        for task in self._tasks.values():
            if task.status is None and now - task.created >= self.task_delay:
                self._run(task)

    def _gate(self, request: Request) -> Response | None:
        """Concurrency, body size, bearer token, then the daily quota."""
        if request.in_flight > self.max_concurrency:
            return self.error(429, "too many concurrent requests")
        if request.too_large:
            return self.error(413, f"request body exceeds {self.max_body_bytes} bytes")
        if request.route == TOKEN_ROUTE:
            return None
        if not self._authorized(request):
            return self.error(401, "missing, unknown or expired access token")
        if self.daily_quota is not None and self.quota_used >= self.daily_quota:
            return self.error(429, "daily call quota spent", "DAILY_QUOTA_EXCEEDED")
        self.quota_used += 1
        return None

    def _authorized(self, request: Request) -> bool:
        """True for a known bearer token that has not expired (expired ones go)."""
        token = _bearer(request) or ""
        expires = self.tokens.get(token)
        if expires is not None and expires <= time.monotonic():
            del self.tokens[token]
            expires = None
        return expires is not None

    def _fault_applies(self, fault: Fault, request: Request) -> bool:
        return fault.kind != "expire_token" or request.route != TOKEN_ROUTE

    def _custom_fault(self, fault: Fault, request: Request) -> Response:
        """expire_token: the presented token stops being valid, as if it aged out."""
        self.tokens.pop(_bearer(request) or "", None)
        return self.error(401, "access token expired")

    def _config_actions(self) -> dict[str, Callable[[Any], None]]:
        return {
            **super()._config_actions(),
            "refuse": self._configure_refuse,
            "add_group": lambda spec: self.add_group(**spec),
            "add_otm_table": lambda spec: self.add_otm_table(**spec),
            "fail_next_tasks": lambda n: self.fail_next_tasks(int(n)),
            "expire_tokens": lambda expire: self.expire_tokens() if expire else None,
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
        self.route("POST", "/recipients", self._create)
        self.route("POST", "/recipients/v2/:upsert", self._upsert)
        self.route("GET", "/recipients/v2/task/{task_id}", self._task)
        self.route("POST", "/recipients/v2/oneToManyTables/:upsert", self._otm_upsert)
        self.route(
            "POST",
            "/recipients/:addToStaticTargetGroup",
            lambda request: self._group_change(request, add=True),
        )
        self.route(
            "POST",
            "/recipients/:removeFromStaticTargetGroup",
            lambda request: self._group_change(request, add=False),
        )
        self.route("GET", "/recipients/{id}/oneToManyTables/{table}", self._otm_rows)
        self.route("GET", "/recipients/{id}", self._read)
        self.route("PUT", "/recipients/{id}", self._put)
        self.route("DELETE", "/recipients/{id}", self._delete)

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
        return Response(200, self._task_body(task, time.monotonic()))

    def _groups(self, request: Request) -> Response:
        groups = [
            {"name": name, **{k: v for k, v in group.items() if k != "members"}}
            for name, group in self.target_groups.items()
        ]
        return Response(200, groups)

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

    def _unknown_fields(self, person: PersonData) -> str | None:
        unknown = sorted(set(person) - set(self.person_fields))
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
        status = task.status
        if status is None:
            early = now - task.created < self.task_delay / 2
            status = "queued" if early else "running"
        return {
            "taskId": task.task_id,
            "status": status,
            "details": {"result": task.result},
        }

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
