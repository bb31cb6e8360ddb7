"""The ledger on SQLite and PostgreSQL: lookups, commits, members, lock, schema."""

from __future__ import annotations

import contextlib
import datetime
import sqlite3
import threading
import typing as t
from pathlib import Path

import psycopg
import pytest

from singer_delivery.ledger import (
    SCHEMA_VERSION,
    SQLITE_CHECKPOINT_BYTES,
    SQLITE_PAGE_SIZE,
    Ledger,
    LedgerBusy,
    LedgerError,
    LedgerUrl,
    RejectRow,
    Scope,
    default_ledger_url,
    redact_url,
)
from singer_delivery.serialization import hex_digest
from tests.older_ledgers import older_ledger

SCOPE = Scope("target-x", "api.example", "recipients", "EMAIL", "customers")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return t.cast(str, request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def ledger(url: str) -> Ledger:
    return Ledger.open(url)


def h(name: str) -> str:
    """A key hash or fingerprint as the targets give the ledger: 32 hex digits."""
    return hex_digest(name.encode())


def fingerprints(ledger: Ledger, keys: list[str]) -> dict[str, str | None]:
    return {k: v.fingerprint for k, v in ledger.lookup(SCOPE.scope_id, keys).items()}


def test_fingerprints_round_trip_in_chunks_and_update_in_place(ledger: Ledger) -> None:
    ledger.register(SCOPE)
    pairs = [(h(f"k{i}"), h(f"f{i}")) for i in range(1203)]
    ledger.record_deliveries(SCOPE.scope_id, [(k, f, None) for k, f in pairs])
    found = fingerprints(ledger, [k for k, _ in pairs] + [h("missing")])
    assert found == dict(pairs)

    ledger.record_deliveries(SCOPE.scope_id, [(h("k1"), h("new"), None)])
    assert fingerprints(ledger, [h("k1")]) == {h("k1"): h("new")}
    assert ledger.delivered_count(SCOPE.scope_id) == 1203


def test_scopes_are_isolated(ledger: Ledger) -> None:
    other = Scope("target-x", "api.example", "recipients", "EMAIL", "leads")
    ledger.record_deliveries(SCOPE.scope_id, [(h("k"), h("f"), None)])
    assert ledger.lookup(other.scope_id, [h("k")]) == {}
    assert SCOPE.scope_id != other.scope_id


@pytest.mark.parametrize("flushed", [True, False])
def test_deleting_an_owner_forgets_the_rows_it_owned(
    ledger: Ledger, flushed: bool
) -> None:
    """One-to-many rows go with their recipient, flushed or still buffered."""
    rows = Scope("target-x", "api.example", "one_to_many", "ORDERS", "orders")
    deletes = Scope("target-x", "api.example", "recipient_deletes", "EMAIL", "gone")
    other = Scope("target-x", "other.example", "one_to_many", "ORDERS", "orders")
    for scope in (SCOPE, rows, deletes, other):
        ledger.register(scope)
    owned = {h("o-1"): "ada", h("o-2"): "ada", h("o-3"): "bob"}
    for scope in (rows, other):
        ledger.record_owners(scope.scope_id, [(h(o), k) for k, o in owned.items()])
        ledger.record_deliveries(scope.scope_id, [(k, h("f"), None) for k in owned])
    if flushed:
        ledger.flush()

    ledger.forget_everywhere(deletes, [(h("ada"), "ada")])
    assert ledger.lookup(rows.scope_id, list(owned)).keys() == {h("o-3")}
    assert ledger.lookup(other.scope_id, list(owned)).keys() == set(owned)
    ledger.flush()
    assert ledger.delivered_count(rows.scope_id) == 1


def test_members_are_streamed_in_pages(ledger: Ledger) -> None:
    ids = [f"user{i}@example.com" for i in range(1100)]
    ledger.add_members(SCOPE.scope_id, ids)
    ledger.add_members(SCOPE.scope_id, ids[:10])
    assert ledger.member_count(SCOPE.scope_id) == 1100
    pages = list(ledger.iter_members(SCOPE.scope_id, page=300))
    assert [len(p) for p in pages] == [300, 300, 300, 200]
    assert sorted(m for p in pages for m in p) == sorted(ids)
    ledger.remove_members(SCOPE.scope_id, ids[:600])
    remaining = [m for p in ledger.iter_members(SCOPE.scope_id) for m in p]
    assert sorted(remaining) == sorted(ids[600:])


def test_parallel_commits_from_threads_are_all_kept(ledger: Ledger) -> None:
    def commit(worker: int) -> None:
        pairs = [(h(f"w{worker}-{i}"), h("f"), None) for i in range(200)]
        ledger.record_deliveries(SCOPE.scope_id, pairs)

    threads = [threading.Thread(target=commit, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.delivered_count(SCOPE.scope_id) == 1600


def test_a_delivered_batch_does_not_wait_for_a_flush(ledger: Ledger) -> None:
    """Once the scopes are read, settling a batch asks for them without the
    connection's lock, which a flush of a large ledger holds for long."""
    rows = Scope("target-x", "api.example", "one_to_many", "ORDERS", "orders")
    for scope in (SCOPE, rows):
        ledger.register(scope)
    ledger.forget_deletes(SCOPE, [h("k")])  # reads the scopes once
    done = threading.Event()
    holding = threading.Event()
    release = threading.Event()

    def flush_in_progress() -> None:
        with ledger._lock:  # as a flush holds it
            holding.set()
            release.wait(10)

    def settle() -> None:
        ledger.forget_deletes(SCOPE, [h("k")])  # no deletes scope to forget in
        done.set()

    holder = threading.Thread(target=flush_in_progress)
    holder.start()
    holding.wait(10)
    threading.Thread(target=settle).start()
    try:
        assert done.wait(5)
    finally:
        release.set()
        holder.join()


def test_a_new_sqlite_ledger_has_large_pages_and_an_older_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    """New files get ``SQLITE_PAGE_SIZE``; the write-ahead log is copied back
    after ``SQLITE_CHECKPOINT_BYTES`` whatever the page size."""
    older = tmp_path / "older.sqlite"
    with contextlib.closing(sqlite3.connect(older)) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE t (x)")
    for path, size in ((tmp_path / "new.sqlite", SQLITE_PAGE_SIZE), (older, 4096)):
        ledger = Ledger.open(f"sqlite:///{path}")
        conn = ledger._conn
        assert conn.execute("PRAGMA page_size").fetchone() == (size,)
        (pages,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert pages * size == SQLITE_CHECKPOINT_BYTES
        ledger.close()


def test_run_lock_is_exclusive_and_released(url: str, ledger: Ledger) -> None:
    second = Ledger.open(url)
    with ledger.run_lock("target-x api.example", timeout=1):
        with (
            pytest.raises(LedgerBusy, match="another run is writing"),
            second.run_lock("target-x api.example", timeout=0.3),
        ):
            pass
        with second.run_lock("target-x other.example", timeout=0.3):
            pass
    with second.run_lock("target-x api.example", timeout=0.3):
        pass


def test_the_sqlite_lock_file_goes_with_the_run(tmp_path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    with ledger.run_lock("target-x api.example", timeout=1):
        assert list(tmp_path.glob("*.lock"))
    assert not list(tmp_path.glob("*.lock"))


def test_urls() -> None:
    assert LedgerUrl.parse("postgresql+psycopg://u@h/db").location == (
        "postgresql://u@h/db"
    )
    assert LedgerUrl.parse("sqlite:///x.db").location == "x.db"
    assert LedgerUrl.parse("sqlite://").location is None
    with pytest.raises(LedgerError, match="ledger_url uses 'mysql'"):
        LedgerUrl.parse("mysql://u@h/db")
    assert default_ledger_url({"MELTANO_PROJECT_ROOT": "/p"}) == (
        "sqlite:////p/.meltano/delivery-ledger.sqlite"
    )


def test_passwords_never_appear_in_messages() -> None:
    assert redact_url("postgresql://u:s3cret@h/db") == "postgresql://u:***@h/db"
    with pytest.raises(LedgerError) as raised:
        LedgerUrl.parse("mysql://u:s3cret@h/db")
    assert "s3cret" not in str(raised.value)
    with pytest.raises(LedgerError) as refused:
        Ledger.open("postgresql://u:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(refused.value)
    assert "ledger_url" in str(refused.value)
    assert "***" in str(refused.value)


def test_buffered_deliveries_are_visible_before_and_after_the_flush(
    url: str, ledger: Ledger
) -> None:
    a, b = h("a"), h("b")
    ledger.record_deliveries(SCOPE.scope_id, [(a, h("1"), None), (b, h("2"), None)])
    assert fingerprints(ledger, [a, b]) == {a: h("1"), b: h("2")}
    ledger.forget_deliveries(SCOPE.scope_id, [b])
    ledger.flush()
    fresh = Ledger.open(url)
    assert fingerprints(fresh, [a, b]) == {a: h("1")}


def sources(ledger: Ledger, keys: list[str]) -> dict[str, str | None]:
    return {k: v.source for k, v in ledger.lookup(SCOPE.scope_id, keys).items()}


@pytest.mark.parametrize("flushed", [False, True])
def test_source_fingerprints_are_kept_with_the_payloads(
    ledger: Ledger, flushed: bool
) -> None:
    a, b = h("a"), h("b")
    source = "12ab" + "00" * 8
    ledger.record_deliveries(SCOPE.scope_id, [(a, h("1"), source), (b, h("2"), None)])
    if flushed:
        ledger.flush()
    assert sources(ledger, [a, b]) == {a: source, b: None}
    assert fingerprints(ledger, [a, b]) == {a: h("1"), b: h("2")}


def test_renewed_sources_change_only_rows_that_exist_and_never_a_later_delivery(
    url: str, ledger: Ledger
) -> None:
    """Renewing writes the source fingerprint alone, at the next flush; a
    delivery of the same key recorded after it keeps its own."""
    a, b, c = h("a"), h("b"), h("c")
    old, renewed, delivered = (
        ("aaaa" + "11" * 8),
        ("bbbb" + "22" * 8),
        ("cccc" + "33" * 8),
    )
    ledger.record_deliveries(SCOPE.scope_id, [(a, h("1"), old), (b, h("2"), old)])
    ledger.flush()
    ledger.renew_sources(SCOPE.scope_id, [(a, renewed), (b, renewed), (c, renewed)])
    ledger.record_deliveries(SCOPE.scope_id, [(b, h("3"), delivered)])
    ledger.flush()

    fresh = Ledger.open(url)
    assert sources(fresh, [a, b, c]) == {a: renewed, b: delivered}
    assert fingerprints(fresh, [a, b, c]) == {a: h("1"), b: h("3")}


def reject(key: str, fingerprint: str, *, permanent: bool = True) -> RejectRow:
    return RejectRow(
        key, f"{key}@example.com", fingerprint, "s", "refused", "no", 400, permanent
    )


def test_permanent_rejects_quarantine_their_payload_until_delivered(
    ledger: Ledger,
) -> None:
    a, b, c = h("a"), h("b"), h("c")
    ledger.register(SCOPE)
    ledger.record_rejects(
        SCOPE.scope_id, [reject(a, h("fa")), reject(b, h("fb"), permanent=False)]
    )
    known = ledger.lookup(SCOPE.scope_id, [a, b, c])
    assert (known[a].refused_fingerprint, known[a].refused_reason) == (
        h("fa"),
        "refused",
    )
    assert b not in known  # transient: never quarantined
    assert ledger.lookup(SCOPE.scope_id, [a], quarantine=False) == {}
    assert ledger.open_rejects(SCOPE.scope_id) == 2

    ledger.record_deliveries(SCOPE.scope_id, [(a, h("fa2"), None)])
    ledger.flush()
    assert ledger.open_rejects(SCOPE.scope_id) == 1
    assert ledger.lookup(SCOPE.scope_id, [a])[a].refused_fingerprint is None


def test_a_flush_cut_short_keeps_only_what_it_wrote_and_sends_the_rest_again(
    url: str, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries go in statements of 1000 keys in key order, after the
    rejects they resolve: a flush that fails after its first statement
    leaves those 1000 recorded and the rest unknown (so sent again), and
    never a reject open for a recorded delivery."""
    keys = sorted(h(f"k{i}") for i in range(1500))
    written, unwritten = keys[:1000], keys[1000:]
    ledger.register(SCOPE)
    ledger.record_rejects(
        SCOPE.scope_id, [reject(written[0], h("old")), reject(unwritten[0], h("old"))]
    )
    ledger.record_deliveries(SCOPE.scope_id, [(k, h("f"), None) for k in keys])
    upsert = ledger._upsert_deliveries
    statements: list[int] = []

    def fail_after_the_first(*args: t.Any) -> None:
        statements.append(len(args[1]))
        if len(statements) > 1:
            raise OSError("disk full")
        upsert(*args)

    monkeypatch.setattr(ledger, "_upsert_deliveries", fail_after_the_first)
    with pytest.raises(LedgerError, match="could not record deliveries"):
        ledger.flush()
    assert statements == [1000, 500]

    fresh = Ledger.open(url)
    assert set(fingerprints(fresh, keys)) == set(written)
    assert fresh.open_rejects(SCOPE.scope_id) == 0


def test_calls_are_reserved_atomically_up_to_the_budget(url: str) -> None:
    ledgers = [Ledger.open(url) for _ in range(4)]
    granted: list[int] = []

    def reserve(ledger: Ledger) -> None:
        granted.extend(
            ledger.reserve_calls("api.example", "2026-12-01", 7, 100) for _ in range(20)
        )

    threads = [threading.Thread(target=reserve, args=(x,)) for x in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 100
    ledgers[0].return_calls("api.example", "2026-12-01", 30)
    assert ledgers[1].calls_today("api.example", "2026-12-01") == 70


V1_SQLITE = """
CREATE TABLE ledger_scopes (scope_id VARCHAR(32) NOT NULL, description TEXT NOT NULL,
    created_at DATETIME NOT NULL, PRIMARY KEY (scope_id));
CREATE TABLE ledger_deliveries (scope_id VARCHAR(32) NOT NULL, key_hash VARCHAR(32)
    NOT NULL, fingerprint VARCHAR(32) NOT NULL, delivered_at DATETIME DEFAULT
    (CURRENT_TIMESTAMP) NOT NULL, PRIMARY KEY (scope_id, key_hash)) WITHOUT ROWID;
CREATE TABLE ledger_members (scope_id VARCHAR(32) NOT NULL, member_id VARCHAR(512)
    NOT NULL, added_at DATETIME NOT NULL, PRIMARY KEY (scope_id, member_id));
INSERT INTO ledger_deliveries (scope_id, key_hash, fingerprint) VALUES
    ('{scope}', '{key}', '{fingerprint}');
"""


def test_a_ledger_of_the_first_schema_is_migrated_in_place(tmp_path: Path) -> None:
    """The tables as the first release's SQLAlchemy models created them."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            V1_SQLITE.format(scope=SCOPE.scope_id, key=h("k1"), fingerprint=h("f1"))
        )
    ledger = Ledger.open(f"sqlite:///{path}")
    assert fingerprints(ledger, [h("k1")]) == {h("k1"): h("f1")}
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute(
            "SELECT value FROM ledger_meta WHERE name = 'schema_version'"
        ).fetchone()
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert int(version) == SCHEMA_VERSION
    assert {"ledger_rejects", "ledger_runs", "ledger_run_counts"} <= tables


def connect(url: str) -> t.Any:
    """A plain driver connection to the test's ledger database."""
    if url.startswith("sqlite"):
        return sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    return psycopg.connect(url, autocommit=True)


def second_schema(url: str, rows: list[tuple[str, str, str]]) -> None:
    """A ledger as release 2 left it, its deliveries in hex text."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    with contextlib.closing(connect(url)) as conn:
        for statement in older_ledger(dialect, 2, rows):
            conn.execute(statement)


def test_hex_deliveries_become_binary_and_stay_known(url: str) -> None:
    """Every delivery kept through the v3 migration; only non-hashes dropped."""
    pairs = [(h(f"k{i}"), h(f"f{i}")) for i in range(50)]
    rows = [(SCOPE.scope_id, key, fingerprint) for key, fingerprint in pairs]
    rows.append((SCOPE.scope_id, "not a hash", h("f")))
    second_schema(url, rows)

    ledger = Ledger.open(url)
    assert fingerprints(ledger, [k for k, _ in pairs]) == dict(pairs)
    assert ledger.delivered_count(SCOPE.scope_id) == 50
    with contextlib.closing(connect(url)) as conn:
        stored = conn.execute(
            "SELECT scope_id, key_hash, fingerprint, delivered_at "
            "FROM ledger_deliveries"
        ).fetchall()
    assert {(bytes(k).hex(), bytes(f).hex()) for _, k, f, _ in stored} == set(pairs)
    assert {bytes(scope).hex() for scope, *_ in stored} == {SCOPE.scope_id}
    for *_, delivered_at in stored:  # Unix seconds in SQLite, kept as is in PostgreSQL
        when = (
            datetime.datetime.fromtimestamp(delivered_at, datetime.UTC)
            if isinstance(delivered_at, int)
            else delivered_at
        )
        age = datetime.datetime.now(datetime.UTC) - when
        assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=5)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    Ledger.open(url).close()
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        conn.execute("UPDATE ledger_meta SET value = '99'")
    with pytest.raises(LedgerError, match="newer release"):
        Ledger.open(url)


def test_postgres_migration_is_safe_for_concurrent_runners(postgres_url: str) -> None:
    errors: list[BaseException] = []

    def open_ledger() -> None:
        try:
            Ledger.open(postgres_url).close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=open_ledger) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT value FROM ledger_meta WHERE name = 'schema_version'"
        ).fetchone()
    assert row is not None
    (version,) = row
    assert int(version) == SCHEMA_VERSION
