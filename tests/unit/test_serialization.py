"""Canonical JSON and fingerprints."""

from __future__ import annotations

import datetime
import decimal
import json

from singer_delivery.serialization import canonical_json, dumps, fingerprint, key_hash


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
