"""Files a run leaves behind: the rejects file, the dry-run plan, the report."""

from __future__ import annotations

import datetime
import json
import threading
import typing as t
from pathlib import Path

from singer_delivery.outcomes import Reject
from singer_delivery.serialization import dumps


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


class RejectsFile:
    """The JSONL rejects file; the full record only when the user opted in."""

    def __init__(self, path: Path, run_id: str, *, include_record: bool) -> None:
        self.path = path
        self.run_id = run_id
        self.include_record = include_record
        self._writer = JsonlWriter(path)

    def write(
        self, stream: str | None, reject: Reject, line: int | None = None
    ) -> None:
        """Append one reject; ``line`` is the input line of an unreadable one."""
        entry: dict[str, t.Any] = {
            "run_id": self.run_id,
            "time": _utc_now(),
            "stream": stream,
            "key": reject.key,
            "reason": reject.reason,
            "message": reject.message,
            "http_status": reject.http_status,
            "fields": list(reject.fields),
            "permanent": reject.permanent,
        }
        if line is not None:
            entry["line"] = line
        if self.include_record and reject.record is not None:
            entry["record"] = dict(reject.record)
        self._writer.write(entry)

    def close(self) -> None:
        """Close the underlying file."""
        self._writer.close()


class PlanFile:
    """The dry-run plan: one line per record (or group member), then totals."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._writer = JsonlWriter(path, truncate=True)

    def write(
        self, stream: str | None, key: str | None, action: str, **extra: t.Any
    ) -> None:
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
