"""The benchmark still runs end to end, at sizes small enough for every test run.

Timings are never asserted; what is checked is that every figure is printed
and that an unchanged second run writes nothing, which is a correctness
property of change detection rather than a speed.
"""

from __future__ import annotations

import re

import pytest

from tests import bench

RECORDS = 300
LEDGER_KEYS = 2000
LABELS = (
    "input records",
    "stock no-op wall",
    "stock no-op records/s",
    "stock no-op peak RSS",
    "agillic run 1 wall",
    "agillic run 1 records/s",
    "agillic run 1 peak RSS",
    "agillic run 1 write calls",
    "agillic / no-op wall",
    "agillic run 2 wall",
    "agillic run 2 peak RSS",
    "agillic run 2 write calls",
    "agillic run 2 unchanged",
    "run 2 / run 1 wall",
    "run 2 / run 1 write calls",
    f"ledger peak RSS at {LEDGER_KEYS:,} keys",
)


def figure(table: str, label: str) -> str:
    """The value printed beside ``label`` (columns are two or more spaces apart)."""
    for line in table.splitlines():
        if line.startswith(f"{label}  "):
            return re.split(r"\s{2,}", line)[1]
    raise AssertionError(f"no row {label!r} in:\n{table}")


def test_bench_prints_every_figure_and_run_2_writes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench.main(["--records", str(RECORDS), "--ledger-keys", str(LEDGER_KEYS)])
    table = capsys.readouterr().out

    for label in LABELS:
        assert figure(table, label)
    assert figure(table, "agillic run 1 delivered") == f"{RECORDS:,}"
    assert figure(table, "agillic run 2 write calls") == "0"
    assert figure(table, "agillic run 2 unchanged") == f"{RECORDS:,}"
