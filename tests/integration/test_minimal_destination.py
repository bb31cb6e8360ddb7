"""docs/adding-a-destination.md, exercised: a destination in a few lines.

A third API ("Notes", a tiny HTTP server in this test) gets a target built
on singer-delivery alone, and change detection, rejects and the dry run
work through it exactly as they do for Agillic and Gladly.
"""

from __future__ import annotations

import io
import json
import threading
import typing as t
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from singer_sdk import typing as th
from typing_extensions import override

from singer_delivery import (
    Action,
    DeliverySink,
    DeliveryTarget,
    Item,
    Outcome,
    RecordRejected,
    RetryPolicy,
    Scope,
    Transport,
    delivery_settings,
)

if t.TYPE_CHECKING:
    from singer_delivery.budget import CallBudget


# --- the destination: about forty lines -----------------------------------------


class NoteSink(DeliverySink):
    """Writes one note per record: ``PUT /notes/{id}`` with ``{"text": ...}``."""

    @property
    @override
    def scope(self) -> Scope:
        return self.run.scope("notes", "id", self.stream_name)

    @override
    def map_record(self, record: dict[str, t.Any]) -> tuple[str, t.Any]:
        if not record.get("id"):
            raise RecordRejected("missing_id", "a note needs an id")
        return str(record["id"]), {"text": record.get("text") or ""}

    @override
    def deliver(self, items: list[Item]) -> list[Outcome]:
        return self.map_concurrently(self._put, items)

    def _put(self, item: Item) -> Outcome:
        path = f"/notes/{item.key}"
        response = self.run.transport.request(
            "PUT", path, route="PUT /notes/{id}", body=item.encoded
        )
        if response.status_code == 422:
            return Outcome.refused(item, "refused", response.text, http_status=422)
        return Outcome.done(item, Action.UPSERTED)


class TargetNotes(DeliveryTarget[None]):
    name = "target-notes"
    default_sink_class = NoteSink
    config_jsonschema = th.PropertiesList(
        th.Property("base_url", th.StringType, required=True),
        *delivery_settings(max_batch_rows=100),
    ).to_dict()

    @property
    @override
    def api_url(self) -> str:
        return str(self.config["base_url"])

    @override
    def create_transport(self, *, budget: CallBudget | None) -> Transport:
        return Transport(self.api_url, retry=RetryPolicy(total=1), budget=budget)

    @override
    def preflight(self, transport: Transport) -> None:
        return None


# --- a tiny Notes API -------------------------------------------------------------


class NotesApi(ThreadingHTTPServer):
    """Stores notes; refuses (422) a note whose text says "refuse"."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.notes: dict[str, str] = {}
        self.puts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: NotesApi

    def do_PUT(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.puts += 1
        refused = "refuse" in body["text"]
        if not refused:
            self.server.notes[self.path.rsplit("/", 1)[1]] = body["text"]
        self.send_response(422 if refused else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    @override
    def log_message(self, format: str, *args: t.Any) -> None:
        """Quiet."""


@pytest.fixture
def api() -> Iterator[NotesApi]:
    server = NotesApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def sync(
    api: NotesApi, tmp_path: Path, notes: list[dict[str, t.Any]], **config: t.Any
) -> dict[str, t.Any]:
    """One in-process run over Singer messages; returns the stream's counts."""
    lines = [
        {
            "type": "SCHEMA",
            "stream": "notes",
            "key_properties": ["id"],
            "schema": {
                "properties": {"id": {"type": "string"}, "text": {"type": "string"}}
            },
        },
        *({"type": "RECORD", "stream": "notes", "record": n} for n in notes),
        {"type": "STATE", "value": {"done": len(notes)}},
    ]
    target = TargetNotes(
        config={
            "base_url": api.url,
            "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
            "rejects_path": str(tmp_path / "rejects.jsonl"),
            "report_path": str(tmp_path / "report.json"),
            "max_reject_ratio": 1,
            **config,
        }
    )
    target.run_to_end(io.StringIO("\n".join(map(json.dumps, lines)) + "\n"))
    report = json.loads((tmp_path / "report.json").read_text())
    return t.cast(dict[str, t.Any], report["streams"]["notes"])


def test_a_destination_built_on_singer_delivery_alone(
    api: NotesApi, tmp_path: Path
) -> None:
    notes = [{"id": str(i), "text": f"note {i}"} for i in range(10)]
    notes += [{"id": "bad", "text": "please refuse"}, {"text": "no id"}]

    first = sync(api, tmp_path, notes)
    assert api.notes == {str(i): f"note {i}" for i in range(10)}
    assert (first["delivered"], first["rejected_by_reason"]) == (
        10,
        {"missing_id": 1, "refused": 1},
    )

    puts = api.puts
    second = sync(api, tmp_path, notes)
    assert api.puts == puts, "unchanged notes and the quarantined one are not sent"
    assert (second["unchanged"], second["quarantined"]) == (10, 1)

    notes[3] = {"id": "3", "text": "changed"}
    dry = sync(api, tmp_path, notes, dry_run=True)
    assert api.puts == puts
    assert dry["planned"] == {
        "reject": 1,
        "unchanged": 9,
        "upsert": 1,
        "quarantined": 1,
    }

    third = sync(api, tmp_path, notes)
    assert api.puts == puts + 1
    assert (third["delivered"], api.notes["3"]) == (1, "changed")
