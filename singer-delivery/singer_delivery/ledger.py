"""The delivery ledger: what each destination acknowledged, per scope.

Change detection compares a record's payload fingerprint with the one stored
here for its key. Keys are stored as hashes; only three tables hold more:
mirror memberships keep member IDs (removing a member needs its ID), open
rejects keep the destination key unless ``store_reject_keys`` is off (a person
fixing the row needs it), and runs keep their counts.

SQLite (the default, a file) and PostgreSQL (shared by ephemeral runners) are
spoken to through their own drivers, ``sqlite3`` and psycopg: a handful of
statements per batch does not need an ORM, and the run starts faster without
one. The schema is versioned; older ledgers are migrated in place at start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import typing as t
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from singer_delivery.batching import chunked
from singer_delivery.errors import OperationalError
from singer_delivery.serialization import SOURCE_FINGERPRINT_BYTES, hex_digest

if t.TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

#: Keys per lookup, delete or delivery-upsert statement.
CHUNK = 1000
#: Buffered delivery commits before a flush is forced (one flush also happens
#: before every STATE and at the end). Once a ledger is far larger than a
#: flush, each flush rewrites most of its pages, so the number of flushes
#: decides the writes: 40,000 against 20,000 made a run of a million new keys
#: 7 % faster with a fifth less system time, for 4 MiB more at its peak.
FLUSH_AT = 40_000
#: The page size of a new SQLite ledger. A flush of random keys into a large
#: ledger rewrites most leaf pages, and SQLite reads and writes a page per
#: system call: 16 KiB pages (against 4 KiB) made a run of a million new
#: keys about 7 % faster and its system time 15 % smaller.
SQLITE_PAGE_SIZE = 16_384
#: How much a SQLite ledger's write-ahead log may hold before it is copied
#: back: checkpointing less often copies a page rewritten by several flushes
#: once (after every 4 MB, the SQLite default, it doubled the writes).
SQLITE_CHECKPOINT_BYTES = 40 * 2**20
SCHEMA_VERSION = 4
#: Bytes of a payload fingerprint and of a key hash; a buffered delivery holds
#: the fingerprint followed by the source record's, when there is one.
_FINGERPRINT_BYTES = 16
#: How a flush to SQLite passes a delivery without a source fingerprint.
_NO_SOURCE = bytes(SOURCE_FINGERPRINT_BYTES)
#: The object type of a scope of delete requests ends so (``recipient_deletes``).
DELETES = "_deletes"


class LedgerError(OperationalError):
    """The ledger cannot be opened, read or written; names ``ledger_url``."""


class LedgerBusy(OperationalError):
    """Another run holds the lock for the same destination."""


class LockLost(OperationalError):
    """The run's ledger lock vanished: another run may be writing now."""


@dataclasses.dataclass(frozen=True)
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
        """A short stable id for the scope: the hash of its description."""
        return hex_digest(self.description.encode())

    @property
    def description(self) -> str:
        """What the scope id stands for, as stored in ``ledger_scopes``."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclasses.dataclass(frozen=True)
class LedgerUrl:
    """A parsed ``ledger_url``: which database, and how to name it safely."""

    dialect: t.Literal["sqlite", "postgresql"]
    #: The SQLite file (None: in memory) or the libpq connection URL.
    location: str | None
    #: The URL with its password replaced, for every message.
    redacted: str
    #: As given, to scrub its password from drivers' messages.
    given: str = dataclasses.field(default="", repr=False)

    @classmethod
    def parse(cls, url: str) -> LedgerUrl:
        """Accept ``sqlite:///file``, ``sqlite://`` and ``postgresql://…``.

        Raises ``LedgerError`` naming the setting; the password never appears.
        """
        redacted = redact_url(url)
        scheme, sep, rest = url.partition("://")
        dialect = scheme.split("+", 1)[0].lower()
        if not sep:
            msg = (
                f"ledger_url {redacted!r} is not a URL; use sqlite:///path/to/"
                "ledger.sqlite or postgresql://user:password@host:5432/db"
            )
            raise LedgerError(msg)
        if dialect == "sqlite":
            path = rest.removeprefix("/")
            memory = path in ("", ":memory:")
            return cls("sqlite", None if memory else path, redacted, url)
        if dialect in ("postgresql", "postgres"):
            try:
                _ = urllib.parse.urlsplit(url).port  # raises on a bad port
            except ValueError:
                msg = (
                    f"ledger_url {redacted!r} is not a valid URL; use "
                    "postgresql://user:password@host:5432/db"
                )
                raise LedgerError(msg) from None
            return cls("postgresql", f"postgresql://{rest}", redacted, url)
        msg = (
            f"ledger_url uses {dialect!r}; use a sqlite:/// file or a "
            "postgresql:// database"
        )
        raise LedgerError(msg)


_PASSWORD = re.compile(r"^([^:/]+://[^:/@]*:)([^@]*)@")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (even in a broken URL)."""
    return _PASSWORD.sub(r"\1***@", url)


def scrub(text: str, url: str) -> str:
    """``text`` without the password of ``url`` (a driver may quote the URL)."""
    found = _PASSWORD.match(url)
    return text.replace(found.group(2), "***") if found and found.group(2) else text


def default_ledger_url(environ: t.Mapping[str, str] = os.environ) -> str:
    """SQLite under the Meltano project's ``.meltano/`` folder, else the cwd."""
    root = environ.get("MELTANO_PROJECT_ROOT")
    folder = Path(root) / ".meltano" if root else Path.cwd()
    return f"sqlite:///{folder / 'delivery-ledger.sqlite'}"


class Known(t.NamedTuple):
    """What the ledger knows of one key: its last delivered payload, and the
    payload last refused for good (quarantined) with the reason.

    A named tuple rather than a frozen dataclass: one is built per key looked
    up, and a tuple is several times cheaper to build.
    """

    fingerprint: str | None = None
    refused_fingerprint: str | None = None
    refused_reason: str | None = None
    #: The fingerprint of the source record the delivered payload came from.
    source: str | None = None


#: A key looked up that the ledger knows nothing of.
NOTHING_KNOWN = Known()


@dataclasses.dataclass(frozen=True, slots=True)
class RejectRow:
    """One reject as the ledger keeps it (see ``Ledger.record_rejects``)."""

    key_hash: str
    key: str | None
    fingerprint: str | None
    stream: str
    reason: str
    message: str
    http_status: int | None
    permanent: bool


@dataclasses.dataclass(frozen=True)
class RunRow:
    """A run as ``ledger_runs`` holds it."""

    run_id: str
    target: str
    scopes: Sequence[str]
    started_at: datetime.datetime


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Ledger:
    """Thread-safe access to the ledger tables (SQLite or PostgreSQL)."""

    def __init__(self, url: LedgerUrl, *, read_only: bool = False) -> None:
        self.url = url
        self.dialect = url.dialect
        self._lock = threading.RLock()
        #: Deliveries not yet written: scope -> key hash -> fingerprint and
        #: source fingerprint, binary and joined (see ``_FINGERPRINT_BYTES``):
        #: one small object per key, converted once.
        self._pending: dict[str, dict[str, bytes]] = {}
        #: Source fingerprints renewed for unchanged payloads: scope -> key -> it.
        self._renewed: dict[str, dict[str, str]] = {}
        self._open_rejects: set[str] = set()
        self._lock_check: t.Callable[[], None] = lambda: None
        self._lost: LockLost | None = None
        self._scopes: list[Scope] | None = None
        with self._errors("open"):
            self._conn = self._connect()
            if read_only:
                self._check_readable()
            else:
                self._migrate()

    @classmethod
    def open(cls, url: str) -> Ledger:
        """Parse ``url`` and open the ledger, creating or migrating its tables."""
        return cls(LedgerUrl.parse(url))

    # --- connection -----------------------------------------------------

    def _connect(self) -> t.Any:
        if self.dialect == "postgresql":
            return _pg_connect(t.cast(str, self.url.location))
        location = self.url.location
        if location is not None:
            Path(location).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            location or ":memory:",
            timeout=60,
            check_same_thread=False,
            isolation_level=None,
        )
        if location is not None:
            # takes effect only on a new file: an older ledger keeps its pages
            conn.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            [(page_size,)] = conn.execute("PRAGMA page_size").fetchall()
            pages = SQLITE_CHECKPOINT_BYTES // page_size
            conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
        return conn

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn driver errors into one line naming ``ledger_url``."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(self._message(doing, exc)) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                raise LedgerError(self._message(doing, exc)) from exc
            raise

    def _message(self, doing: str, exc: BaseException) -> str:
        cause = scrub(" ".join(str(exc).split()) or type(exc).__name__, self.url.given)
        return (
            f"the ledger at ledger_url {self.url.redacted!r} could not {doing}: "
            f"{cause}; check that the database is reachable and writable, or "
            "point ledger_url elsewhere"
        )

    def _sql(self, statement: str) -> str:
        """Our statements use ``?``; psycopg wants ``%s``."""
        return statement if self.dialect == "sqlite" else statement.replace("?", "%s")

    def _in(self, column: str, values: Sequence[t.Any]) -> tuple[str, list[t.Any]]:
        """``column IN (...)`` for SQLite, ``column = ANY(%s)`` for PostgreSQL."""
        if self.dialect == "sqlite":
            return f"{column} IN ({','.join('?' * len(values))})", list(values)
        return f"{column} = ANY(?)", [list(values)]

    def _stamp(self, moment: datetime.datetime) -> t.Any:
        """A timestamp parameter: ISO text in SQLite, a datetime in PostgreSQL."""
        return moment.isoformat() if self.dialect == "sqlite" else moment

    def _rows(self, statement: str, params: Sequence[t.Any] = ()) -> list[t.Any]:
        with self._lock:
            return list(self._conn.execute(self._sql(statement), params).fetchall())

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[t.Any]:
        """One write transaction on the shared connection.

        Refused once the run lost its lock (see ``run_lock``): from then on
        nothing more is written, and what was buffered is dropped (sent
        again by the next run).
        """
        with self._lock:
            self._check_lock()
            if self.dialect == "postgresql":
                with self._conn.transaction():
                    yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Flush and close the connection.

        A flush refused here (a lost lock) was already reported by the run's
        final checkpoint; closing goes on regardless.
        """
        with self._lock:
            try:
                self.flush()
            except OperationalError:
                logger.debug("nothing more written to the ledger", exc_info=True)
            finally:
                self._conn.close()

    # --- schema -----------------------------------------------------------

    def _migrate(self) -> None:
        """Create the tables, or bring an older ledger up to ``SCHEMA_VERSION``."""
        with self._transaction() as conn:
            if self.dialect == "postgresql":
                conn.execute("SELECT pg_advisory_xact_lock(7315220641)")
            version = self._schema_version(conn)
            if version > SCHEMA_VERSION:
                msg = (
                    f"ledger_url {self.url.redacted!r} holds a ledger of schema "
                    f"version {version}, written by a newer release; upgrade "
                    "the target or use another ledger"
                )
                raise LedgerError(msg)
            if self.dialect == "sqlite":
                conn.create_function(_UNHEX, 1, _unhex, deterministic=True)
            upgrading = 0 < version < SCHEMA_VERSION  # not a new ledger
            if upgrading:  # a large ledger takes a while: say so first
                logger.info(
                    "migrating the ledger's tables from schema version %d to %d "
                    "(once; other runs on this ledger wait meanwhile)",
                    version,
                    SCHEMA_VERSION,
                )
            started = time.monotonic()
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step](self.dialect):
                    conn.execute(statement)
            self._set_version(conn)
        if upgrading:
            logger.info(
                "the ledger's tables were migrated from schema version %d to %d "
                "in %.1f s (once)",
                version,
                SCHEMA_VERSION,
                time.monotonic() - started,
            )

    def _check_readable(self) -> None:
        """A reader needs the current schema and never migrates it."""
        if not self._has_table(self._conn, "ledger_meta"):
            version = 1 if self._has_table(self._conn, "ledger_deliveries") else 0
        else:
            row = self._conn.execute(
                self._sql("SELECT value FROM ledger_meta WHERE name = ?"),
                ["schema_version"],
            ).fetchone()
            version = int(row[0]) if row else 0
        if version != SCHEMA_VERSION:
            msg = (
                f"ledger_url {self.url.redacted!r} holds schema version {version}, "
                f"not {SCHEMA_VERSION}; run a target against it once to create or "
                "migrate its tables"
            )
            raise LedgerError(msg)

    def _schema_version(self, conn: t.Any) -> int:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ledger_meta "
            "(name VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)"
        )
        row = conn.execute(
            self._sql("SELECT value FROM ledger_meta WHERE name = ?"),
            ["schema_version"],
        ).fetchone()
        if row is not None:
            return int(row[0])
        # the first schema had no meta table: its deliveries table tells it apart
        return 1 if self._has_table(conn, "ledger_deliveries") else 0

    def _has_table(self, conn: t.Any, name: str) -> bool:
        if self.dialect == "sqlite":
            query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            query = "SELECT 1 FROM pg_tables WHERE tablename = ?"
        return conn.execute(self._sql(query), [name]).fetchone() is not None

    def _set_version(self, conn: t.Any) -> None:
        conn.execute(
            self._sql(
                "INSERT INTO ledger_meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
            ),
            ["schema_version", str(SCHEMA_VERSION)],
        )

    # --- scopes -------------------------------------------------------------

    def register(self, scope: Scope) -> None:
        """Remember what a scope id stands for, and whether it has open rejects."""
        with self._errors("register a scope"), self._transaction() as conn:
            conn.execute(
                self._sql(
                    "INSERT INTO ledger_scopes (scope_id, description, created_at) "
                    "VALUES (?, ?, ?) ON CONFLICT (scope_id) DO NOTHING"
                ),
                [scope.scope_id, scope.description, self._stamp(_now())],
            )
            open_reject = conn.execute(
                self._sql(
                    "SELECT 1 FROM ledger_rejects WHERE scope_id = ? "
                    "AND resolved_at IS NULL LIMIT 1"
                ),
                [scope.scope_id],
            ).fetchone()
        with self._lock:
            if open_reject is not None:
                self._open_rejects.add(scope.scope_id)
            self._scopes = None

    # --- change detection ---------------------------------------------------

    def lookup(
        self, scope_id: str, key_hashes: Sequence[str], *, quarantine: bool = True
    ) -> dict[str, Known]:
        """What the ledger knows of each given key that it knows anything of.

        One statement per ``CHUNK`` keys; the open rejects are read only when
        the scope has any (and ``quarantine`` is on).
        """
        delivered: dict[str, tuple[str, str | None]] = {}
        refused: dict[str, tuple[str, str]] = {}
        scope = bytes.fromhex(scope_id)
        with self._errors("read deliveries"), self._lock:
            for chunk in chunked(key_hashes, CHUNK):
                where, params = self._in("key_hash", _binary(chunk))
                rows = self._rows(
                    "SELECT key_hash, fingerprint, source_fingerprint "
                    f"FROM ledger_deliveries WHERE scope_id = ? AND {where}",
                    [scope, *params],
                )
                delivered.update(
                    (key.hex(), (found.hex(), source and source.hex()))
                    for key, found, source in rows
                )
                if quarantine and scope_id in self._open_rejects:
                    where, params = self._in("key_hash", chunk)
                    refused.update(self._refused(scope_id, where, params))
            if pending := self._pending.get(scope_id):
                delivered.update(
                    (key, _split(pending[key])) for key in key_hashes if key in pending
                )
        if not refused:  # the common case, built without merging two dicts
            return {
                key: Known(found, None, None, source)
                for key, (found, source) in delivered.items()
            }
        known: dict[str, Known] = {}
        for key in {*delivered, *refused}:
            found, source = delivered.get(key, (None, None))
            refused_fingerprint, reason = refused.get(key, (None, None))
            known[key] = Known(found, refused_fingerprint, reason, source)
        return known

    def _refused(
        self, scope_id: str, where: str, params: list[t.Any]
    ) -> dict[str, tuple[str, str]]:
        rows = self._rows(
            "SELECT key_hash, fingerprint, reason FROM ledger_rejects "
            f"WHERE scope_id = ? AND {where} AND resolved_at IS NULL "
            "AND permanent = ? AND fingerprint IS NOT NULL",
            [scope_id, *params, True],
        )
        return {key: (fingerprint, reason) for key, fingerprint, reason in rows}

    def record_deliveries(
        self, scope_id: str, delivered: Sequence[tuple[str, str, str | None]]
    ) -> None:
        """Store (key hash, fingerprint, source fingerprint) the API acknowledged.

        Buffered up to ``FLUSH_AT`` keys and visible to ``lookup`` at once;
        flushed before every STATE, so a crash costs at most a repeat send.
        """
        with self._lock:
            pending = self._pending.setdefault(scope_id, {})
            pending.update(
                (key, bytes.fromhex(found + source if source else found))
                for key, found, source in delivered
            )
            if renewed := self._renewed.get(scope_id):
                for key, _, _ in delivered:  # the delivery's own source wins
                    renewed.pop(key, None)
            full = sum(map(len, self._pending.values())) >= FLUSH_AT
        if full:
            self.flush()

    def renew_sources(self, scope_id: str, renewed: Sequence[tuple[str, str]]) -> None:
        """Store (key hash, source fingerprint) for payloads found unchanged.

        The delivered payload stays as it is: a record whose source
        fingerprint was missing or stale (another identity) but whose payload
        had not changed is unchanged without mapping next time. Written with
        the next flush, only to rows that still exist.
        """
        with self._lock:
            self._renewed.setdefault(scope_id, {}).update(renewed)

    def flush(self) -> None:
        """Write buffered deliveries (and resolve their open rejects).

        Checks the run still holds its ledger lock first: a run that lost it
        must not write, and the STATE that follows a flush must not go out.
        Deliveries go in key order, so each B-tree page is written once, in
        statements of ``CHUNK`` rows outside a transaction (see
        ``_upsert_deliveries``). What is written in steps is safe to stop
        between: rejects are resolved before the deliveries that resolve them
        are recorded, and renewed source fingerprints come last; a flush cut
        short sends its unrecorded deliveries again next run.
        """
        with self._lock:
            if not any(self._pending.values()) and not any(self._renewed.values()):
                self._check_lock()
                return
            pending, renewed = self._pending, self._renewed
            self._pending, self._renewed = {}, {}
            with self._errors("record deliveries"):
                resolved = [s for s in pending if s in self._open_rejects]
                if resolved:
                    with self._transaction() as conn:
                        for scope in resolved:
                            self._resolve(conn, scope, list(pending[scope]))
                for scope, keys in pending.items():
                    ordered = sorted(keys)
                    for chunk in chunked(ordered, CHUNK):
                        self._check_lock()
                        self._upsert_deliveries(scope, chunk, keys)
                if any(renewed.values()):
                    with self._transaction() as conn:
                        for scope, sources in renewed.items():
                            self._renew(conn, scope, sources)

    def _upsert_deliveries(
        self, scope_id: str, ordered: Sequence[str], keys: dict[str, bytes]
    ) -> None:
        """Buffered rows of a scope (sorted ``ordered`` keys) in one statement.

        One call to the driver for many rows: ``executemany`` releases the
        GIL around every row, and while the reading thread was busy each row
        then waited for it back (a flush of 20,000 rows took seconds instead
        of 50 ms). SQLite gets the rows as three blobs of fixed-width values
        that the statement cuts apart, outside a transaction so that it needs
        no statement journal; PostgreSQL gets three arrays. ``CHUNK`` rows a
        statement: one of 20,000 rows held 11 MiB more at its peak.
        """
        scope = bytes.fromhex(scope_id)
        values = [keys[key] for key in ordered]
        fingerprints = [value[:_FINGERPRINT_BYTES] for value in values]
        sources = [value[_FINGERPRINT_BYTES:] for value in values]
        if self.dialect == "postgresql":
            binary_keys = _binary(ordered)
            self._conn.execute(
                UPSERT_DELIVERIES_POSTGRES,
                [scope, binary_keys, fingerprints, [s or None for s in sources]],
            )
            return
        blobs = [
            bytes.fromhex("".join(ordered)),
            b"".join(fingerprints),
            b"".join(source or _NO_SOURCE for source in sources),
        ]
        widths = (_FINGERPRINT_BYTES, _FINGERPRINT_BYTES, SOURCE_FINGERPRINT_BYTES)
        if [len(blob) for blob in blobs] != [len(ordered) * w for w in widths]:
            msg = "a buffered delivery has a hash of the wrong length"
            raise ValueError(msg)
        self._conn.execute(
            UPSERT_DELIVERIES_SQLITE,
            [len(ordered), scope, *blobs, int(time.time())],
        )

    def _renew(self, conn: t.Any, scope_id: str, sources: dict[str, str]) -> None:
        scope = bytes.fromhex(scope_id)
        rows = [
            (bytes.fromhex(sources[key]), scope, bytes.fromhex(key))
            for key in sorted(sources)
        ]
        _executemany(conn, self._sql(RENEW_SOURCES), rows)

    def _resolve(self, conn: t.Any, scope_id: str, key_hashes: list[str]) -> None:
        for chunk in chunked(key_hashes, CHUNK):
            where, params = self._in("key_hash", chunk)
            conn.execute(
                self._sql(
                    "UPDATE ledger_rejects SET resolved_at = ? WHERE scope_id = ? "
                    f"AND {where} AND resolved_at IS NULL"
                ),
                [self._stamp(_now()), scope_id, *params],
            )

    def _check_lock(self) -> None:
        """Raise ``LockLost`` if the run's lock is gone (and from then on)."""
        if self._lost is None:
            try:
                self._lock_check()
            except LockLost as exc:
                self._lost = exc
        if self._lost is not None:
            self._pending = {}
            raise self._lost

    def forget_deliveries(self, scope_id: str, key_hashes: Sequence[str]) -> None:
        """Drop keys whose destination state was undone (a removed member, a
        deleted record), so the same payload is sent again if the key returns."""
        with self._lock:
            pending = self._pending.get(scope_id, {})
            renewed = self._renewed.get(scope_id, {})
            for key in key_hashes:
                pending.pop(key, None)
                renewed.pop(key, None)
            with self._errors("forget deliveries"), self._transaction() as conn:
                for chunk in chunked(key_hashes, CHUNK):
                    where, params = self._in("key_hash", _binary(chunk))
                    conn.execute(
                        self._sql(
                            f"DELETE FROM ledger_deliveries WHERE scope_id = ? AND {where}"
                        ),
                        [bytes.fromhex(scope_id), *params],
                    )

    def _siblings(self, scope: Scope) -> list[Scope]:
        """The other scopes of the same target and instance (read once a run).

        Asked after every delivered batch: once read, the list is used without
        the connection's lock, so a batch does not wait here for a flush.
        """
        scopes = self._scopes
        if scopes is None:
            with self._lock, self._errors("read scopes"):
                rows = self._rows("SELECT description FROM ledger_scopes")
                scopes = self._scopes = [Scope(**json.loads(r[0])) for r in rows]
        return [
            other
            for other in scopes
            if (other.target, other.instance) == (scope.target, scope.instance)
            and other != scope
        ]

    def forget_everywhere(self, scope: Scope, keys: Sequence[tuple[str, str]]) -> None:
        """Forget (key hash, member ID) pairs in every other scope of the same
        target and instance: a record deleted at the destination is new
        again to every stream that writes it, no mirror removes it again, and
        the rows it owned (which the destination deleted with it) are sent
        again when they come.
        """
        key_hashes = [key_hash for key_hash, _ in keys]
        for other in self._siblings(scope):
            self.forget_deliveries(other.scope_id, key_hashes)
            self.remove_members(other.scope_id, [member for _, member in keys])
            self._forget_owned(other.scope_id, key_hashes)

    def record_owners(self, scope_id: str, owned: Sequence[tuple[str, str]]) -> None:
        """Remember (owner key hash, key hash) pairs of acknowledged rows that
        belong to another record, e.g. one-to-many rows to their recipient."""
        if not owned:
            return
        scope = bytes.fromhex(scope_id)
        rows = [(scope, bytes.fromhex(o), bytes.fromhex(k)) for o, k in owned]
        with self._errors("record owners"), self._transaction() as conn:
            _executemany(
                conn,
                self._sql(
                    "INSERT INTO ledger_owners (scope_id, owner_hash, key_hash) "
                    "VALUES (?, ?, ?) "
                    "ON CONFLICT (scope_id, owner_hash, key_hash) DO NOTHING"
                ),
                rows,
            )

    def _forget_owned(self, scope_id: str, owner_hashes: Sequence[str]) -> None:
        """Forget the deliveries of a scope that the given owners owned."""
        scope = bytes.fromhex(scope_id)
        for chunk in chunked(owner_hashes, CHUNK):
            where, params = self._in("owner_hash", _binary(chunk))
            with self._errors("read owners"):
                rows = self._rows(
                    f"SELECT key_hash FROM ledger_owners WHERE scope_id = ? AND {where}",
                    [scope, *params],
                )
            if not rows:
                continue
            self.forget_deliveries(scope_id, [bytes(row[0]).hex() for row in rows])
            with self._errors("forget owners"), self._transaction() as conn:
                conn.execute(
                    self._sql(
                        f"DELETE FROM ledger_owners WHERE scope_id = ? AND {where}"
                    ),
                    [scope, *params],
                )

    def forget_deletes(self, scope: Scope, key_hashes: Sequence[str]) -> None:
        """A key written again is no longer deleted: a later delete request
        for it must go out even if it repeats an earlier one."""
        for other in self._siblings(scope):
            if other.object_type.endswith(DELETES):
                self.forget_deliveries(other.scope_id, key_hashes)

    def delivered_count(self, scope_id: str) -> int:
        """How many keys the scope holds."""
        self.flush()
        with self._errors("count deliveries"):
            [(count,)] = self._rows(
                "SELECT count(*) FROM ledger_deliveries WHERE scope_id = ?",
                [bytes.fromhex(scope_id)],
            )
        return int(count)

    # --- rejects ------------------------------------------------------------

    def record_rejects(self, scope_id: str, rejects: Sequence[RejectRow]) -> None:
        """Open (or refresh) each key's reject; a resolved one opens again."""
        if not rejects:
            return
        now = self._stamp(_now())
        rows = [
            (
                scope_id,
                r.key_hash,
                r.key,
                r.fingerprint,
                r.stream,
                r.reason,
                r.message,
                r.http_status,
                r.permanent,
                now,
                now,
            )
            for r in rejects
        ]
        with self._lock:
            self._open_rejects.add(scope_id)
            with self._errors("record rejects"), self._transaction() as conn:
                _executemany(conn, self._sql(UPSERT_REJECT), rows)

    def open_rejects(self, scope_id: str) -> int:
        """How many keys of the scope have an unresolved reject."""
        with self._errors("count rejects"):
            [(count,)] = self._rows(
                "SELECT count(*) FROM ledger_rejects WHERE scope_id = ? "
                "AND resolved_at IS NULL",
                [scope_id],
            )
        return int(count)

    # --- mirror membership ----------------------------------------------------

    def add_members(self, scope_id: str, member_ids: Iterable[str]) -> None:
        """Remember members the API confirmed as added."""
        now = self._stamp(_now())
        rows = [(scope_id, member, now) for member in member_ids]
        if not rows:
            return
        with self._errors("record members"), self._transaction() as conn:
            _executemany(
                conn,
                self._sql(
                    "INSERT INTO ledger_members (scope_id, member_id, added_at) "
                    "VALUES (?, ?, ?) ON CONFLICT (scope_id, member_id) DO NOTHING"
                ),
                rows,
            )

    def remove_members(self, scope_id: str, member_ids: Sequence[str]) -> None:
        """Forget members the API confirmed as removed."""
        with self._errors("forget members"), self._transaction() as conn:
            for chunk in chunked(member_ids, CHUNK):
                where, params = self._in("member_id", chunk)
                conn.execute(
                    self._sql(
                        f"DELETE FROM ledger_members WHERE scope_id = ? AND {where}"
                    ),
                    [scope_id, *params],
                )

    def known_members(self, scope_id: str, member_ids: Sequence[str]) -> set[str]:
        """Which of the given IDs the ledger remembers as members."""
        found: set[str] = set()
        with self._errors("read members"):
            for chunk in chunked(member_ids, CHUNK):
                where, params = self._in("member_id", chunk)
                found.update(
                    row[0]
                    for row in self._rows(
                        "SELECT member_id FROM ledger_members "
                        f"WHERE scope_id = ? AND {where}",
                        [scope_id, *params],
                    )
                )
        return found

    def member_count(self, scope_id: str) -> int:
        """How many members the ledger remembers for a group scope."""
        with self._errors("count members"):
            [(count,)] = self._rows(
                "SELECT count(*) FROM ledger_members WHERE scope_id = ?", [scope_id]
            )
        return int(count)

    def iter_members(self, scope_id: str, page: int = CHUNK) -> Iterator[list[str]]:
        """Every remembered member, in pages in key order."""
        last = ""
        while True:
            with self._errors("read members"):
                rows = self._rows(
                    "SELECT member_id FROM ledger_members WHERE scope_id = ? "
                    "AND member_id > ? ORDER BY member_id LIMIT ?",
                    [scope_id, last, page],
                )
            if not rows:
                return
            members = [row[0] for row in rows]
            yield members
            last = members[-1]

    # --- runs -----------------------------------------------------------------

    def start_run(self, run: RunRow) -> None:
        """A row for the run, marked running until ``finish_run``."""
        with self._errors("record the run"), self._transaction() as conn:
            conn.execute(
                self._sql(
                    "INSERT INTO ledger_runs (run_id, target, scopes, started_at, "
                    "status) VALUES (?, ?, ?, ?, 'running')"
                ),
                [
                    run.run_id,
                    run.target,
                    json.dumps(list(run.scopes)),
                    self._stamp(run.started_at),
                ],
            )

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        scopes: Sequence[str],
        counts: t.Mapping[str, t.Mapping[str, int]],
        error: str | None,
    ) -> None:
        """Close the run's row with its verdict and counts per stream and outcome."""
        rows = [
            (run_id, stream, outcome, count)
            for stream, outcomes in counts.items()
            for outcome, count in outcomes.items()
        ]
        with self._errors("record the run"), self._transaction() as conn:
            conn.execute(
                self._sql(
                    "UPDATE ledger_runs SET ended_at = ?, status = ?, scopes = ?, "
                    "error = ? WHERE run_id = ?"
                ),
                [self._stamp(_now()), status, json.dumps(list(scopes)), error, run_id],
            )
            _executemany(
                conn,
                self._sql(
                    "INSERT INTO ledger_run_counts (run_id, stream, outcome, count) "
                    "VALUES (?, ?, ?, ?)"
                ),
                rows,
            )

    def recent_runs(self, limit: int) -> list[dict[str, t.Any]]:
        """The newest runs with their counts summed over streams."""
        with self._errors("read runs"):
            runs = self._rows(
                "SELECT run_id, target, started_at, ended_at, status, error "
                "FROM ledger_runs ORDER BY started_at DESC LIMIT ?",
                [limit],
            )
            counts = self._rows(
                "SELECT run_id, outcome, sum(count) FROM ledger_run_counts "
                "GROUP BY run_id, outcome"
            )
        totals: dict[str, dict[str, int]] = {}
        for run_id, outcome, count in counts:
            totals.setdefault(run_id, {})[outcome] = int(count)
        columns = ("run_id", "target", "started_at", "ended_at", "status", "error")
        return [
            {**dict(zip(columns, row, strict=True)), "counts": totals.get(row[0], {})}
            for row in runs
        ]

    def open_reject_list(self, limit: int) -> list[dict[str, t.Any]]:
        """Unresolved rejects, most recently seen first."""
        columns = (
            "stream",
            "destination_key",
            "reason",
            "message",
            "http_status",
            "permanent",
            "first_seen",
            "last_seen",
        )
        with self._errors("read rejects"):
            rows = self._rows(
                f"SELECT {', '.join(columns)} FROM ledger_rejects "
                "WHERE resolved_at IS NULL ORDER BY last_seen DESC LIMIT ?",
                [limit],
            )
        return [dict(zip(columns, row, strict=True)) for row in rows]

    # --- daily call budget ----------------------------------------------------

    def calls_today(self, instance: str, day: str) -> int:
        """Calls recorded for an instance on a UTC day (``YYYY-MM-DD``)."""
        with self._errors("read the call budget"):
            rows = self._rows(
                "SELECT calls FROM ledger_calls WHERE instance = ? AND day = ?",
                [instance, day],
            )
        return int(rows[0][0]) if rows else 0

    def reserve_calls(self, instance: str, day: str, wanted: int, budget: int) -> int:
        """Take up to ``wanted`` calls of the day's budget; returns how many.

        Atomic across every runner sharing the ledger: the count never passes
        ``budget``.
        """
        with self._errors("reserve calls"), self._transaction() as conn:
            conn.execute(
                self._sql(
                    "INSERT INTO ledger_calls (instance, day, calls) VALUES (?, ?, 0) "
                    "ON CONFLICT (instance, day) DO NOTHING"
                ),
                [instance, day],
            )
            if self.dialect == "postgresql":
                conn.execute(
                    "SELECT calls FROM ledger_calls WHERE instance = %s AND day = %s "
                    "FOR UPDATE",
                    [instance, day],
                )
            (used,) = conn.execute(
                self._sql(
                    "SELECT calls FROM ledger_calls WHERE instance = ? AND day = ?"
                ),
                [instance, day],
            ).fetchone()
            granted = max(0, min(wanted, budget - int(used)))
            if granted:
                conn.execute(
                    self._sql(
                        "UPDATE ledger_calls SET calls = calls + ? "
                        "WHERE instance = ? AND day = ?"
                    ),
                    [granted, instance, day],
                )
        return granted

    def return_calls(self, instance: str, day: str, unused: int) -> None:
        """Give back reserved calls that were not made."""
        if unused <= 0:
            return
        with self._errors("return calls"), self._transaction() as conn:
            conn.execute(
                self._sql(
                    "UPDATE ledger_calls SET calls = calls - ? "
                    "WHERE instance = ? AND day = ? AND calls >= ?"
                ),
                [unused, instance, day, unused],
            )

    # --- run lock -------------------------------------------------------------

    @contextlib.contextmanager
    def run_lock(
        self, name: str, timeout: float, wait: t.Callable[[float], None] = time.sleep
    ) -> Iterator[None]:
        """Hold an exclusive lock for one destination for the whole run.

        The lock dies with the process (a file lock next to a SQLite ledger,
        a session advisory lock in PostgreSQL), so a run killed with SIGKILL
        leaves no stale lock. ``wait`` sleeps between attempts (the caller
        makes it interruptible).
        """
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        if self.dialect == "postgresql":
            holder: _Lock = _PgLock(self, int.from_bytes(digest, "big", signed=True))
        else:
            holder = _FileLock(self.url.location, digest.hex())
        deadline = time.monotonic() + timeout
        with self._errors("take the run lock"):
            while not holder.try_acquire():
                if time.monotonic() >= deadline:
                    holder.release()
                    msg = (
                        f"another run is writing to {name} with the same ledger "
                        f"and still held the ledger lock after {timeout:.0f} s; "
                        "let it finish (or raise ledger_lock_timeout) before "
                        "starting this one"
                    )
                    raise LedgerBusy(msg)
                wait(0.2)
        self._lock_check = holder.check
        try:
            yield
        finally:
            self._lock_check = lambda: None
            holder.release()


class _Lock(t.Protocol):
    def try_acquire(self) -> bool: ...

    def check(self) -> None: ...

    def release(self) -> None: ...


class _FileLock:
    """``filelock`` next to the SQLite file; the lock file goes with the run.

    The file is unlinked while the lock is still held: a run waiting on the
    old file then sees it was unlinked (filelock checks) and locks a new one.
    """

    def __init__(self, database: str | None, suffix: str) -> None:
        import filelock

        self._path = f"{database}.{suffix}.lock"
        self._lock = filelock.FileLock(self._path, timeout=0) if database else None
        self._timeout = filelock.Timeout

    def try_acquire(self) -> bool:
        if self._lock is None:
            return True
        try:
            self._lock.acquire(timeout=0)
        except self._timeout:
            return False
        return True

    def check(self) -> None:
        """A file lock cannot be lost while the process lives."""

    def release(self) -> None:
        if self._lock is not None and self._lock.is_locked:
            with contextlib.suppress(FileNotFoundError):
                Path(self._path).unlink()
            self._lock.release()


class _PgLock:
    """A session advisory lock on a connection of its own.

    The lock lives as long as that connection: ``check`` asks the server
    whether it still holds it, so a run whose connection dropped (and whose
    lock a second run may now hold) stops before it writes again.
    """

    def __init__(self, ledger: Ledger, key: int) -> None:
        self._key = key
        self._conn = _pg_connect(t.cast(str, ledger.url.location))
        self._url = ledger.url

    def try_acquire(self) -> bool:
        row = self._conn.execute(
            "SELECT pg_try_advisory_lock(%s)", [self._key]
        ).fetchone()
        return bool(row and row[0])

    def check(self) -> None:
        try:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid() AND granted",
            ).fetchone()
        except Exception as exc:  # any driver error means the session is gone
            raise self._lost(exc) from exc
        if not row or not row[0]:
            raise self._lost(None)

    def _lost(self, exc: BaseException | None) -> LockLost:
        cause = (
            f" ({scrub(' '.join(str(exc).split()), self._url.given)})" if exc else ""
        )
        return LockLost(
            f"the run lost its ledger lock: the connection to ledger_url "
            f"{self._url.redacted!r} holding it dropped{cause}, so another run may be "
            "writing to the same destination; this run stopped before writing "
            "again. Run it again once the other run is done."
        )

    def release(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


def _pg_connect(location: str) -> psycopg.Connection[t.Any]:
    import psycopg

    return psycopg.connect(
        location, autocommit=True, connect_timeout=15, application_name="ledger"
    )


def _executemany(conn: t.Any, statement: str, rows: Sequence[Sequence[t.Any]]) -> None:
    """``executemany`` on either driver (psycopg's lives on a cursor)."""
    if not rows:
        return
    if isinstance(conn, sqlite3.Connection):
        conn.executemany(statement, rows)
        return
    with conn.cursor() as cursor:
        cursor.executemany(statement, rows)


_ON_CONFLICT = (
    "ON CONFLICT (scope_id, key_hash) DO UPDATE SET fingerprint = "
    "excluded.fingerprint, source_fingerprint = excluded.source_fingerprint, "
    "delivered_at = excluded.delivered_at"
)
#: Parameters: the row count, the scope, then the key hashes, fingerprints
#: and source fingerprints (zeros for none), each one blob of fixed-width
#: values, and the time.
UPSERT_DELIVERIES_SQLITE = (
    "WITH RECURSIVE entry (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM entry "
    "WHERE n + 1 < ?1) INSERT INTO ledger_deliveries (scope_id, key_hash, "
    "fingerprint, source_fingerprint, delivered_at) SELECT ?2, "
    f"substr(?3, n * {_FINGERPRINT_BYTES} + 1, {_FINGERPRINT_BYTES}), "
    f"substr(?4, n * {_FINGERPRINT_BYTES} + 1, {_FINGERPRINT_BYTES}), "
    f"nullif(substr(?5, n * {SOURCE_FINGERPRINT_BYTES} + 1, "
    f"{SOURCE_FINGERPRINT_BYTES}), zeroblob({SOURCE_FINGERPRINT_BYTES})), "
    f"?6 FROM entry WHERE true {_ON_CONFLICT}"
)
UPSERT_DELIVERIES_POSTGRES = (
    "INSERT INTO ledger_deliveries (scope_id, key_hash, fingerprint, "
    "source_fingerprint, delivered_at) SELECT %s, given.key_hash, given.fingerprint, "
    "given.source_fingerprint, CURRENT_TIMESTAMP "
    "FROM unnest(%s::bytea[], %s::bytea[], %s::bytea[]) "
    f"AS given (key_hash, fingerprint, source_fingerprint) {_ON_CONFLICT}"
)
RENEW_SOURCES = (
    "UPDATE ledger_deliveries SET source_fingerprint = ? "
    "WHERE scope_id = ? AND key_hash = ?"
)
UPSERT_REJECT = (
    "INSERT INTO ledger_rejects (scope_id, key_hash, destination_key, fingerprint, "
    "stream, reason, message, http_status, permanent, first_seen, last_seen) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope_id, key_hash) "
    "DO UPDATE SET destination_key = excluded.destination_key, "
    "fingerprint = excluded.fingerprint, stream = excluded.stream, "
    "reason = excluded.reason, message = excluded.message, "
    "http_status = excluded.http_status, permanent = excluded.permanent, "
    "last_seen = excluded.last_seen, first_seen = CASE WHEN "
    "ledger_rejects.resolved_at IS NULL THEN ledger_rejects.first_seen "
    "ELSE excluded.first_seen END, resolved_at = NULL"
)


def _v1(dialect: str) -> list[str]:
    """The first schema: scopes, deliveries and mirror members."""
    stamp = "TIMESTAMP WITH TIME ZONE" if dialect == "postgresql" else "DATETIME"
    rowid = " WITHOUT ROWID" if dialect == "sqlite" else ""
    return [
        (
            "CREATE TABLE ledger_scopes (scope_id VARCHAR(32) PRIMARY KEY, "
            f"description TEXT NOT NULL, created_at {stamp} NOT NULL)"
        ),
        (
            "CREATE TABLE ledger_deliveries (scope_id VARCHAR(32) NOT NULL, "
            "key_hash VARCHAR(32) NOT NULL, fingerprint VARCHAR(32) NOT NULL, "
            f"delivered_at {stamp} DEFAULT CURRENT_TIMESTAMP NOT NULL, "
            f"PRIMARY KEY (scope_id, key_hash)){rowid}"
        ),
        (
            "CREATE TABLE ledger_members (scope_id VARCHAR(32) NOT NULL, "
            f"member_id VARCHAR(512) NOT NULL, added_at {stamp} NOT NULL, "
            "PRIMARY KEY (scope_id, member_id))"
        ),
    ]


def _v2(dialect: str) -> list[str]:
    """Rejects (quarantine and the open list), run history, the call budget."""
    stamp = "TIMESTAMP WITH TIME ZONE" if dialect == "postgresql" else "DATETIME"
    return [
        (
            "CREATE TABLE ledger_rejects (scope_id VARCHAR(32) NOT NULL, "
            "key_hash VARCHAR(32) NOT NULL, destination_key TEXT, "
            "fingerprint VARCHAR(32), stream TEXT NOT NULL, reason TEXT NOT NULL, "
            "message TEXT NOT NULL, http_status INTEGER, permanent BOOLEAN NOT NULL, "
            f"first_seen {stamp} NOT NULL, last_seen {stamp} NOT NULL, "
            f"resolved_at {stamp}, PRIMARY KEY (scope_id, key_hash))"
        ),
        (
            "CREATE TABLE ledger_runs (run_id VARCHAR(32) PRIMARY KEY, "
            f"target TEXT NOT NULL, scopes TEXT NOT NULL, started_at {stamp} NOT NULL, "
            f"ended_at {stamp}, status VARCHAR(16) NOT NULL, error TEXT)"
        ),
        (
            "CREATE TABLE ledger_run_counts (run_id VARCHAR(32) NOT NULL, "
            "stream TEXT NOT NULL, outcome VARCHAR(32) NOT NULL, count BIGINT NOT NULL, "
            "PRIMARY KEY (run_id, stream, outcome))"
        ),
        (
            "CREATE TABLE ledger_calls (instance TEXT NOT NULL, day VARCHAR(10) NOT NULL, "
            "calls BIGINT NOT NULL, PRIMARY KEY (instance, day))"
        ),
    ]


def _v3(dialect: str) -> list[str]:
    """Compact deliveries, and the owners of rows that belong to a record.

    Deliveries keep their three ids as 16-byte binary, not 32-char hex. A row
    shrinks from about 125 to 60 bytes in SQLite (its timestamp becomes Unix
    seconds too), so a million keys need half the pages, and each flush and
    lookup reads and writes that much less. A row whose ids are not hashes as
    this ledger writes them is dropped: its record is sent once more, the
    safe direction.

    ``ledger_owners`` maps a row's key to its owner's (a one-to-many row to
    its recipient), so deleting the owner forgets its rows too. Rows
    delivered before this version have no owner recorded.
    """
    binary = _binary_type(dialect)
    rowid = " WITHOUT ROWID" if dialect == "sqlite" else ""
    owners = (
        f"CREATE TABLE ledger_owners (scope_id {binary} NOT NULL, "
        f"owner_hash {binary} NOT NULL, key_hash {binary} NOT NULL, "
        f"PRIMARY KEY (scope_id, owner_hash, key_hash)){rowid}"
    )
    return [*_binary_deliveries(dialect), owners]


def _binary_deliveries(dialect: str) -> list[str]:
    """Schema 3's conversion of the deliveries from hex text to binary."""
    if dialect == "postgresql":
        valid = " ~ '^[0-9a-f]{32}$'"
        binary = ", ".join(
            f"ALTER COLUMN {column} TYPE BYTEA USING decode({column}, 'hex')"
            for column in ("scope_id", "key_hash", "fingerprint")
        )
        return [
            (
                f"DELETE FROM ledger_deliveries WHERE NOT (scope_id{valid} "
                f"AND key_hash{valid} AND fingerprint{valid})"
            ),
            f"ALTER TABLE ledger_deliveries {binary}",
        ]
    return [
        (
            "CREATE TABLE ledger_deliveries_v3 (scope_id BLOB NOT NULL, "
            "key_hash BLOB NOT NULL, fingerprint BLOB NOT NULL, "
            "delivered_at INTEGER NOT NULL, PRIMARY KEY (scope_id, key_hash)) "
            "WITHOUT ROWID"
        ),
        (
            "INSERT INTO ledger_deliveries_v3 SELECT * FROM (SELECT "
            f"{_UNHEX}(scope_id) AS scope_id, {_UNHEX}(key_hash) AS key_hash, "
            f"{_UNHEX}(fingerprint) AS fingerprint, "
            "coalesce(CAST(strftime('%s', delivered_at) AS INTEGER), 0) "
            "AS delivered_at "
            "FROM ledger_deliveries) WHERE scope_id IS NOT NULL "
            "AND key_hash IS NOT NULL AND fingerprint IS NOT NULL"
        ),
        "DROP TABLE ledger_deliveries",
        "ALTER TABLE ledger_deliveries_v3 RENAME TO ledger_deliveries",
    ]


def _v4(dialect: str) -> list[str]:
    """Source fingerprints: a record unchanged at the source skips mapping.

    A nullable column, added in place (no rewrite in either database); rows
    delivered before have none, and get one the first time their record is
    read again unchanged.
    """
    column = f"source_fingerprint {_binary_type(dialect)}"
    return [f"ALTER TABLE ledger_deliveries ADD COLUMN {column}"]


def _binary_type(dialect: str) -> str:
    """The column type of hashes from schema 3 on."""
    return "BYTEA" if dialect == "postgresql" else "BLOB"


#: The SQL function ``_v3`` converts hex with (SQLite has ``unhex`` only
#: from 3.41, newer than many systems' Python ships).
_UNHEX = "ledger_unhex"
_HASH = re.compile("[0-9a-f]{32}")


def _unhex(text: object) -> bytes | None:
    """A ledger hash as bytes; None for anything this ledger did not write."""
    return (
        bytes.fromhex(text) if isinstance(text, str) and _HASH.fullmatch(text) else None
    )


def _split(buffered: bytes) -> tuple[str, str | None]:
    """A buffered delivery's payload and source fingerprints, in hex."""
    source = buffered[_FINGERPRINT_BYTES:]
    return buffered[:_FINGERPRINT_BYTES].hex(), source.hex() if source else None


def _binary(hex_ids: Iterable[str]) -> list[bytes]:
    """Hex hashes as the deliveries table stores them."""
    return list(map(bytes.fromhex, hex_ids))


#: MIGRATIONS[n] brings a ledger from schema version n to n + 1.
MIGRATIONS: list[t.Callable[[str], list[str]]] = [_v1, _v2, _v3, _v4]
