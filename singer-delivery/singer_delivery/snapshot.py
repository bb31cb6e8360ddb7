"""Full-table snapshots: when one is known complete, and what it held.

A mirror removes members the ledger remembers but the snapshot did not hold,
so it must know two things for sure. *Complete*: positive evidence that the
tap sent the whole table, which is the closing ACTIVATE_VERSION, or, for a
tap that sends none, a STATE after the stream's last record followed by a
clean end of input (a tap that dies half way sends no final STATE). *Seen*:
every row that arrived with a usable member ID, even one rejected for
another field, so a bad value never turns into a removal.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator


class SeenSet:
    """A disk-backed set of IDs, safe to add to from delivery threads.

    It lives in SQLite's private temporary database (opened with an empty
    name): disk-backed, so memory stays flat for any audience, and deleted
    by SQLite itself, even after SIGKILL, since the file is unlinked as soon
    as it is opened. No member ID outlives the run.
    """

    def __init__(self) -> None:
        self._conn = sqlite3.connect("", check_same_thread=False)
        self._conn.execute("CREATE TABLE seen (id TEXT PRIMARY KEY) WITHOUT ROWID")
        self._lock = threading.Lock()

    def add(self, ids: Iterable[str]) -> None:
        """Remember IDs (duplicates are fine)."""
        with self._lock:
            self._conn.executemany(
                "INSERT OR IGNORE INTO seen VALUES (?)", ((i,) for i in ids)
            )
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM seen").fetchone()[0])

    def unseen(self, ids: list[str]) -> list[str]:
        """The given IDs that were not seen, in their order."""
        placeholders = ",".join("?" * len(ids))
        with self._lock:
            seen = {
                row[0]
                for row in self._conn.execute(
                    f"SELECT id FROM seen WHERE id IN ({placeholders})", ids
                )
            }
        return [i for i in ids if i not in seen]

    def close(self) -> None:
        """Drop the set (SQLite removes its file)."""
        with self._lock:
            self._conn.close()


class Snapshot:
    """What one stream's input says about its full-table snapshot.

    Shared by every sink of the stream (a schema change replaces the sink,
    not the snapshot). Evidence is kept as input positions, so the record
    path only writes ``last_record``.
    """

    def __init__(self) -> None:
        self.seen = SeenSet()
        self.last_record = -1
        self.last_state = -1
        self._versions: list[int] = []
        self._opened_at = -1
        self.closed = False

    def state(self, position: int) -> None:
        """A STATE was read at ``position``: the tap vouches for what came before."""
        self.last_state = position

    @property
    def state_after_last_record(self) -> bool:
        """A STATE came after the stream's last record."""
        return self.last_state > self.last_record

    def activate_version(self, version: int, position: int) -> None:
        """Note a full-table snapshot boundary at input ``position``.

        Taps send ACTIVATE_VERSION before a full-table sync and again after
        it. The closing one follows records of the stream, or repeats the
        version it opened with (an empty table).
        """
        closing = self.last_record > self._opened_at or version in self._versions
        self._versions.append(version)
        self._opened_at = position
        if closing:
            self.closed = True

    @property
    def versioned(self) -> bool:
        """The tap announced a full-table version for this stream."""
        return bool(self._versions)

    def complete(self, input_complete: bool) -> bool:
        """Positive evidence that the whole table was read (see module doc)."""
        if not input_complete:
            return False
        return self.closed if self.versioned else self.state_after_last_record

    def why_incomplete(self, stream: str) -> tuple[str, str]:
        """(what evidence was missing, the fix), for the warning that no one
        was removed."""
        if self.versioned:
            return (
                (
                    f"the tap sent ACTIVATE_VERSION before stream {stream} but none "
                    "after it"
                ),
                (
                    "Turn off the tap's emit_activate_version_messages (a STATE after "
                    "the last record and a clean end of input then complete the "
                    "snapshot) or set process_activate_version_messages to false."
                ),
            )
        return (
            (
                f"no STATE followed the last record of stream {stream}, so the tap "
                "may have stopped half way"
            ),
            (
                "Taps send a STATE when a stream is complete; check why this one "
                "did not (a tap that died, a pipe cut short)."
            ),
        )


def removals(members: Iterator[list[str]], seen: SeenSet) -> Iterator[list[str]]:
    """Pages of remembered members that the snapshot did not contain."""
    for page in members:
        if unseen := seen.unseen(page):
            yield unseen
