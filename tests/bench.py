"""Benchmark of target-agillic and target-gladly (``nox -s bench``); prints, never asserts.

Four sections, one table each:

1. target-agillic against two singer-sdk no-op targets on the same input:
   the stock one (default settings: the default reader, jsonschema
   validation) and a fast one (the msgspec reader, ``validate_records:
   false``). Run 1 starts from a fresh ledger, run 2 reads the same input
   with the ledger run 1 left, so it should write nothing. Rounds run
   stock no-op, run 1, fast no-op, run 2, then the next round's stock
   no-op, so each ratio divides two runs measured back to back; the
   printed ratio is the median of the per-pair ratios, with min-max.
2. Scale: run 1 and run 2 at a tenth of the records, at the records and
   at a million, in turn within each round: peak RSS, wall time per record,
   and how much the time per record grows from the records to a million.
3. Quarantine: every tenth record is refused for good by the emulator. Run
   2 on the same input must write nothing: the refused records are
   quarantined in the ledger, the others are unchanged.
4. target-gladly at Gladly's rate limit (``tests.bench_gladly``).

Every program runs as its own child process (``tests.bench_common``), the
Agillic emulator in a process of its own with no latency and no task
delay, reset before every target-agillic run.

Quick run: ``nox -s bench -- --records 5000 --pairs 3 --skip-1m --skip-gladly``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
import typing as t
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests import bench_gladly
from tests.bench_common import (
    WIDTH,
    ChildFailed,
    Measured,
    Spread,
    calls,
    check_last_state,
    count,
    counts,
    emit,
    emulator_process,
    load_average,
    machine_lines,
    measure,
    mib,
    remove_sqlite,
    reset,
    rss_floor_note,
    section,
    step,
    stream_report,
    table,
    write_input,
    write_json,
)
from tests.cli import BIN, CUSTOMER_MAPPING, customer

AGILLIC_EMULATOR_FLAGS = ("--task-delay", "0", "--latency", "0")
MILLION = 1_000_000
WARM_UP_RECORDS = 10
#: Section 3: the emulator refuses these records for good (a Person Data rule).
REFUSED_TIER = "refused"
REFUSE_RULE = {"field": "TIER", "equals": REFUSED_TIER}
REFUSE_EVERY = 10


@dataclass(frozen=True)
class TargetRun:
    """One target-agillic run and what the emulator and report say it did."""

    measured: Measured
    write_calls: int
    counts: dict[str, t.Any]


class Bench:
    """The programs measured: the no-op targets and target-agillic."""

    def __init__(self, workdir: Path, url: str) -> None:
        self.workdir = workdir
        self.url = url
        self.stock_config = write_json(workdir / "noop-stock.json", {})
        self.fast_config = write_json(
            workdir / "noop-fast.json", {"validate_records": False}
        )
        self.ledgers = 0

    def noop(self, source: Path, records: int, fast: bool = False) -> Measured:
        """The stock no-op (default settings) or the fast one."""
        argv = [sys.executable, "-m", "tests.bench_noop"]
        if fast:
            argv += ["--fast", "--config", str(self.fast_config)]
        else:
            argv += ["--config", str(self.stock_config)]
        measured = measure(argv, self.workdir, stdin=source)
        check_last_state(measured, records)
        return measured

    def fresh_config(self) -> Path:
        """A target-agillic config (upsert, the default) on a new ledger file."""
        self.ledgers += 1
        name = f"ledger-{self.ledgers}"
        config = {
            "api_endpoint": self.url,
            "developer_key": "demo-key",
            "developer_secret": "demo-secret",
            "field_mapping": CUSTOMER_MAPPING,
            "ledger_url": f"sqlite:///{self.workdir / name}.sqlite",
            "rejects_path": str(self.workdir / "rejects.jsonl"),
            "report_path": str(self.workdir / "report.json"),
        }
        return write_json(self.workdir / f"{name}.json", config)

    def drop_ledger(self, config: Path) -> None:
        """Delete a config's ledger (at a million keys it is large)."""
        remove_sqlite(self.workdir / f"{config.stem}.sqlite")
        (self.workdir / "rejects.jsonl").unlink(missing_ok=True)

    def agillic(
        self, config: Path, source: Path, records: int, refuse: bool = False
    ) -> TargetRun:
        """One target-agillic run on an emulator reset just before it."""
        reset(self.url, refuse=[REFUSE_RULE] if refuse else [])
        argv = [str(BIN / "target-agillic"), "--config", str(config)]
        measured = measure(argv, self.workdir, stdin=source)
        check_last_state(measured, records)
        report = stream_report(self.workdir / "report.json")
        return TargetRun(measured, calls(self.url)["write_calls"], report)

    def pair(
        self, source: Path, records: int, refuse: bool = False
    ) -> tuple[TargetRun, TargetRun]:
        """Run 1 on a fresh ledger, then run 2 on the same input and ledger."""
        config = self.fresh_config()
        first = self.agillic(config, source, records, refuse)
        second = self.agillic(config, source, records, refuse)
        self.drop_ledger(config)
        return first, second

    def warm_up(self) -> None:
        """Run every program once, so each measured run starts warm."""
        source = write_input(self.workdir / "warm-up.jsonl", WARM_UP_RECORDS)
        self.noop(source, WARM_UP_RECORDS)
        self.noop(source, WARM_UP_RECORDS, fast=True)
        config = self.fresh_config()
        self.agillic(config, source, WARM_UP_RECORDS)
        self.drop_ledger(config)


def plural(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def ratio(numerators: Sequence[TargetRun], denominators: Sequence[Measured]) -> str:
    """Median (min-max) of per-pair wall-time ratios."""
    pairs = zip(numerators, denominators, strict=True)
    return Spread.of(a.measured.seconds / b.seconds for a, b in pairs).show()


def program_row(
    label: str, runs: Sequence[Measured], records: int, *cells: str
) -> list[str]:
    wall = Spread.of(m.seconds for m in runs)
    return [
        label,
        str(len(runs)),
        wall.show(spread=False),
        Spread.of(m.cpu for m in runs).show(spread=False),
        mib(Spread.of(m.peak_rss_kb for m in runs).median),
        count(records / wall.median),
        *cells,
    ]


def section_1(bench: Bench, source: Path, records: int, pairs: int) -> str:
    """Run 1 and run 2 against the stock and the fast no-op, interleaved."""
    stock: list[Measured] = []
    fast: list[Measured] = []
    first: list[TargetRun] = []
    second: list[TargetRun] = []
    for i in range(pairs):
        step(f"1. round {i + 1}/{pairs}: stock no-op, run 1, fast no-op, run 2")
        stock.append(bench.noop(source, records))
        config = bench.fresh_config()
        first.append(bench.agillic(config, source, records))
        fast.append(bench.noop(source, records, fast=True))
        second.append(bench.agillic(config, source, records))
        bench.drop_ledger(config)
    step("1. closing stock no-op (pairs with the last run 2)")
    stock.append(bench.noop(source, records))

    header = [
        "program",
        "runs",
        "wall s",
        "CPU s",
        "peak RSS MiB",
        "records/s",
        "writes",
        "vs stock no-op",
        "vs fast no-op",
    ]
    rows = [
        program_row("stock no-op", stock, records, "-", "-", "-"),
        program_row("fast no-op", fast, records, "-", "-", "-"),
        program_row(
            "agillic run 1",
            [run.measured for run in first],
            records,
            counts(run.write_calls for run in first),
            ratio(first, stock[:-1]),
            ratio(first, fast),
        ),
        program_row(
            "agillic run 2",
            [run.measured for run in second],
            records,
            counts(run.write_calls for run in second),
            ratio(second, stock[1:]),
            ratio(second, fast),
        ),
    ]
    delivered = counts(run.counts["delivered"] for run in first)
    unchanged = counts(run.counts["unchanged"] for run in second)
    notes = [
        (
            f"{records:,} records, one input file for every run; "
            f"{plural(pairs, 'interleaved round')} of stock no-op, run 1, fast "
            "no-op, run 2, then one more stock no-op."
        ),
        (
            "stock no-op: singer-sdk Target with a no-op BatchSink and default "
            "settings. fast no-op: the same with singer_sdk.contrib.msgspec."
            "MsgSpecReader and validate_records: false."
        ),
        (
            "run 1: fresh ledger. run 2: same input, the ledger run 1 left. The "
            "emulator (own process, no latency, task delay 0) is reset before every "
            "run; writes: its write calls (GET /_emulator/calls) after the run."
        ),
        (
            "vs stock / fast no-op: wall-time ratio, the median of per-pair "
            "ratios, each from two runs measured back to back (run 1 after its stock no-op, before its fast no-op; run 2 "
            "after the fast no-op, before the next stock no-op), with min-max."
        ),
        (
            "wall, CPU (user+sys of the process) and peak RSS (os.wait4): medians; "
            "records/s = records / median wall."
        ),
        f"reports: run 1 delivered {delivered}; run 2 unchanged {unchanged}.",
    ]
    title = "1. target-agillic against singer-sdk no-op targets"
    return section(title, notes, table(header, rows))


def scale_row(
    size: int, first: Sequence[TargetRun], second: Sequence[TargetRun]
) -> list[str]:
    """Run 1's time per record and CPU shares; both runs' peak RSS."""
    runs = [run.measured for run in first]
    return [
        f"{size:,}",
        plural(len(runs), "pair"),
        Spread.of(m.seconds / size * 1e6 for m in runs).show("{:.1f}"),
        Spread.of(m.cpu / m.seconds * 100 for m in runs).show("{:.0f}%", spread=False),
        Spread.of(m.system / m.seconds * 100 for m in runs).show(
            "{:.1f}%", spread=False
        ),
        mib(Spread.of(m.peak_rss_kb for m in runs).median),
        mib(Spread.of(run.measured.peak_rss_kb for run in second).median),
    ]


def section_2(
    bench: Bench, source: Path, records: int, pairs: int, million: bool
) -> str:
    """Run 1 and run 2 at records / 10, records and 1M, interleaved by round."""
    small = max(1, records // 10)
    inputs = {small: write_input(bench.workdir / "input-small.jsonl", small)}
    inputs[records] = source
    if million and records < MILLION:
        step(f"2. writing {MILLION:,} records")
        inputs[MILLION] = write_input(bench.workdir / "input-1m.jsonl", MILLION)
    results: dict[int, tuple[list[TargetRun], list[TargetRun]]] = {
        size: ([], []) for size in inputs
    }
    sizes = ", ".join(f"{size:,}" for size in inputs)
    for i in range(pairs):
        step(f"2. round {i + 1}/{pairs}: run 1 and run 2 at {sizes} records")
        for size, path in inputs.items():
            first, second = bench.pair(path, size)
            results[size][0].append(first)
            results[size][1].append(second)
    for path in inputs.values():
        if path != source:
            path.unlink()
    rows = [scale_row(size, first, second) for size, (first, second) in results.items()]
    header = [
        "records",
        "runs",
        "run 1 us/record",
        "CPU/wall",
        "sys/wall",
        "run 1 peak RSS MiB",
        "run 2 peak RSS MiB",
    ]
    notes = [
        f"{plural(pairs, 'round')}, each with run 1 and run 2 at {sizes} records "
        "in turn (their own runs, not section 1's)"
        + (f"; {MILLION:,} records (skipped: --skip-1m)." if not million else "."),
        (
            "us/record: run 1 wall time / records, median of the rounds (min-max). "
            "CPU/wall and sys/wall: run 1's user+sys and its system CPU time as a "
            "share of its wall time (median). Peak RSS (os.wait4): median."
        ),
        (
            "Run 1 on a fresh ledger, run 2 on the same input and ledger; the "
            "emulator is reset before every run."
        ),
    ]
    if MILLION in results and records != MILLION:
        per_record = zip(results[MILLION][0], results[records][0], strict=True)
        growth = Spread.of(
            (big.measured.seconds / MILLION) / (mid.measured.seconds / records)
            for big, mid in per_record
        )
        notes.append(
            f"run 1 us/record at {MILLION:,} over that at {records:,}, the median "
            f"of per-round ratios: {growth.show()}."
        )
    title = "2. target-agillic at scale: peak RSS and wall time per record"
    return section(title, notes, table(header, rows))


def refused_every_tenth(i: int) -> dict[str, t.Any]:
    """Every tenth customer has the tier the emulator refuses."""
    if i % REFUSE_EVERY == REFUSE_EVERY - 1:
        return customer(i, tier=REFUSED_TIER)
    return customer(i)


def section_3(bench: Bench, records: int, pairs: int) -> str:
    """Run 1 meets permanent refusals; run 2 must not send them again."""
    source = write_input(
        bench.workdir / "input-refused.jsonl", records, refused_every_tenth
    )
    first: list[TargetRun] = []
    second: list[TargetRun] = []
    for i in range(pairs):
        step(f"3. round {i + 1}/{pairs}: run 1 and run 2 with refusals")
        one, two = bench.pair(source, records, refuse=True)
        first.append(one)
        second.append(two)
    source.unlink()

    def row(label: str, runs: list[TargetRun], vs_run_1: str) -> list[str]:
        measured = [run.measured for run in runs]
        return [
            label,
            str(len(runs)),
            Spread.of(m.seconds for m in measured).show(spread=False),
            Spread.of(m.cpu for m in measured).show(spread=False),
            counts(run.write_calls for run in runs),
            *(
                counts(run.counts[name] for run in runs)
                for name in ("delivered", "unchanged", "rejected", "quarantined")
            ),
            vs_run_1,
        ]

    header = [
        "program",
        "runs",
        "wall s",
        "CPU s",
        "writes",
        "delivered",
        "unchanged",
        "rejected",
        "quarantined",
        "wall / run 1",
    ]
    vs_run_1 = Spread.of(
        b.measured.seconds / a.measured.seconds
        for a, b in zip(first, second, strict=True)
    ).show()
    rows = [
        row("agillic run 1", first, "-"),
        row("agillic run 2", second, vs_run_1),
    ]
    refused = records // REFUSE_EVERY
    notes = [
        (
            f"{records:,} records, {refused:,} of them (every tenth) with TIER "
            f"'{REFUSED_TIER}', which the emulator refuses for good (POST "
            '/_emulator/config {"refuse": {"field": "TIER", "equals": '
            f'"{REFUSED_TIER}"}}}} after every reset).'
        ),
        (
            f"{plural(pairs, 'round')} of run 1 (fresh ledger) and run 2 (same "
            "input and ledger), the emulator reset before each run. writes: the "
            "emulator's write calls (GET /_emulator/calls) during the run; "
            "delivered to quarantined: the run report JSON."
        ),
        (
            "wall / run 1: median of per-round ratios of run 2 to the run 1 just "
            "before it, with min-max. wall and CPU (user+sys): medians."
        ),
    ]
    title = "3. Quarantine: records refused for good are not sent again"
    return section(title, notes, table(header, rows))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="Benchmark of target-agillic and target-gladly (prints, never "
        "asserts).",
    )
    parser.add_argument(
        "--records",
        type=int,
        default=100_000,
        help="records in sections 1 to 3; section 2 also uses a tenth of it "
        "(default 100000)",
    )
    parser.add_argument(
        "--pairs", type=int, default=5, help="interleaved rounds (default 5)"
    )
    parser.add_argument(
        "--skip-1m", action="store_true", help="leave out the 1,000,000-record runs"
    )
    parser.add_argument(
        "--skip-gladly", action="store_true", help="leave out section 4"
    )
    parser.add_argument(
        "--gladly-records",
        type=int,
        default=bench_gladly.RECORDS,
        help=f"records per target-gladly run (default {bench_gladly.RECORDS})",
    )
    args = parser.parse_args(argv)
    if args.records < 10 or args.pairs < 1 or args.gladly_records < 1:
        parser.error("--records must be at least 10, --pairs and --gladly-records 1")
    return args


def header(args: argparse.Namespace) -> str:
    """What was measured, where and how: printed before the first section."""
    options = f"--records {args.records} --pairs {args.pairs}"
    options += " --skip-1m" if args.skip_1m else ""
    options += " --skip-gladly" if args.skip_gladly else ""
    options += f" --gladly-records {args.gladly_records}"
    method = textwrap.fill(
        "every program is its own child process, run alone: wall time from "
        "start to exit, user+sys CPU and peak RSS from os.wait4. Each starts "
        "warm (one warm-up run first, bytecode cached with PYTHONPYCACHEPREFIX). "
        "The emulators run in processes of their own, so their CPU is not the "
        "target's. Figures are medians of interleaved rounds unless a table "
        "says otherwise.",
        WIDTH,
        initial_indent="method:   ",
        subsequent_indent=" " * 10,
    )
    title = "Benchmark of target-agillic and target-gladly (nox -s bench)"
    return "\n".join(
        [
            f"{title}: figures only, nothing is asserted",
            *machine_lines(),
            f"options:  {options}",
            method,
        ]
    )


def timed(label: str, produce: Callable[[], str]) -> None:
    """Print a section as soon as it is measured, with how long it took."""
    started = time.perf_counter()
    text = produce()
    emit(text)
    emit(f"  ({label} took {time.perf_counter() - started:.0f} s)")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    emit(header(args))
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        step(f"writing {args.records:,} records")
        source = write_input(workdir / "input.jsonl", args.records)
        with emulator_process(
            "delivery_emulators.agillic", AGILLIC_EMULATOR_FLAGS, workdir
        ) as url:
            bench = Bench(workdir, url)
            step("warming up (bytecode cache)")
            bench.warm_up()
            timed(
                "section 1",
                lambda: section_1(bench, source, args.records, args.pairs),
            )
            timed(
                "section 2",
                lambda: section_2(
                    bench, source, args.records, args.pairs, not args.skip_1m
                ),
            )
            source.unlink()
            timed("section 3", lambda: section_3(bench, args.records, args.pairs))
        if not args.skip_gladly:
            timed(
                "section 4",
                lambda: bench_gladly.run_section(workdir, args.gladly_records),
            )
    emit("")
    emit(rss_floor_note())
    emit(
        f"Whole bench: {time.perf_counter() - started:.0f} s; {load_average()} "
        "at the end."
    )


if __name__ == "__main__":
    try:
        main()
    except ChildFailed as failed:
        raise SystemExit(f"bench: a measured program failed: {failed}") from None
