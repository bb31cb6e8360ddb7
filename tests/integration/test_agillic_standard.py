"""singer-sdk's standard target tests, each checked against the emulator.

Every test gets a fresh emulator whose Person Data fields are the fields of
the SDK's sample streams, and a ``validate`` that checks what Agillic ended
up holding (or which records were rejected and why) where the input allows.
"""

from __future__ import annotations

import importlib.resources
import json
import typing as t
from pathlib import Path

import pytest
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing import target_tests as sdk
from singer_sdk.testing.runners import TargetTestRunner
from typing_extensions import override

from delivery_emulators import AgillicEmulator
from target_agillic.target import TargetAgillic
from tests.integration.standard import (
    RecordMissingKeyIsRejected,
    rejects_of,
    suite_with,
)

STREAMS = importlib.resources.files("singer_sdk.testing") / "target_test_streams"

#: The recipient ID field per test: the sample stream's own key.
ID_FIELDS = {"camelcase": "Id", "camelcase_complex_schema": "Id"}


def sample_fields() -> list[tuple[str, str]]:
    """Every property name in the SDK's sample streams, as Person Data fields."""
    names: set[str] = set()
    for path in STREAMS.iterdir():
        if not path.name.endswith(".singer"):
            continue
        for line in path.read_text().splitlines():
            message = json.loads(line) if line.strip() else {}
            if message.get("type") == "SCHEMA":
                names.update(message["schema"].get("properties", {}))
    return [(name, "STRING") for name in sorted(names)]


class Checked:
    """Mixin giving validate() the emulator and the run's rejects."""

    resource: AgillicEmulator
    runner: TargetTestRunner

    @property
    def stored(self) -> dict[str, dict[str, t.Any]]:
        return self.resource.recipients

    @property
    def rejects(self) -> list[dict[str, t.Any]]:
        return rejects_of(self.runner)


class ArrayData(Checked, sdk.TargetArrayData):
    @override
    def validate(self) -> None:
        assert self.stored == {}
        assert [r["reason"] for r in self.rejects] == ["unsupported_value"] * 4
        assert {tuple(r["fields"]) for r in self.rejects} == {("fruits",)}


class CamelcaseComplexSchema(Checked, sdk.TargetCamelcaseComplexSchema):
    @override
    def validate(self) -> None:
        # the sample holds only SCHEMA messages: nothing to write, nothing refused
        assert self.stored == {}
        assert self.rejects == []


class Camelcase(Checked, sdk.TargetCamelcaseTest):
    @override
    def validate(self) -> None:
        assert self.stored == {
            "1": {"Id": "1", "clientName": "Gitter Windows Desktop App"},
            "2": {"Id": "2", "clientName": "Gitter iOS App"},
        }


class DuplicateRecords(Checked, sdk.TargetDuplicateRecords):
    @override
    def validate(self) -> None:
        assert self.stored == {
            "1": {"id": 1, "metric": 100},
            "2": {"id": 2, "metric": 20},
        }


class EncodedStringData(Checked, sdk.TargetEncodedStringData):
    @override
    def validate(self) -> None:
        assert self.stored["2"]["info"] == "απλή συμβολοσειρά"
        assert self.stored["3"]["info"] == "简单的字串"
        assert {r["stream"] for r in self.rejects} == {
            "test_strings_in_objects",
            "test_strings_in_arrays",
        }
        assert {r["reason"] for r in self.rejects} == {"unsupported_value"}


class NoPrimaryKeys(Checked, sdk.TargetNoPrimaryKeys):
    @override
    def validate(self) -> None:
        assert {k: v["metric"] for k, v in self.stored.items()} == {
            "1": 11,
            "2": 22,
            "3": 33,
        }


class OptionalAttributes(Checked, sdk.TargetOptionalAttributes):
    @override
    def validate(self) -> None:
        assert self.stored["1"]["optional"] == "This is optional"
        assert "optional" not in self.stored["2"]
        assert len(self.stored) == 4


class PrimaryKeyUpdates(Checked, sdk.TargetPrimaryKeyUpdates):
    @override
    def validate(self) -> None:
        assert self.stored["1"]["email"] == "alice@example.com"
        assert self.stored["2"]["name"] == "Bob"


class RecordMissingKeyProperty(Checked, RecordMissingKeyIsRejected):
    @override
    def validate(self) -> None:
        assert self.stored == {}
        assert [r["reason"] for r in self.rejects] == ["missing_recipient_id"]
        assert [r["key"] for r in self.rejects] == ["id=None"]


class RecordMissingOptionalFields(Checked, sdk.TargetRecordMissingOptionalFields):
    @override
    def validate(self) -> None:
        assert self.stored == {
            "1": {"id": 1, "optional": "now you see me"},
            "2": {"id": 2},
        }


class RecordMissingRequiredProperty(Checked, sdk.TargetRecordMissingRequiredProperty):
    @override
    def validate(self) -> None:
        assert self.stored == {}
        assert [r["reason"] for r in self.rejects] == ["invalid_record"]


class SchemaNoProperties(Checked, sdk.TargetSchemaNoProperties):
    @override
    def validate(self) -> None:
        assert self.stored == {}
        assert {r["reason"] for r in self.rejects} <= {
            "missing_recipient_id",
            "unsupported_value",
        }
        assert len(self.rejects) >= 2


class SchemaUpdates(Checked, sdk.TargetSchemaUpdates):
    @override
    def validate(self) -> None:
        assert sorted(self.stored) == ["1", "2"]
        assert self.stored["2"]["a3"] is True
        assert [r["key"] for r in self.rejects] == ["id=3", "id=4", "id=5", "id=6"]
        assert {r["reason"] for r in self.rejects} == {"unsupported_value"}


class SpecialCharsInAttributes(Checked, sdk.TargetSpecialCharsInAttributes):
    @override
    def validate(self) -> None:
        assert self.stored == {}
        assert [r["key"] for r in self.rejects] == ["_id=a2e98886"]


SUITE = suite_with(
    ArrayData,
    CamelcaseComplexSchema,
    Camelcase,
    DuplicateRecords,
    EncodedStringData,
    NoPrimaryKeys,
    OptionalAttributes,
    PrimaryKeyUpdates,
    RecordMissingKeyProperty,
    RecordMissingOptionalFields,
    RecordMissingRequiredProperty,
    SchemaNoProperties,
    SchemaUpdates,
    SpecialCharsInAttributes,
)

_StandardTests = get_target_test_class(
    TargetAgillic, config={}, custom_suites=[SUITE], include_target_tests=False
)


class TestTargetAgillicStandard(_StandardTests):  # type: ignore[misc,valid-type]
    """The SDK's suite, run in-process against a fresh emulator per test."""

    @pytest.fixture
    def resource(self) -> t.Iterator[AgillicEmulator]:
        with AgillicEmulator(
            recipient_id_field="id", person_fields=sample_fields()
        ) as emulator:
            yield emulator

    @pytest.fixture
    def runner(
        self,
        resource: AgillicEmulator,
        tmp_path: Path,
        request: pytest.FixtureRequest,
    ) -> TargetTestRunner:
        test_name = request.node.name.removeprefix("test_target_")
        id_field = ID_FIELDS.get(test_name, "id")
        resource.configure(recipient_id_field=id_field)
        config = {
            "api_endpoint": resource.url,
            "developer_key": resource.developer_key,
            "developer_secret": resource.developer_secret,
            "recipient_id_field": id_field,
            "ledger_url": "sqlite://",
            "rejects_path": str(tmp_path / "rejects.jsonl"),
            "max_reject_ratio": 1,
        }
        return TargetTestRunner(target_class=TargetAgillic, config=config)
