"""Number settings given as environment variables take effect under Meltano.

The loaders declare JSON numbers as ``kind: string`` (hub/generate.py says
why: Meltano 4.4 cannot pass a ``decimal`` from the environment at all), so
``TARGET_AGILLIC_MAX_REMOVAL_RATIO=0.9`` reaches the target as the string
"0.9". The target must turn it into the number, and its run report's
``settings`` show what was in effect.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from delivery_emulators import AgillicEmulator
from tests.e2e.harness import Meltano, Warehouse

pytestmark = [pytest.mark.postgres, pytest.mark.meltano, pytest.mark.slow]


@pytest.fixture
def pipeline(
    meltano: Meltano,
    warehouse: Warehouse,
    agillic_emulator: AgillicEmulator,
    tmp_path: Path,
) -> Meltano:
    """The prod environment reading the warehouse into the Agillic emulator."""
    agillic_emulator.add_group("VIP")
    meltano.env.update(
        TAP_POSTGRES_SQLALCHEMY_URL=warehouse.tap_url,
        TARGET_AGILLIC_API_ENDPOINT=agillic_emulator.url,
        TARGET_AGILLIC_DEVELOPER_KEY=agillic_emulator.developer_key,
        TARGET_AGILLIC_DEVELOPER_SECRET=agillic_emulator.developer_secret,
        TARGET_AGILLIC_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        TARGET_AGILLIC_REJECTS_PATH=str(tmp_path / "rejects.jsonl"),
        TARGET_AGILLIC_REPORT_PATH=str(tmp_path / "report.json"),
    )
    return meltano


def test_numbers_from_environment_variables_are_in_effect(
    pipeline: Meltano, agillic_emulator: AgillicEmulator, tmp_path: Path
) -> None:
    pipeline.env.update(
        TARGET_AGILLIC_MAX_REMOVAL_RATIO="0.9",
        TARGET_AGILLIC_REQUEST_TIMEOUT="45",
    )

    pipeline("run", "tap-postgres", "target-agillic")

    assert len(agillic_emulator.recipients) == 30
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["settings"]["max_removal_ratio"] == 0.9
    assert report["settings"]["request_timeout"] == 45
