"""One ledger-scale measurement, in its own process so its peak RSS is its own.

``python -m tests.bench_ledger --keys N --db PATH`` writes N (key hash,
fingerprint) pairs into a fresh SQLite ledger and looks every one up again,
both a batch at a time as the sinks do, then prints the two durations as
JSON. The parent reads the peak RSS from ``os.wait4``: if the ledger only
ever holds one batch in memory, that figure stays flat as N grows.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Sequence

from singer_delivery.ledger import Ledger, Scope
from singer_delivery.serialization import fingerprint, key_hash

BATCH = 1000
SCOPE = Scope("bench", "bench", "recipients", "recipients", "customers")


def key_batches(keys: int) -> Iterator[list[str]]:
    """Key hashes made one batch at a time, so this process never holds all N."""
    for start in range(0, keys, BATCH):
        stop = min(start + BATCH, keys)
        yield [key_hash(f"user{i:07d}@example.com") for i in range(start, stop)]


def write_all(ledger: Ledger, keys: int) -> float:
    """Seconds to record every key as delivered, one batch per transaction."""
    started = time.perf_counter()
    for batch in key_batches(keys):
        ledger.record_deliveries(
            SCOPE.scope_id, [(k, fingerprint({"key": k})) for k in batch]
        )
    return time.perf_counter() - started


def look_up_all(ledger: Ledger, keys: int) -> float:
    """Seconds to fetch every key's fingerprint back, as change detection does."""
    started = time.perf_counter()
    found = 0
    for batch in key_batches(keys):
        found += len(ledger.lookup(SCOPE.scope_id, batch))
    if found != keys:
        raise RuntimeError(f"ledger returned {found} of {keys} fingerprints")
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, required=True)
    parser.add_argument("--db", required=True, help="a new SQLite file")
    args = parser.parse_args(argv)
    ledger = Ledger.open(f"sqlite:///{args.db}")
    ledger.register(SCOPE)
    write_seconds = write_all(ledger, args.keys)
    lookup_seconds = look_up_all(ledger, args.keys)
    print(
        json.dumps({"write_seconds": write_seconds, "lookup_seconds": lookup_seconds})
    )


if __name__ == "__main__":
    main()
