"""Canonical JSON and fingerprints."""

from __future__ import annotations

import datetime
import decimal
import json

import pytest

from singer_delivery.serialization import (
    SourceFingerprints,
    canonical_json,
    dumps,
    fingerprint,
    key_hash,
)


def test_decimals_are_written_as_exact_numbers() -> None:
    body = dumps(
        {"a": decimal.Decimal("0.1"), "b": decimal.Decimal("12345678901234567890.01")}
    )
    assert body == b'{"a":0.1,"b":12345678901234567890.01}'


def test_dates_are_iso_strings() -> None:
    body = dumps({"d": datetime.date(2024, 1, 2)})
    assert json.loads(body) == {"d": "2024-01-02"}


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1, "b": 2}) != fingerprint({"a": 1, "b": 3})
    assert canonical_json({"b": 1, "a": 2}) == b'{"a":2,"b":1}'


def test_key_hash_is_stable_and_does_not_contain_the_key() -> None:
    assert key_hash("ada@example.com") == key_hash("ada@example.com")
    assert "ada" not in key_hash("ada@example.com")
    assert len(key_hash("x")) == 32


def test_source_fingerprints_depend_on_the_record_and_the_identity() -> None:
    record = {"email": "a@b.com", "value": decimal.Decimal("1.50")}
    these, others = SourceFingerprints(b"settings 1"), SourceFingerprints(b"settings 2")
    assert these.of(record) == these.of(dict(record))
    assert these.of(record) != these.of({**record, "value": decimal.Decimal("1.5")})
    assert these.of(record) != others.of(record)
    assert "a@b.com" not in str(these.of(record))


def test_a_stored_source_fingerprint_is_stale_only_under_another_identity() -> None:
    these, others = SourceFingerprints(b"settings 1"), SourceFingerprints(b"settings 2")
    assert these.tag != others.tag
    assert these.is_stale(None)
    assert these.is_stale(others.of({"a": 1}))
    assert not these.is_stale(these.of({"a": 2}))  # changed record, same identity


@pytest.mark.parametrize("value", [object(), complex(1, 2)])
def test_a_record_json_cannot_hold_has_no_source_fingerprint(value: object) -> None:
    assert SourceFingerprints(b"x").of({"a": value}) is None
