"""What a full-snapshot stream saw this run, for mirror removals.

A mirror removes members the ledger remembers but the run did not see. The
seen set can be as large as the audience, so it lives in a temporary SQLite
file rather than in memory, and removals are worked out page by page.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator

from singer_delivery.ledger import LOOKUP_CHUNK, Ledger


class SeenSet:
    """A disk-backed set of IDs, safe to add to from delivery threads."""

    def __init__(self) -> None:
        handle, self._path = tempfile.mkstemp(prefix="seen-", suffix=".sqlite")
        os.close(handle)
        self._conn = sqlite3.connect(self._path, check_same_thread=False)
        self._conn.execute("CREATE TABLE seen (id TEXT PRIMARY KEY)")
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
                    f"SELECT id FROM seen WHERE id IN ({placeholders})",
                    ids,
                )
            }
        return [i for i in ids if i not in seen]

    def close(self) -> None:
        """Delete the temporary file."""
        with self._lock:
            self._conn.close()
        os.unlink(self._path)


def removals(ledger: Ledger, scope_id: str, seen: SeenSet) -> Iterator[list[str]]:
    """Pages of remembered members that this run's snapshot did not contain."""
    page: list[str] = []
    for member in ledger.iter_members(scope_id):
        page.append(member)
        if len(page) == LOOKUP_CHUNK:
            yield seen.unseen(page)
            page = []
    if page:
        yield seen.unseen(page)
