"""target-gladly throughput at Gladly's real limit (prints figures, never asserts).

Section 4 of ``nox -s bench``, also runnable alone:

    python -m tests.bench_gladly [--records 300]

Each scenario runs the real CLI on the same records against the Gladly
emulator in its own process, started as ``--rate-limit 10 --latency 0.05``
(10 requests per rolling second per HTTP method, answers after 50 ms) and
reset before every run; then all of them again against an emulator started
with ``--rate-limit-scope shared`` (one budget for every method), which the
target's default ``rate_limit_scope: auto`` has to notice from the
rate-limit headers. Printed per run: records per second and the 429s.

Records per second are taken over the delivery (the run report's duration,
from the stream's first message to its last acknowledged write); the
end-to-end figure divides by the process's wall time, start-up included.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.bench_common import (
    Measured,
    calls,
    check_last_state,
    control,
    emit,
    emulator_process,
    machine_lines,
    measure,
    remove_sqlite,
    reset,
    section,
    step,
    stream_report,
    table,
    write_input,
    write_json,
)
from tests.cli import BIN, customer

RATE = 10
LATENCY = 0.05
RECORDS = 300
MAPPING = {"email": "email", "first_name": "name", "tier": "tier"}
USERNAME, API_TOKEN = "agent@example.com", "demo-token"
PROFILES = "/api/v1/customer-profiles"
WARM_UP_RECORDS = 2
#: Scenarios: (name, sync_mode, whether every record's profile exists first).
SCENARIOS: list[tuple[str, str, bool]] = [
    ("insert", "insert", False),
    ("upsert, all new", "upsert", False),
    ("upsert, all existing", "upsert", True),
]
SCOPES = ("per_method", "shared")


@dataclass(frozen=True)
class Figures:
    """One scenario's outcome."""

    scope: str
    name: str
    records: int
    delivered: int
    seconds: float
    measured: Measured
    requests: int
    too_many: int

    def row(self) -> list[str]:
        share = self.too_many / self.requests if self.requests else 0.0
        return [
            self.scope,
            self.name,
            f"{self.delivered:,}/{self.records:,}",
            f"{self.delivered / self.seconds:.2f}",
            f"{self.delivered / self.measured.seconds:.2f}",
            f"{self.measured.seconds:.1f}",
            f"{self.requests:,}",
            f"{self.too_many:,} ({share:.1%})",
        ]


def seed_existing(url: str, records: int) -> None:
    """A profile for every record, each needing a PATCH (its tier differs).

    Created through the API with the limit lifted and no latency, then the
    limit and latency are put back and the rolling window left to empty.
    """
    control(url, "config", {"rate_limit": 1_000_000, "latency": 0})
    auth = base64.b64encode(f"{USERNAME}:{API_TOKEN}".encode()).decode()
    headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}
    for i in range(records):
        email = customer(i)["email"].upper()
        body = {"emails": [{"original": email}], "customAttributes": {"tier": "old"}}
        request = urllib.request.Request(
            f"{url}{PROFILES}", json.dumps(body).encode(), headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
    control(url, "config", {"rate_limit": RATE, "latency": LATENCY})
    time.sleep(1.1)


def status_counts(url: str) -> dict[str, int]:
    return {k: int(v) for k, v in calls(url)["status_counts"].items()}


def run_scenario(
    url: str,
    scope: str,
    scenario: tuple[str, str, bool],
    source: Path,
    records: int,
    workdir: Path,
) -> Figures:
    """Deliver ``records`` customers in one scenario and measure it."""
    name, sync_mode, existing = scenario
    reset(url)
    if existing:
        seed_existing(url, records)
    ledger = workdir / "gladly-ledger.sqlite"
    config = write_json(
        workdir / "gladly-config.json",
        {
            "domain": "bench",
            "base_url": url,
            "username": USERNAME,
            "api_token": API_TOKEN,
            "sync_mode": sync_mode,
            "field_mapping": MAPPING,
            "max_requests_per_second": RATE,
            "ledger_url": f"sqlite:///{ledger}",
            "report_path": str(workdir / "gladly-report.json"),
            "rejects_path": str(workdir / "gladly-rejects.jsonl"),
        },
    )
    before = status_counts(url)
    measured = measure(
        [str(BIN / "target-gladly"), "--config", str(config)], workdir, stdin=source
    )
    check_last_state(measured, records)
    after = status_counts(url)
    remove_sqlite(ledger)
    report = stream_report(workdir / "gladly-report.json")
    answered = {k: after[k] - before.get(k, 0) for k in after}
    return Figures(
        scope=scope,
        name=name,
        records=records,
        delivered=int(report["delivered"]),
        seconds=float(report["duration_seconds"]),
        measured=measured,
        requests=sum(answered.values()),
        too_many=answered.get("429", 0),
    )


def emulator_flags(scope: str) -> list[str]:
    flags = ["--rate-limit", str(RATE), "--latency", str(LATENCY)]
    return [*flags, "--rate-limit-scope", scope] if scope != "per_method" else flags


def run_section(
    workdir: Path, records: int = RECORDS, scopes: Sequence[str] = SCOPES
) -> str:
    """Every scenario against an emulator of each rate-limit scope; one table."""
    source = write_input(
        workdir / "gladly-input.jsonl", records, lambda i: customer(i, tier="new")
    )
    warm_up = write_input(workdir / "gladly-warm-up.jsonl", WARM_UP_RECORDS)
    results: list[Figures] = []
    for scope in scopes:
        flags = emulator_flags(scope)
        with emulator_process("delivery_emulators.gladly", flags, workdir) as url:
            if not results:
                step("4. warming up target-gladly (bytecode cache)")
                run_scenario(
                    url, scope, SCENARIOS[0], warm_up, WARM_UP_RECORDS, workdir
                )
            for scenario in SCENARIOS:
                step(f"4. target-gladly {scenario[0]}, emulator scope {scope}")
                results.append(
                    run_scenario(url, scope, scenario, source, records, workdir)
                )
    header = [
        "emulator scope",
        "scenario",
        "delivered",
        "records/s",
        "end to end",
        "wall s",
        "requests",
        "429 answers",
    ]
    notes = [
        (
            f"{records:,} records per run, one run per row: the pace is set by the "
            "rate limit, not by CPU."
        ),
        (
            f"Gladly emulator in its own process, started with --rate-limit {RATE} "
            f"--latency {LATENCY} (per_method: {RATE} requests per rolling second for "
            "each HTTP method), then with --rate-limit-scope shared as well (one "
            "budget for all methods); reset before every run."
        ),
        (
            f"target-gladly: max_requests_per_second {RATE}, rate_limit_scope left at "
            "its default (auto). insert: a POST per record; upsert, all new: a GET "
            "and a POST; upsert, all existing (profiles created through the API "
            "before the run, tier differs): a GET and a PATCH."
        ),
        (
            "records/s: delivered / the run report's duration (first message to last "
            "acknowledged write); end to end: delivered / process wall time, "
            "start-up included. requests and 429 answers: the emulator's status "
            "counts (GET /_emulator/calls) over the run."
        ),
    ]
    title = "4. target-gladly at Gladly's rate limit"
    return section(
        title, notes, table(header, [figures.row() for figures in results], left=2)
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=RECORDS)
    args = parser.parse_args(argv)
    emit("\n".join(machine_lines()))
    with tempfile.TemporaryDirectory(prefix="bench-gladly-") as tmp:
        emit(run_section(Path(tmp), args.records))


if __name__ == "__main__":
    main(sys.argv[1:])
