"""The benchmark still runs end to end, at sizes small enough for every test run.

Timings are never asserted; what is checked is that every table is printed
with its rows, and the counts that are correctness rather than speed: an
unchanged second run writes nothing, and records refused for good are
quarantined rather than sent again.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import bench, bench_gladly

RECORDS = 300
SMALL = RECORDS // 10
REFUSED = RECORDS // 10


def table_rows(output: str, title_prefix: str) -> dict[str, list[str]]:
    """The rows of the table under the section titled ``title_prefix…``, by label.

    Cells are two or more spaces apart; the row's label is its first cell,
    or its first two cells joined by " | " when ``title_prefix`` is "4.".
    """
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title_prefix))
    rule = next(i for i in range(start, len(lines)) if lines[i].startswith("---"))
    rows: dict[str, list[str]] = {}
    for line in lines[rule + 1 :]:
        if not line.strip() or line.startswith(" "):
            break
        cells = re.split(r"\s{2,}", line.strip())
        label_cells = 2 if title_prefix == "4." else 1
        rows[" | ".join(cells[:label_cells])] = cells[label_cells:]
    return rows


@pytest.mark.slow
def test_bench_prints_every_table_and_run_2_writes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench.main(
        ["--records", str(RECORDS), "--pairs", "1", "--skip-1m", "--skip-gladly"]
    )
    output = capsys.readouterr().out

    assert "python:" in output
    assert "--records 300 --pairs 1" in output
    first = table_rows(output, "1.")
    assert set(first) == {"stock no-op", "fast no-op", "agillic run 1", "agillic run 2"}
    # runs, wall, CPU, RSS, records/s, writes, vs stock, vs fast
    assert first["stock no-op"][0] == "2"
    assert first["agillic run 1"][5] == "1"
    assert first["agillic run 2"][5] == "0"
    for row in ("agillic run 1", "agillic run 2"):
        assert float(first[row][6]) > 0
        assert float(first[row][7]) > 0
    assert f"run 1 delivered {RECORDS:,}; run 2 unchanged {RECORDS:,}" in output

    scale = table_rows(output, "2.")
    assert set(scale) == {f"{SMALL:,}", f"{RECORDS:,}"}
    assert "skipped: --skip-1m" in output

    quarantine = table_rows(output, "3.")
    # runs, wall, CPU, writes, delivered, unchanged, rejected, quarantined, ratio
    assert quarantine["agillic run 1"][3:8] == [
        "1",
        f"{RECORDS - REFUSED:,}",
        "0",
        f"{REFUSED:,}",
        "0",
    ]
    assert quarantine["agillic run 2"][3:8] == [
        "0",
        "0",
        f"{RECORDS - REFUSED:,}",
        "0",
        f"{REFUSED:,}",
    ]
    assert "4. target-gladly" not in output


@pytest.mark.slow
def test_gladly_section_delivers_every_record(tmp_path: Path) -> None:
    output = bench_gladly.run_section(tmp_path, records=2, scopes=("shared",))

    rows = table_rows(output, "4.")
    assert set(rows) == {
        "shared | insert",
        "shared | upsert, all new",
        "shared | upsert, all existing",
    }
    for cells in rows.values():
        assert cells[0] == "2/2"
