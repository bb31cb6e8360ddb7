"""The delivery ledger: what each destination acknowledged, per scope.

Change detection compares a record's payload fingerprint with the one stored
here for its key. Only hashes are kept for that (no personal data); mirror
audiences additionally keep the real member IDs, because removing a member
needs its ID. Every read and write works on one batch of keys at a time, so
a ledger of millions of keys never has to fit in memory.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import hashlib
import json
import logging
import os
import threading
import time
import typing as t
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa

from singer_delivery.batching import chunked

logger = logging.getLogger(__name__)

LOOKUP_CHUNK = 500
FLUSH_AT = 10_000
FLUSH_CHUNK = 1000
SUPPORTED_DIALECTS = ("sqlite", "postgresql")

metadata = sa.MetaData()
scopes = sa.Table(
    "ledger_scopes",
    metadata,
    sa.Column("scope_id", sa.String(32), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
deliveries = sa.Table(
    "ledger_deliveries",
    metadata,
    sa.Column("scope_id", sa.String(32), primary_key=True),
    sa.Column("key_hash", sa.String(32), primary_key=True),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column(
        "delivered_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.func.current_timestamp(),
    ),
    # the primary key is the table: half the pages to write per commit
    sqlite_with_rowid=False,
)
members = sa.Table(
    "ledger_members",
    metadata,
    sa.Column("scope_id", sa.String(32), primary_key=True),
    sa.Column("member_id", sa.String(512), primary_key=True),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
)


class LedgerBusy(RuntimeError):
    """Another run holds the lock for the same destination."""


@dataclass(frozen=True)
class Scope:
    """The destination object a ledger row belongs to.

    Changing any part (the instance, the object type, the table or group, or
    the stream name) starts an empty history: every record is sent again and
    a mirror starts over with no remembered members.
    """

    target: str
    instance: str
    object_type: str
    object_name: str
    stream: str

    @property
    def scope_id(self) -> str:
        """A short stable id for the scope."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def default_ledger_url(environ: t.Mapping[str, str] = os.environ) -> str:
    """SQLite under the Meltano project's ``.meltano/`` folder, else the cwd."""
    root = environ.get("MELTANO_PROJECT_ROOT")
    folder = Path(root) / ".meltano" if root else Path.cwd()
    return f"sqlite:///{folder / 'delivery-ledger.sqlite'}"


def normalize_url(url: str) -> str:
    """Let users write plain ``postgresql://`` and get the bundled psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def validate_ledger_url(url: str) -> str | None:
    """An error message for an unusable ``ledger_url``, or None."""
    try:
        parsed = sa.engine.make_url(normalize_url(url))
    except sa.exc.ArgumentError:
        return f"ledger_url {url!r} is not a SQLAlchemy URL"
    if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
        return (
            f"ledger_url uses {parsed.get_backend_name()!r}; use a sqlite:/// "
            "file or a postgresql:// database"
        )
    return None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Ledger:
    """Thread-safe access to the ledger tables (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = sa.engine.make_url(normalize_url(url))
        self.dialect = self.url.get_backend_name()
        self.engine = self._create_engine()
        metadata.create_all(self.engine)
        self._pending: dict[str, dict[str, str]] = {}
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def _create_engine(self) -> sa.Engine:
        if self.dialect != "sqlite":
            return sa.create_engine(self.url, pool_pre_ping=True)
        connect_args = {"timeout": 60, "check_same_thread": False}
        if not self.url.database or self.url.database == ":memory:":
            # one shared connection, or each thread would see its own empty DB
            return sa.create_engine(
                self.url, connect_args=connect_args, poolclass=sa.pool.StaticPool
            )
        Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(self.url, connect_args=connect_args)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: t.Any, _record: t.Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine

    def _insert(self) -> t.Any:
        """The dialect's INSERT, which has ON CONFLICT (imported when first used)."""
        if self.dialect == "sqlite":
            from sqlalchemy.dialects import sqlite

            return sqlite.insert
        from sqlalchemy.dialects import postgresql

        return postgresql.insert

    @functools.cached_property
    def _upsert_sql(self) -> tuple[str, bool]:
        """The delivery upsert compiled once for the driver, and whether its
        parameters are positional.

        Handing the driver plain rows skips SQLAlchemy's per-row parameter
        processing, which was most of the cost of a commit.
        """
        insert = self._insert()(deliveries).values(
            scope_id=sa.bindparam("s"),
            key_hash=sa.bindparam("k"),
            fingerprint=sa.bindparam("f"),
        )
        stmt = insert.on_conflict_do_update(
            index_elements=["scope_id", "key_hash"],
            set_={
                "fingerprint": insert.excluded.fingerprint,
                "delivered_at": sa.func.current_timestamp(),
            },
        )
        compiled = stmt.compile(dialect=self.engine.dialect)
        if compiled.positional:
            assert list(compiled.positiontup or []) == ["s", "k", "f"]
        return str(compiled), bool(compiled.positional)

    def register(self, scope: Scope) -> None:
        """Remember what a scope id stands for, for people reading the ledger."""
        stmt = (
            self._insert()(scopes)
            .values(
                scope_id=scope.scope_id,
                description=json.dumps(asdict(scope), sort_keys=True),
                created_at=_now(),
            )
            .on_conflict_do_nothing(index_elements=["scope_id"])
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def fingerprints(self, scope_id: str, key_hashes: Sequence[str]) -> dict[str, str]:
        """The last delivered fingerprint for each of the given keys that has one."""
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in chunked(key_hashes, LOOKUP_CHUNK):
                rows = conn.execute(
                    sa.select(deliveries.c.key_hash, deliveries.c.fingerprint).where(
                        deliveries.c.scope_id == scope_id,
                        deliveries.c.key_hash.in_(chunk),
                    )
                )
                found.update({row.key_hash: row.fingerprint for row in rows})
        with self._pending_lock:
            pending = self._pending.get(scope_id, {})
            found.update({k: pending[k] for k in key_hashes if k in pending})
        return found

    def record_deliveries(
        self, scope_id: str, delivered: Sequence[tuple[str, str]]
    ) -> None:
        """Store (key hash, fingerprint) pairs the API acknowledged.

        Writes are buffered up to ``FLUSH_AT`` keys: committing 1000 random
        keys at a time rewrote most of the table's pages on every batch. The
        buffer is visible to ``fingerprints`` at once and is flushed before
        every STATE (``flush``), so a crash costs at most a repeat send.
        """
        with self._pending_lock:
            pending = self._pending.setdefault(scope_id, {})
            pending.update(delivered)
            full = sum(map(len, self._pending.values())) >= FLUSH_AT
        if full:
            self.flush()

    def flush(self) -> None:
        """Write buffered deliveries in one transaction."""
        with self._flush_lock:
            with self._pending_lock:
                snapshot = {scope: dict(keys) for scope, keys in self._pending.items()}
            if not any(snapshot.values()):
                return
            sql, positional = self._upsert_sql
            rows = [
                (scope, key, fp) if positional else {"s": scope, "k": key, "f": fp}
                for scope, keys in snapshot.items()
                for key, fp in sorted(keys.items())
            ]
            with self.engine.begin() as conn:
                for chunk in chunked(rows, FLUSH_CHUNK):
                    conn.exec_driver_sql(sql, list(chunk))
            with self._pending_lock:
                for scope, keys in snapshot.items():
                    pending = self._pending.get(scope, {})
                    for key, fp in keys.items():
                        if pending.get(key) == fp:
                            del pending[key]

    def forget_deliveries(self, scope_id: str, key_hashes: Sequence[str]) -> None:
        """Drop keys whose destination state was undone (e.g. a removed member),
        so that the same payload is sent again when the key comes back."""
        with self._pending_lock:
            pending = self._pending.get(scope_id, {})
            for key in key_hashes:
                pending.pop(key, None)
        with self.engine.begin() as conn:
            for chunk in chunked(key_hashes, LOOKUP_CHUNK):
                conn.execute(
                    sa.delete(deliveries).where(
                        deliveries.c.scope_id == scope_id,
                        deliveries.c.key_hash.in_(chunk),
                    )
                )

    def delivered_count(self, scope_id: str) -> int:
        """How many keys the scope holds."""
        self.flush()
        with self.engine.connect() as conn:
            return int(
                conn.scalar(
                    sa.select(sa.func.count()).where(deliveries.c.scope_id == scope_id)
                )
                or 0
            )

    def add_members(self, scope_id: str, member_ids: Iterable[str]) -> None:
        """Remember members the API confirmed as added."""
        now = _now()
        rows = [
            {"scope_id": scope_id, "member_id": m, "added_at": now} for m in member_ids
        ]
        if not rows:
            return
        stmt = self._insert()(members).on_conflict_do_nothing(
            index_elements=["scope_id", "member_id"]
        )
        with self.engine.begin() as conn:
            for chunk in chunked(rows, LOOKUP_CHUNK):
                conn.execute(stmt, list(chunk))

    def remove_members(self, scope_id: str, member_ids: Sequence[str]) -> None:
        """Forget members the API confirmed as removed."""
        with self.engine.begin() as conn:
            for chunk in chunked(member_ids, LOOKUP_CHUNK):
                conn.execute(
                    sa.delete(members).where(
                        members.c.scope_id == scope_id,
                        members.c.member_id.in_(chunk),
                    )
                )

    def known_members(self, scope_id: str, member_ids: Sequence[str]) -> set[str]:
        """Which of the given IDs the ledger remembers as members."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in chunked(member_ids, LOOKUP_CHUNK):
                found.update(
                    conn.scalars(
                        sa.select(members.c.member_id).where(
                            members.c.scope_id == scope_id,
                            members.c.member_id.in_(chunk),
                        )
                    )
                )
        return found

    def member_count(self, scope_id: str) -> int:
        """How many members the ledger remembers for a group scope."""
        with self.engine.connect() as conn:
            return int(
                conn.scalar(
                    sa.select(sa.func.count()).where(members.c.scope_id == scope_id)
                )
                or 0
            )

    def iter_members(self, scope_id: str, batch: int = LOOKUP_CHUNK) -> Iterator[str]:
        """Every remembered member, streamed in key order."""
        last = ""
        while True:
            with self.engine.connect() as conn:
                page = list(
                    conn.scalars(
                        sa.select(members.c.member_id)
                        .where(
                            members.c.scope_id == scope_id,
                            members.c.member_id > last,
                        )
                        .order_by(members.c.member_id)
                        .limit(batch)
                    )
                )
            if not page:
                return
            yield from page
            last = page[-1]

    @contextlib.contextmanager
    def run_lock(self, name: str, timeout: float) -> Iterator[None]:
        """Hold an exclusive lock for one destination for the whole run.

        The lock dies with the process (a file lock for SQLite, a session
        advisory lock for PostgreSQL), so a run killed with SIGKILL never
        leaves a stale lock behind for the rerun.
        """
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        try_lock, release = (
            self._pg_lock(int.from_bytes(digest, "big", signed=True))
            if self.dialect == "postgresql"
            else self._file_lock(digest.hex())
        )
        deadline = time.monotonic() + timeout
        while not try_lock():
            if time.monotonic() >= deadline:
                release()
                msg = (
                    f"another run is writing to {name} with the same ledger "
                    f"and still held the ledger lock after {timeout:.0f} s; "
                    "let it finish (or raise ledger_lock_timeout) before "
                    "starting this one"
                )
                raise LedgerBusy(msg)
            time.sleep(0.2)
        try:
            yield
        finally:
            release()

    def _pg_lock(self, key: int) -> tuple[t.Callable[[], bool], t.Callable[[], None]]:
        conn = self.engine.connect()

        def try_lock() -> bool:
            locked = conn.scalar(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
            conn.commit()
            return bool(locked)

        def release() -> None:
            # invalidate: a pooled connection would keep the session, and its lock
            conn.invalidate()
            conn.close()

        return try_lock, release

    def _file_lock(
        self, suffix: str
    ) -> tuple[t.Callable[[], bool], t.Callable[[], None]]:
        database = self.url.database
        if not database or database == ":memory:":
            return (lambda: True), (lambda: None)
        handle = open(f"{database}.{suffix}.lock", "a+")  # noqa: SIM115

        def try_lock() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        def release() -> None:
            handle.close()

        return try_lock, release
