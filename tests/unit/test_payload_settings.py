"""Which settings make up the identity of source fingerprints."""

from __future__ import annotations

from singer_delivery.settings import RUN_SETTINGS, payload_settings
from target_agillic.target import TargetAgillic

SCHEMA = TargetAgillic.config_jsonschema
DEFAULT_TIMESTAMP_FORMAT = SCHEMA["properties"]["timestamp_format"]["default"]


def test_only_settings_that_may_change_a_payload_count() -> None:
    settings = {
        "field_mapping": {"email": "EMAIL"},
        "date_format": "yyyy/MM/dd",
        "developer_secret": "s3cret",  # secret: never part of it
        "timestamp_format": DEFAULT_TIMESTAMP_FORMAT,  # at its default
        "report_path": "/runs/1/report.json",  # the run's own
        "batch_size_rows": 70,
        "streams": {"other": {"field_mapping": {"id": "EMAIL"}}},
    }
    assert payload_settings(settings, SCHEMA) == {
        "field_mapping": {"email": "EMAIL"},
        "date_format": "yyyy/MM/dd",
    }


def test_the_run_settings_are_the_shared_ones() -> None:
    assert {"report_path", "rejects_path", "dry_run", "ledger_url"} <= RUN_SETTINGS
    assert {"max_deletes", "batch_size_rows", "stream_maps"} <= RUN_SETTINGS
    assert not {"field_mapping", "validate_records", "sync_mode"} & RUN_SETTINGS
