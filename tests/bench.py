"""Throughput benchmark of target-agillic (``nox -s bench``); prints, never asserts.

Every figure comes from one run on one input file, so the ratios compare
like with like on the same machine and moment:

- a stock singer-sdk target with a no-op BatchSink and default settings (the
  yardstick: what any SDK target pays for reading and validating records);
- target-agillic, upserting into the Agillic emulator with no added latency,
  on a fresh ledger (run 1) and again on unchanged input (run 2);
- the ledger alone at growing key counts, to show its memory stays flat.

Each program runs as its own child process and is measured the same way:
wall time from start to exit, and its own peak RSS from ``os.wait4``. The
emulator runs in a separate process too, so its CPU is not the target's.
Every program runs once on a tiny input first, with bytecode cached in the
temporary directory, so no figure includes compiling modules: an installed
plugin starts warm, and ``PYTHONDONTWRITEBYTECODE`` would otherwise add the
compile time of every import to every run.

Quick run: ``python -m tests.bench --records 2000 --ledger-keys 10000``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.cli import BIN, CUSTOMER_MAPPING, CUSTOMER_SCHEMA, customer, state_line

#: Children run from here, so ``python -m tests.…`` works from any cwd.
ROOT = Path(__file__).resolve().parents[1]
STREAM = "customers"
#: Taps built on singer-sdk emit a STATE every 10,000 records by default.
STATE_EVERY = 10_000
AIM_AGILLIC_VS_NOOP = 0.5
AIM_RUN2_VS_RUN1 = 1 / 3
WARM_UP_RECORDS = 10
WARM_UP_LEDGER_KEYS = 1000


@dataclass(frozen=True)
class Measured:
    """One child process: how long it ran, its peak RSS, what it printed."""

    seconds: float
    peak_rss_kb: int
    stdout: str


@dataclass(frozen=True)
class Row:
    """One line of the printed table."""

    label: str
    value: str
    aim: str = ""


class ChildFailed(RuntimeError):
    """A measured program exited non-zero: its figures would mean nothing."""


def child_env(workdir: Path) -> dict[str, str]:
    """Bytecode written to and read from ``workdir``: warm starts, clean repo."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def measure(argv: Sequence[str], workdir: Path, stdin: Path | None = None) -> Measured:
    """Run ``argv`` to completion; ``os.wait4`` gives this child's own peak RSS.

    Output goes to files rather than pipes so that nothing but ``wait4`` reaps
    the child (``Popen.wait`` would, and lose its resource usage).
    """
    stdout_path, stderr_path = workdir / "child.stdout", workdir / "child.stderr"
    with contextlib.ExitStack() as files:
        stdin_file = files.enter_context(stdin.open("rb")) if stdin else None
        stdout_file = files.enter_context(stdout_path.open("wb"))
        stderr_file = files.enter_context(stderr_path.open("wb"))
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=stdin_file,
            stdout=stdout_file,
            stderr=stderr_file,
            env=child_env(workdir),
            cwd=ROOT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = stderr_path.read_text(errors="replace")[-3000:]
        raise ChildFailed(f"{' '.join(argv)} exited {proc.returncode}:\n{tail}")
    return Measured(seconds, usage.ru_maxrss, stdout_path.read_text())


@dataclass(frozen=True)
class TargetRun:
    """One target-agillic run and what the emulator and report say it did."""

    measured: Measured
    write_calls: int
    counts: dict[str, t.Any]


def step(message: str) -> None:
    """Progress on stderr, so a long run shows where it is; the table is stdout."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def write_input(path: Path, records: int) -> Path:
    """The one input file every target reads: SCHEMA, RECORDs, periodic STATEs.

    Written a line at a time rather than with ``tests.cli.messages``: a child
    process starts with its parent's peak RSS (Linux keeps the high-water
    mark across fork and exec), so this process must stay small.
    """
    schema = {"schema": CUSTOMER_SCHEMA, "key_properties": ["email"]}
    with path.open("w") as out:
        out.write(json.dumps({"type": "SCHEMA", "stream": STREAM, **schema}) + "\n")
        for i in range(records):
            record = {"type": "RECORD", "stream": STREAM, "record": customer(i)}
            out.write(json.dumps(record) + "\n")
            if (i + 1) % STATE_EVERY == 0 or i + 1 == records:
                out.write(state_line(STREAM, i + 1) + "\n")
    return path


def write_json(path: Path, value: t.Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def check_last_state(measured: Measured, records: int) -> None:
    """A run that did not checkpoint every record did not finish its work."""
    states = [json.loads(line) for line in measured.stdout.splitlines() if line]
    offset = states[-1]["bookmarks"][STREAM]["offset"] if states else None
    if offset != records:
        raise ChildFailed(f"last STATE offset is {offset}, expected {records}")


def run_noop(source: Path, records: int, workdir: Path) -> Measured:
    """The stock no-op target, default settings (empty config)."""
    config = write_json(workdir / "noop-config.json", {})
    argv = [sys.executable, "-m", "tests.bench_noop", "--config", str(config)]
    measured = measure(argv, workdir, stdin=source)
    check_last_state(measured, records)
    return measured


@contextlib.contextmanager
def agillic_emulator(workdir: Path) -> Iterator[str]:
    """The emulator in its own process (no task delay, no latency); yields its URL."""
    argv = [sys.executable, "-m", "delivery_emulators.agillic"]
    argv += ["--task-delay", "0", "--latency", "0"]
    env = child_env(workdir)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise ChildFailed(f"the Agillic emulator did not start: {line!r}")
        yield line.removeprefix("listening on ").strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def emulator_write_calls(url: str) -> int:
    """Writes the emulator has answered so far (its control endpoint)."""
    with urllib.request.urlopen(f"{url}/_emulator/calls", timeout=10) as response:
        return int(json.load(response)["write_calls"])


def agillic_config(url: str, workdir: Path, name: str) -> Path:
    """Upsert (the default mode); runs with the same ``name`` share a ledger."""
    config = {
        "api_endpoint": url,
        "developer_key": "demo-key",
        "developer_secret": "demo-secret",
        "field_mapping": CUSTOMER_MAPPING,
        "ledger_url": f"sqlite:///{workdir / name}-ledger.sqlite",
        "rejects_path": str(workdir / "rejects.jsonl"),
        "report_path": str(workdir / "report.json"),
    }
    return write_json(workdir / f"{name}-config.json", config)


def run_agillic(
    config: Path, source: Path, records: int, url: str, workdir: Path
) -> TargetRun:
    """One target-agillic run; write calls are this run's share of the total."""
    before = emulator_write_calls(url)
    argv = [str(BIN / "target-agillic"), "--config", str(config)]
    measured = measure(argv, workdir, stdin=source)
    check_last_state(measured, records)
    report = json.loads((workdir / "report.json").read_text())
    counts = report["streams"][STREAM]
    return TargetRun(measured, emulator_write_calls(url) - before, counts)


def run_ledger(keys: int, workdir: Path) -> tuple[Measured, dict[str, float]]:
    """The ledger alone at ``keys`` keys, in a fresh process and SQLite file.

    The file is deleted afterwards: at a million keys it is large, and the
    next measurement must start from an empty one.
    """
    db = workdir / "ledger-alone.sqlite"
    argv = [sys.executable, "-m", "tests.bench_ledger", "--keys", str(keys)]
    try:
        measured = measure([*argv, "--db", str(db)], workdir)
    finally:
        for path in workdir.glob(f"{db.name}*"):
            path.unlink()
    return measured, json.loads(measured.stdout)


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def megabytes(kilobytes: int) -> str:
    return f"{kilobytes / 1024:.1f} MiB"


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "n/a"


def aim(text: str, met: bool) -> str:
    """An aim, marked so a reader sees at once whether this run met it."""
    return f"{text} {'met' if met else 'MISSED'}"


def aim_row(label: str, value: float, limit: float) -> Row:
    """A ratio whose aim is an upper limit."""
    return Row(label, f"{value:.2f}", aim(f"<= {limit:.2f}", value <= limit))


def process_rows(label: str, measured: Measured, records: int) -> list[Row]:
    """Wall time, throughput and peak RSS of one target process."""
    return [
        Row(f"{label} wall", seconds(measured.seconds)),
        Row(f"{label} records/s", f"{records / measured.seconds:,.0f}"),
        Row(f"{label} peak RSS", megabytes(measured.peak_rss_kb)),
    ]


def target_rows(
    records: int, noop: Measured, first: TargetRun, second: TargetRun
) -> list[Row]:
    """The no-op yardstick, both target-agillic runs and their ratios."""
    run2_writes = second.write_calls
    return [
        Row("input records", f"{records:,}"),
        *process_rows("stock no-op", noop, records),
        *process_rows("agillic run 1", first.measured, records),
        Row("agillic run 1 write calls", f"{first.write_calls:,}"),
        Row("agillic run 1 delivered", f"{first.counts['delivered']:,}"),
        aim_row(
            "agillic / no-op wall",
            first.measured.seconds / noop.seconds,
            AIM_AGILLIC_VS_NOOP,
        ),
        *process_rows("agillic run 2", second.measured, records),
        Row(
            "agillic run 2 write calls", f"{run2_writes:,}", aim("= 0", not run2_writes)
        ),
        Row("agillic run 2 unchanged", f"{second.counts['unchanged']:,}"),
        aim_row(
            "run 2 / run 1 wall",
            second.measured.seconds / first.measured.seconds,
            AIM_RUN2_VS_RUN1,
        ),
        Row("run 2 / run 1 write calls", ratio(run2_writes, first.write_calls)),
    ]


def ledger_rows(results: dict[int, tuple[Measured, dict[str, float]]]) -> list[Row]:
    """Peak RSS and timings per key count, and how much the RSS grew."""
    rows = []
    for keys, (measured, timings) in results.items():
        rows += [
            Row(f"ledger peak RSS at {keys:,} keys", megabytes(measured.peak_rss_kb)),
            Row(f"ledger write {keys:,} keys", seconds(timings["write_seconds"])),
            Row(f"ledger lookup {keys:,} keys", seconds(timings["lookup_seconds"])),
        ]
    smallest, largest = results[min(results)][0], results[max(results)][0]
    growth = ratio(largest.peak_rss_kb, smallest.peak_rss_kb)
    rows.append(Row("ledger peak RSS, most / fewest keys", growth, "~1.00 (flat)"))
    return rows


def render(rows: Sequence[Row]) -> str:
    """A plain aligned table (label, value, aim) under a note on the RSS floor."""
    width = max(len(row.label) for row in rows)
    value_width = max(len(row.value) for row in rows)
    lines = [
        f"{row.label:<{width}}  {row.value:>{value_width}}  {row.aim}".rstrip()
        for row in rows
    ]
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    header = (
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, warm starts; "
        f"peak RSS cannot read below {megabytes(floor)} (this process's own peak)"
    )
    return "\n".join([header, *lines])


def warm_up(workdir: Path, url: str) -> None:
    """Run every measured program once, so each measured run starts warm."""
    source = write_input(workdir / "warm-up.jsonl", WARM_UP_RECORDS)
    run_noop(source, WARM_UP_RECORDS, workdir)
    config = agillic_config(url, workdir, "warm-up")
    run_agillic(config, source, WARM_UP_RECORDS, url, workdir)
    run_ledger(WARM_UP_LEDGER_KEYS, workdir)


def run_all(records: int, ledger_keys: Sequence[int], workdir: Path) -> list[Row]:
    """Every measurement, in an order where no two programs run at once."""
    step(f"writing {records:,} records")
    source = write_input(workdir / "input.jsonl", records)
    with agillic_emulator(workdir) as url:
        step("warming up (bytecode cache)")
        warm_up(workdir, url)
        step("stock no-op target")
        noop = run_noop(source, records, workdir)
        config = agillic_config(url, workdir, "bench")
        step("target-agillic run 1 (fresh ledger)")
        first = run_agillic(config, source, records, url, workdir)
        step("target-agillic run 2 (unchanged input)")
        second = run_agillic(config, source, records, url, workdir)
    ledgers = {}
    for keys in sorted(ledger_keys):
        step(f"ledger with {keys:,} keys")
        ledgers[keys] = run_ledger(keys, workdir)
    return target_rows(records, noop, first, second) + ledger_rows(ledgers)


def key_counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="Throughput figures for target-agillic (prints, never asserts).",
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument(
        "--ledger-keys",
        type=key_counts,
        default=[100_000, 1_000_000],
        help="comma-separated key counts for the ledger memory figure",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        rows = run_all(args.records, args.ledger_keys, Path(tmp))
    print(render(rows))


if __name__ == "__main__":
    main()
