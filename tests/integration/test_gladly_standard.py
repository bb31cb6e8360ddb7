"""singer-sdk's standard target tests, each checked against the Gladly emulator.

The sample streams key their rows by ``id``, which this target takes as the
Gladly customer id, so the suite runs in insert mode: every row becomes a
profile with that id and its other fields as custom attributes (strings).
``validate`` checks what the emulator holds, or which rows were rejected.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing import target_tests as sdk
from singer_sdk.testing.runners import TargetTestRunner
from typing_extensions import override

from delivery_emulators import GladlyEmulator
from target_gladly.target import TargetGladly
from tests.integration.standard import (
    RecordMissingKeyIsRejected,
    rejects_of,
    suite_with,
)

#: The camel-case samples call their key ``Id``.
MAPPINGS = {
    "camelcase": {"Id": "id", "clientName": "clientName"},
    "camelcase_complex_schema": {"Id": "id"},
}
SERVER_FIELDS = ("id", "createdAt", "updatedAt")


class Checked:
    """Mixin giving validate() the emulator's profiles and the run's rejects."""

    resource: GladlyEmulator
    runner: TargetTestRunner

    @property
    def stored(self) -> dict[str, dict[str, t.Any]]:
        """Profiles by id, without the fields the server adds."""
        return {
            pid: {k: v for k, v in p.items() if k not in SERVER_FIELDS}
            for pid, p in self.resource.profiles.items()
        }

    @property
    def rejects(self) -> list[dict[str, t.Any]]:
        return rejects_of(self.runner)


def attributes(**values: str) -> dict[str, t.Any]:
    return {"customAttributes": values}


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
            "1": attributes(clientName="Gitter Windows Desktop App"),
            "2": attributes(clientName="Gitter iOS App"),
        }


class DuplicateRecords(Checked, sdk.TargetDuplicateRecords):
    @override
    def validate(self) -> None:
        assert self.stored == {
            "1": attributes(metric="100"),
            "2": attributes(metric="20"),
        }


class EncodedStringData(Checked, sdk.TargetEncodedStringData):
    @override
    def validate(self) -> None:
        assert len(self.stored) == 11
        assert self.stored["2"] == attributes(info="απλή συμβολοσειρά")
        assert self.stored["3"] == attributes(info="简单的字串")
        assert self.stored["11"]["customAttributes"]["info"].startswith("Control")
        assert {r["stream"] for r in self.rejects} == {
            "test_strings_in_objects",
            "test_strings_in_arrays",
        }
        assert {r["reason"] for r in self.rejects} == {"unsupported_value"}


class NoPrimaryKeys(Checked, sdk.TargetNoPrimaryKeys):
    @override
    def validate(self) -> None:
        assert self.stored == {
            "1": attributes(metric="11"),
            "2": attributes(metric="22"),
            "3": attributes(metric="33"),
        }


class OptionalAttributes(Checked, sdk.TargetOptionalAttributes):
    @override
    def validate(self) -> None:
        assert self.stored["1"] == attributes(optional="This is optional")
        assert self.stored["2"] == {}
        assert len(self.stored) == 4


class PrimaryKeyUpdates(Checked, sdk.TargetPrimaryKeyUpdates):
    @override
    def validate(self) -> None:
        assert self.stored == {
            "1": {"name": "Alice", "emails": [{"original": "alice@example.com"}]},
            "2": {"name": "Bob", "emails": [{"original": "bob@example.com"}]},
        }


class RecordMissingKeyProperty(Checked, RecordMissingKeyIsRejected):
    @override
    def validate(self) -> None:
        assert self.stored == {}
        assert [r["reason"] for r in self.rejects] == ["missing_key"]
        assert [r["key"] for r in self.rejects] == ["id=None"]


class RecordMissingOptionalFields(Checked, sdk.TargetRecordMissingOptionalFields):
    @override
    def validate(self) -> None:
        assert self.stored == {"1": attributes(optional="now you see me"), "2": {}}


class RecordMissingRequiredProperty(Checked, sdk.TargetRecordMissingRequiredProperty):
    @override
    def validate(self) -> None:
        assert self.stored == {}
        assert [r["reason"] for r in self.rejects] == ["invalid_record"]


class SchemaNoProperties(Checked, sdk.TargetSchemaNoProperties):
    @override
    def validate(self) -> None:
        assert self.stored == {}
        assert [r["reason"] for r in self.rejects] == ["unsupported_value"] * 4


class SchemaUpdates(Checked, sdk.TargetSchemaUpdates):
    @override
    def validate(self) -> None:
        assert self.stored == {
            "1": attributes(a1="101", a2="string1"),
            "2": attributes(a1="102", a2="string2", a3="true"),
        }
        assert [r["key"] for r in self.rejects] == ["id=3", "id=4", "id=5", "id=6"]
        assert {r["reason"] for r in self.rejects} == {"unsupported_value"}


class SpecialCharsInAttributes(Checked, sdk.TargetSpecialCharsInAttributes):
    @override
    def validate(self) -> None:
        assert self.stored == {}
        assert [(r["key"], r["reason"]) for r in self.rejects] == [
            ("_id=a2e98886", "unsupported_value")
        ]


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
    TargetGladly, config={}, custom_suites=[SUITE], include_target_tests=False
)


class TestTargetGladlyStandard(_StandardTests):  # type: ignore[misc,valid-type]
    """The SDK's suite, run in-process against a fresh emulator per test."""

    @pytest.fixture
    def resource(self) -> t.Iterator[GladlyEmulator]:
        with GladlyEmulator(rate_limit=1000) as emulator:
            yield emulator

    @pytest.fixture
    def runner(
        self,
        resource: GladlyEmulator,
        tmp_path: Path,
        request: pytest.FixtureRequest,
    ) -> TargetTestRunner:
        test_name = request.node.name.removeprefix("test_target_")
        config: dict[str, t.Any] = {
            "domain": "example",
            "base_url": resource.url,
            "username": resource.username,
            "api_token": resource.api_token,
            "sync_mode": "insert",
            "max_requests_per_second": 1000,
            "ledger_url": "sqlite://",
            "rejects_path": str(tmp_path / "rejects.jsonl"),
            "max_reject_ratio": 1,
        }
        if test_name in MAPPINGS:
            config["field_mapping"] = MAPPINGS[test_name]
        return TargetTestRunner(target_class=TargetGladly, config=config)
