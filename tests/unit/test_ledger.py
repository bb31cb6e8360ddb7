"""The ledger on SQLite and PostgreSQL: lookups, commits, members, lock."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from singer_delivery.ledger import (
    Ledger,
    LedgerBusy,
    Scope,
    default_ledger_url,
    normalize_url,
    validate_ledger_url,
)

SCOPE = Scope("target-x", "api.example", "recipients", "EMAIL", "customers")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    if request.param == "postgres":
        return Ledger(request.getfixturevalue("postgres_url"))
    return Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def test_fingerprints_round_trip_in_chunks_and_update_in_place(ledger: Ledger) -> None:
    ledger.register(SCOPE)
    pairs = [(f"k{i:05d}", f"f{i}") for i in range(1203)]
    ledger.record_deliveries(SCOPE.scope_id, pairs)
    found = ledger.fingerprints(SCOPE.scope_id, [k for k, _ in pairs] + ["missing"])
    assert found == dict(pairs)

    ledger.record_deliveries(SCOPE.scope_id, [("k00001", "new")])
    assert ledger.fingerprints(SCOPE.scope_id, ["k00001"]) == {"k00001": "new"}
    assert ledger.delivered_count(SCOPE.scope_id) == 1203


def test_scopes_are_isolated(ledger: Ledger) -> None:
    other = Scope("target-x", "api.example", "recipients", "EMAIL", "leads")
    ledger.record_deliveries(SCOPE.scope_id, [("k", "f")])
    assert ledger.fingerprints(other.scope_id, ["k"]) == {}
    assert SCOPE.scope_id != other.scope_id


def test_members_are_streamed_in_pages(ledger: Ledger) -> None:
    ids = [f"user{i}@example.com" for i in range(1100)]
    ledger.add_members(SCOPE.scope_id, ids)
    ledger.add_members(SCOPE.scope_id, ids[:10])
    assert ledger.member_count(SCOPE.scope_id) == 1100
    assert sorted(ledger.iter_members(SCOPE.scope_id, batch=300)) == sorted(ids)
    ledger.remove_members(SCOPE.scope_id, ids[:600])
    assert sorted(ledger.iter_members(SCOPE.scope_id)) == sorted(ids[600:])


def test_parallel_commits_from_threads_are_all_kept(ledger: Ledger) -> None:
    def commit(worker: int) -> None:
        pairs = [(f"w{worker}-{i}", "f") for i in range(200)]
        ledger.record_deliveries(SCOPE.scope_id, pairs)

    threads = [threading.Thread(target=commit, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.delivered_count(SCOPE.scope_id) == 1600


def test_run_lock_is_exclusive_and_released(ledger: Ledger) -> None:
    second = Ledger(str(ledger.url.render_as_string(hide_password=False)))
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


def test_urls() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert validate_ledger_url("mysql://u@h/db") is not None
    assert validate_ledger_url("sqlite:///x.db") is None
    assert default_ledger_url({"MELTANO_PROJECT_ROOT": "/p"}) == (
        "sqlite:////p/.meltano/delivery-ledger.sqlite"
    )


def test_buffered_deliveries_are_visible_before_and_after_the_flush(
    ledger: Ledger,
) -> None:
    ledger.record_deliveries(SCOPE.scope_id, [("a", "1"), ("b", "2")])
    assert ledger.fingerprints(SCOPE.scope_id, ["a", "b"]) == {"a": "1", "b": "2"}
    ledger.forget_deliveries(SCOPE.scope_id, ["b"])
    ledger.flush()
    fresh = Ledger(ledger.url.render_as_string(hide_password=False))
    assert fresh.fingerprints(SCOPE.scope_id, ["a", "b"]) == {"a": "1"}
