"""Ledgers as earlier releases left them, for the migration tests."""

from __future__ import annotations

from collections.abc import Iterable

from singer_delivery.ledger import MIGRATIONS


def older_ledger(
    dialect: str, version: int, deliveries: Iterable[tuple[str, str, str]]
) -> list[str]:
    """Statements that build release ``version``'s tables holding ``deliveries``
    (scope id, key hash, fingerprint) in hex text, as before schema 3.

    The first release had no ``ledger_meta``: its deliveries table told it
    apart. Values are inlined, so they must hold no quote.
    """
    statements = [s for step in MIGRATIONS[:version] for s in step(dialect)]
    if version > 1:
        statements += [
            "CREATE TABLE ledger_meta (name VARCHAR(64) PRIMARY KEY, value TEXT)",
            f"INSERT INTO ledger_meta VALUES ('schema_version', '{version}')",
        ]
    return statements + [
        "INSERT INTO ledger_deliveries (scope_id, key_hash, fingerprint) "
        f"VALUES ('{scope}', '{key}', '{fingerprint}')"
        for scope, key, fingerprint in deliveries
    ]
