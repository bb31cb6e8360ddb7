"""target-gladly throughput at Gladly's real limit (prints figures, never asserts).

Each scenario runs the real CLI on 300 records against a fresh in-process
emulator that allows 10 requests per second per HTTP method and answers
after 50 ms, then prints records per second and the 429s received.

Records per second are taken over the delivery (the run report's duration,
from the stream's first message to its last acknowledged write); the
end-to-end figure adds the process start-up (about a second) on top.

    python -m tests.bench_gladly [--records 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

from delivery_emulators import GladlyEmulator
from tests.cli import customer, messages, run_target

RATE = 10
LATENCY = 0.05
MAPPING = {"email": "email", "first_name": "name", "tier": "tier"}


@dataclass
class Figures:
    """One scenario's outcome."""

    name: str
    records: int
    delivered: int
    seconds: float
    wall_seconds: float
    requests: int
    too_many: int

    def line(self) -> str:
        share = self.too_many / self.requests if self.requests else 0.0
        return (
            f"{self.name:<22} {self.delivered:>5}/{self.records:<5} "
            f"{self.delivered / self.seconds:>7.2f} rec/s "
            f"({self.delivered / self.wall_seconds:>5.2f} end-to-end)  "
            f"{self.requests:>5} requests  {self.too_many:>3} x 429 ({share:.2%})"
        )


def seed_existing(emulator: GladlyEmulator, count: int) -> None:
    """Profiles for every record, each needing a PATCH (tier differs)."""
    for i in range(count):
        email = customer(i)["email"].upper()
        emulator.add_profile(
            {"emails": [{"original": email}], "customAttributes": {"tier": "old"}}
        )


def run_scenario(
    name: str, sync_mode: str, records: int, existing: bool = False
) -> Figures:
    """Deliver ``records`` customers in ``sync_mode`` and measure it."""
    with (
        GladlyEmulator(rate_limit=RATE, latency=LATENCY) as emulator,
        tempfile.TemporaryDirectory() as folder,
    ):
        tmp = Path(folder)
        if existing:
            seed_existing(emulator, records)
        config = {
            "domain": "bench",
            "base_url": emulator.url,
            "username": emulator.username,
            "api_token": emulator.api_token,
            "sync_mode": sync_mode,
            "field_mapping": MAPPING,
            "max_requests_per_second": RATE,
            "ledger_url": f"sqlite:///{tmp / 'ledger.sqlite'}",
            "report_path": str(tmp / "report.json"),
            "rejects_path": str(tmp / "rejects.jsonl"),
        }
        rows = [customer(i, tier="new") for i in range(records)]
        started = time.monotonic()
        result = run_target("target-gladly", config, messages(rows), tmp)
        wall = time.monotonic() - started
        if result.returncode != 0:
            raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
        stream = json.loads((tmp / "report.json").read_text())["streams"]["customers"]
        return Figures(
            name=name,
            records=records,
            delivered=int(stream["delivered"]),
            seconds=float(stream["duration_seconds"]),
            wall_seconds=wall,
            requests=sum(emulator.status_counts.values()),
            too_many=emulator.rate_limited,
        )


SCENARIOS: list[tuple[str, str, bool]] = [
    ("insert", "insert", False),
    ("upsert, all new", "upsert", False),
    ("upsert, all existing", "upsert", True),
]


def main(argv: t.Sequence[str] | None = None) -> None:
    """Run every scenario and print one line of figures each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300)
    args = parser.parse_args(argv)
    print(
        f"target-gladly, {args.records} records, emulator at {RATE} requests/s "
        f"per method, {LATENCY * 1000:.0f} ms latency"
    )
    for name, mode, existing in SCENARIOS:
        print(run_scenario(name, mode, args.records, existing).line(), flush=True)


if __name__ == "__main__":
    main()
