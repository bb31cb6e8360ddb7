"""Counts, the report table and progress lines."""

from __future__ import annotations

import logging
import time

import pytest

from singer_delivery.report import ProgressLogger, StreamStats, render_table


def test_table_has_a_row_per_stream_and_reasons_beneath() -> None:
    a, b = StreamStats("customers"), StreamStats("orders")
    a.received, b.received = 10, 3
    a.add(sent=9, created=9, delivered=9)
    a.reject("missing_recipient_id")
    b.add(unchanged=3)
    lines = render_table("title", [a, b]).splitlines()
    assert lines[0] == "title"
    assert lines[2].split()[:8] == ["customers", "10", "0", "0", "9", "9", "0", "1"]
    assert lines[3].strip() == "rejected: missing_recipient_id=1"
    assert lines[4].split()[:4] == ["orders", "3", "0", "3"]


def test_progress_logs_active_streams_only(caplog: pytest.LogCaptureFixture) -> None:
    stats = StreamStats("customers")
    idle = StreamStats("idle")
    progress = ProgressLogger(lambda: [stats, idle], interval=0.05)
    with caplog.at_level(logging.INFO, logger="singer_delivery.report"):
        progress.start()
        stats.received = 100
        stats.add(sent=100, delivered=80)
        time.sleep(0.3)
        progress.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert any("progress customers: received 100" in line for line in lines)
    assert sum("progress customers" in line for line in lines) == 1
    assert not any("progress idle" in line for line in lines)
