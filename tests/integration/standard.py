"""What both targets' runs of singer-sdk's standard target tests share."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

from singer_sdk.testing import target_tests as sdk
from singer_sdk.testing.runners import TargetTestRunner
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.templates import TargetTestTemplate
from typing_extensions import override

#: The SDK's target tests that apply to an API target, in the SDK's order.
SDK_TESTS: list[type[TargetTestTemplate]] = [
    sdk.TargetArrayData,
    sdk.TargetCamelcaseComplexSchema,
    sdk.TargetCamelcaseTest,
    sdk.TargetCliPrintsTest,
    sdk.TargetDuplicateRecords,
    sdk.TargetEncodedStringData,
    sdk.TargetInvalidSchemaTest,
    sdk.TargetNoPrimaryKeys,
    sdk.TargetOptionalAttributes,
    sdk.TargetPrimaryKeyUpdates,
    sdk.TargetRecordBeforeSchemaTest,
    sdk.TargetRecordMissingKeyProperty,
    sdk.TargetRecordMissingOptionalFields,
    sdk.TargetRecordMissingRequiredProperty,
    sdk.TargetSchemaNoProperties,
    sdk.TargetSchemaUpdates,
    sdk.TargetSpecialCharsInAttributes,
]


class RecordMissingKeyIsRejected(sdk.TargetRecordMissingKeyProperty):
    """singer-sdk expects a record without its key property to stop the run;
    these targets reject it with a reason and go on (taps that leave out null
    columns send such records). ``validate`` checks the reject."""

    @override
    def test(self) -> None:
        """Run the sample without expecting the SDK's exception."""
        self.runner.sync_all()


def suite_with(
    *checked: type[TargetTestTemplate],
) -> SingerTestSuite[TargetTestTemplate]:
    """The SDK's tests, each replaced by the subclass that validates it, if any."""
    replacement = {base: cls for cls in checked for base in cls.__mro__[1:]}
    return SingerTestSuite(
        kind="target", tests=[replacement.get(test, test) for test in SDK_TESTS]
    )


def rejects_of(runner: TargetTestRunner) -> list[dict[str, t.Any]]:
    """The rejects file of the run, as a list of lines."""
    path = Path(runner.config["rejects_path"])
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]
