"""Files a run leaves behind: the rejects file, the dry-run plan, the report."""

from __future__ import annotations

import datetime
import json
import threading
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

from singer_delivery.serialization import dumps


@dataclass(frozen=True)
class Reject:
    """Why one record was not delivered, in terms a person can act on."""

    key: str | None
    reason: str
    message: str
    http_status: int | None = None
    fields: tuple[str, ...] = ()
    record: t.Mapping[str, t.Any] | None = None


class JsonlWriter:
    """Appends JSON lines from many threads; opened lazily, so no run leaves
    an empty file behind."""

    def __init__(self, path: Path, *, truncate: bool = False) -> None:
        self.path = path
        self._mode = "wb" if truncate else "ab"
        self._handle: t.IO[bytes] | None = None
        self._lock = threading.Lock()

    def write(self, line: t.Mapping[str, t.Any]) -> None:
        """Append one object as a line and flush it (a crash keeps it)."""
        data = dumps(line) + b"\n"
        with self._lock:
            handle = self._handle
            if handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handle = self._handle = self.path.open(self._mode)
            handle.write(data)
            handle.flush()

    def close(self) -> None:
        """Close the file if it was opened."""
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass
class RejectsFile:
    """The JSONL rejects file; the full record only when the user opted in."""

    path: Path
    run_id: str
    include_record: bool = False
    _writer: JsonlWriter = field(init=False)

    def __post_init__(self) -> None:
        self._writer = JsonlWriter(self.path)

    def write(self, stream: str, reject: Reject) -> None:
        """Append one reject."""
        line: dict[str, t.Any] = {
            "run_id": self.run_id,
            "time": _utc_now(),
            "stream": stream,
            "key": reject.key,
            "reason": reject.reason,
            "message": reject.message,
            "http_status": reject.http_status,
            "fields": list(reject.fields),
        }
        if self.include_record and reject.record is not None:
            line["record"] = dict(reject.record)
        self._writer.write(line)

    def close(self) -> None:
        """Close the underlying file."""
        self._writer.close()


@dataclass
class PlanFile:
    """The dry-run plan: one line per record, then the totals."""

    path: Path
    run_id: str
    _writer: JsonlWriter = field(init=False)

    def __post_init__(self) -> None:
        self._writer = JsonlWriter(self.path, truncate=True)

    def write(self, stream: str, key: str | None, action: str, **extra: t.Any) -> None:
        """One planned action for one record (or one group member)."""
        self._writer.write({"stream": stream, "key": key, "action": action, **extra})

    def write_totals(self, totals: t.Mapping[str, t.Any]) -> None:
        """The closing line, then close the file."""
        self._writer.write({"run_id": self.run_id, "totals": totals})
        self._writer.close()


def write_json(path: Path, data: t.Mapping[str, t.Any]) -> None:
    """Write the report atomically: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
