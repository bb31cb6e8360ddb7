"""Agillic API shapes this target assumes (see docs/api-contracts.md).

The batch-upsert body, task status and error bodies are not publicly
documented; they are fixed here, in one place, and parsed leniently (unknown
fields ignored, error bodies never required to parse, unknown task statuses
read as still running) so a real instance that differs needs a change in
this module only.
"""

from __future__ import annotations

import re
import typing as t
import urllib.parse
from dataclasses import dataclass, field

import requests

from singer_delivery.http import json_body
from singer_delivery.serialization import dumps, join_json

TOKEN_PATH = "/oauth2/token"
RECIPIENTS_PATH = "/recipients"
UPSERT_PATH = "/recipients/v2/:upsert"
TASK_PATH = "/recipients/v2/task/{task_id}"
#: Task statuses that end a task; any other word (queued, running, pending,
#: IN_PROGRESS...) means it is still running.
TERMINAL_STATUSES = frozenset({"completed", "failed"})
LIST_PATH = "/recipients"
#: Recipient IDs per filtered list query: keeps the URL well under 8 KB.
LIST_PAGE = 50
PERSONDATA_PATH = "/discovery/persondata"
TARGET_GROUPS_PATH = "/discovery/targetgroups"
GROUP_PATHS = {
    "add": "/recipients/:addToStaticTargetGroup",
    "remove": "/recipients/:removeFromStaticTargetGroup",
}
OTM_TABLE_PATH = "/discovery/onetomany/{table}"
OTM_UPSERT_PATH = "/recipients/v2/oneToManyTables/:upsert"
OTM_ROWS_PATH = "/recipients/{recipient}/oneToManyTables/{table}"
EVENT_PATH = "/recipients/{recipient}/events/{event}/:achieveWithContext"

MAX_GROUP_IDS = 100
MAX_BODY_BYTES = 20 * 1024 * 1024
QUOTA_CODE = "DAILY_QUOTA_EXCEEDED"


def recipient_path(recipient_id: str) -> str:
    """A recipient's URL path, its ID percent-encoded (``@`` → ``%40``)."""
    return f"{RECIPIENTS_PATH}/{urllib.parse.quote(recipient_id, safe='')}"


def error_of(response: requests.Response) -> tuple[str, str]:
    """(code, message) from an error body, with fallbacks for any body."""
    body = json_body(response)
    if isinstance(body, dict):
        code = body.get("code") or body.get("error") or f"HTTP_{response.status_code}"
        message = body.get("message") or body.get("error_description") or str(code)
        return str(code), str(message)
    return f"HTTP_{response.status_code}", response.reason or "no message"


def quota_exhausted(response: requests.Response) -> str | None:
    """A stop message when the daily call quota is spent (repeating is pointless)."""
    if response.status_code != 429:
        return None
    code, message = error_of(response)
    if code != QUOTA_CODE:
        return None
    return (
        f"Agillic's daily API quota is spent ({QUOTA_CODE}: {message}). The run "
        "stopped; nothing after the last STATE was lost. Run again after the "
        "quota resets, or ask Agillic to raise it."
    )


@dataclass(frozen=True)
class EntryError:
    """One refused entry of a batch task; ``index`` is its request position."""

    index: int
    code: str
    message: str
    recipient_id: str | None = None


@dataclass(frozen=True)
class TaskStatus:
    """The parts of a task status this target uses.

    ``verified`` is True only when the task listed its per-entry errors (an
    empty list included): then every entry not listed was applied. A task
    that completes without them proves nothing about single entries.
    """

    status: str
    created: int = 0
    updated: int = 0
    errors: tuple[EntryError, ...] = field(default_factory=tuple)
    verified: bool = True
    shape: str = ""

    @property
    def finished(self) -> bool:
        """``completed`` (maybe with per-entry errors) or ``failed`` (none applied)."""
        return self.status in TERMINAL_STATUSES


def task_id_of(response: requests.Response) -> str | None:
    """The task id of a 202 answer, or None when the body lacks it."""
    body = json_body(response)
    if isinstance(body, dict) and body.get("taskId") is not None:
        return str(body["taskId"])
    return None


def _dict(value: t.Any) -> dict[str, t.Any]:
    return value if isinstance(value, dict) else {}


def _as_int(value: t.Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_task(response: requests.Response) -> TaskStatus:
    """Read a task status body, tolerating missing and unexpected parts."""
    body = json_body(response)
    if not isinstance(body, dict):
        return TaskStatus(status="unknown", verified=False, shape="not a JSON object")
    details = _dict(body.get("details"))
    raw = details.get("result")
    result = _dict(raw)
    entries = result.get("errors")
    errors = tuple(
        EntryError(
            index=_as_int(e.get("index")),
            code=str(e.get("code") or "ERROR"),
            message=str(e.get("message") or e.get("code") or "refused"),
            recipient_id=e.get("recipientId"),
        )
        for e in entries or []
        if isinstance(e, dict) and e.get("index") is not None
    )
    return TaskStatus(
        status=str(body.get("status") or "unknown").lower(),
        created=_as_int(result.get("created")),
        updated=_as_int(result.get("updated")),
        errors=errors,
        # an error that does not say which entry it is about leaves every
        # entry of the batch in doubt
        verified=isinstance(entries, list) and len(errors) == len(entries),
        shape=describe_result(raw),
    )


def describe_result(raw: t.Any) -> str:
    """The shape of ``details.result`` in words, without its content
    (a string result could hold recipient IDs)."""
    if raw is None:
        return "no details.result"
    if isinstance(raw, dict):
        return f"details.result object with keys {', '.join(sorted(map(str, raw)))}"
    return f"details.result of type {type(raw).__name__}"


def list_filter(field_name: str, recipient_ids: t.Sequence[str]) -> str:
    """An RSQL filter matching any of the IDs: ``EMAIL=="a@x.com",EMAIL=="b@x.com"``."""
    return ",".join(f"{field_name}=={_rsql_quote(value)}" for value in recipient_ids)


def _rsql_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def person_data_of(response: requests.Response) -> dict[str, t.Any] | None:
    """The Person Data of a single-recipient answer."""
    data = _dict(json_body(response)).get("personData")
    return data if isinstance(data, dict) else None


def listed_recipients(response: requests.Response) -> list[dict[str, t.Any]]:
    """Person Data from a list answer: ``[{"personData": {...}}, ...]``."""
    body = json_body(response)
    entries = body if isinstance(body, list) else _dict(body).get("recipients") or []
    return [
        entry["personData"]
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("personData"), dict)
    ]


def persondata_fields(response: requests.Response) -> list[str]:
    """Field names from the Person Data discovery answer."""
    body = json_body(response)
    if not isinstance(body, list):
        return []
    return [str(f["name"]) for f in body if isinstance(f, dict) and "name" in f]


@dataclass(frozen=True)
class TargetGroup:
    """A target group as discovery lists it."""

    name: str
    static: bool


def target_groups(response: requests.Response) -> list[TargetGroup]:
    """Groups from ``GET /discovery/targetgroups``."""
    body = json_body(response)
    if not isinstance(body, list):
        return []
    return [
        TargetGroup(name=str(g["name"]), static=g.get("static") is True)
        for g in body
        if isinstance(g, dict) and "name" in g
    ]


def group_errors(response: requests.Response) -> dict[str, tuple[str, str]]:
    """Per-recipient errors of a group change: {recipient ID: (code, message)}."""
    body = _dict(json_body(response))
    errors: dict[str, tuple[str, str]] = {}
    for error in body.get("errors") or []:
        if isinstance(error, dict) and error.get("recipientId") is not None:
            code = str(error.get("code") or "ERROR")
            errors[str(error["recipientId"])] = (
                code,
                str(error.get("message") or code),
            )
    return errors


@dataclass(frozen=True)
class OneToManyTable:
    """A one-to-many table's fields and the one that keys rows per recipient."""

    name: str
    fields: tuple[str, ...]
    identifier: str | None


def one_to_many_table(name: str, response: requests.Response) -> OneToManyTable:
    """Read ``GET /discovery/onetomany/{TABLE}``."""
    body = _dict(json_body(response))
    fields = [
        f for f in body.get("fields") or [] if isinstance(f, dict) and "name" in f
    ]
    identifier = next(
        (str(f["name"]) for f in fields if f.get("identifier") is True), None
    )
    return OneToManyTable(
        name=name, fields=tuple(str(f["name"]) for f in fields), identifier=identifier
    )


def otm_rows_path(recipient_id: str, table: str) -> str:
    """Where one recipient's rows of a table are read."""
    return OTM_ROWS_PATH.format(
        recipient=urllib.parse.quote(recipient_id, safe=""),
        table=urllib.parse.quote(table, safe=""),
    )


def event_path(recipient_id: str, event: str) -> str:
    """Where an event is fired for one recipient (both segments percent-encoded)."""
    return EVENT_PATH.format(
        recipient=urllib.parse.quote(recipient_id, safe=""),
        event=urllib.parse.quote(event, safe=""),
    )


def event_body(context_parameters: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """``{"context_parameters": {NAME: value, ...}}`` (third-party shape)."""
    return {"context_parameters": dict(context_parameters)}


def names_event(response: requests.Response, event: str) -> bool:
    """Whether a 404 from firing an event is about the event, not the recipient.

    Both answer 404 ``NOT_FOUND`` (assumed); only the message tells them
    apart. An error naming the event as a whole word (``event ORDER_PLACED
    not found``) means the event is unknown; any other 404 is read as the
    recipient missing, the safer mistake: that one is retried later, while
    an unknown event is refused for good.
    """
    _, message = error_of(response)
    return re.search(rf"(?<![\w-]){re.escape(event)}(?![\w-])", message) is not None


# --- request bodies (assumed: the seed vendor's page shows only their keys) ---


def upsert_body(encoded_person_data: t.Iterable[bytes]) -> bytes:
    """``{"recipients": [{"personData": ...}, ...]}`` from encoded Person Data."""
    entries = (b'{"personData":' + data + b"}" for data in encoded_person_data)
    return b'{"recipients":' + join_json(entries) + b"}"


def otm_upsert_body(table: str, rows: t.Mapping[str, list[t.Any]]) -> bytes:
    """``{"oneToManyTableId", "recipients": [{"recipientId", "records"}]}``;
    per-row error indexes count the rows in this order."""
    recipients = [{"recipientId": r, "records": rows} for r, rows in rows.items()]
    return dumps({"oneToManyTableId": table, "recipients": recipients})


def group_change_body(group: str, recipient_ids: list[str]) -> bytes:
    """``{"targetGroupName", "recipientIds": [≤ 100]}``."""
    return dumps({"targetGroupName": group, "recipientIds": recipient_ids})
