"""The yardsticks: stock singer-sdk targets whose sink does nothing.

``python -m tests.bench_noop --config CONFIG`` is the stock no-op: default
settings, so it pays for what every SDK target pays for (the default
message reader, jsonschema validation, batching), and target-agillic's
time divided by this one's shows what the delivery machinery adds or saves.

``python -m tests.bench_noop --fast --config CONFIG`` is the fast no-op: the
same target reading messages with singer-sdk's msgspec reader
(``singer_sdk.contrib.msgspec.MsgSpecReader``); run with
``validate_records: false`` in its config, it is about the least any SDK
target can spend per record.
"""

from __future__ import annotations

import sys
import typing as t

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.sinks import BatchSink
from typing_extensions import override

FAST_FLAG = "--fast"


class NoopSink(BatchSink):
    """Accepts every batch and drops it."""

    @override
    def process_batch(self, context: dict[str, t.Any]) -> None:
        """Nothing to write: only the SDK's own per-record work is measured."""


class TargetNoop(Target):
    """A stock target with default settings and a no-op BatchSink."""

    name = "target-noop"
    config_jsonschema = th.PropertiesList().to_dict()
    default_sink_class = NoopSink


class TargetNoopFast(TargetNoop):
    """The same no-op target with the msgspec message reader."""

    name = "target-noop-fast"
    message_reader_class = MsgSpecReader


def main() -> None:
    """``--fast`` (taken out before singer-sdk parses the rest) picks the reader."""
    fast = FAST_FLAG in sys.argv[1:]
    if fast:
        sys.argv.remove(FAST_FLAG)
    (TargetNoopFast if fast else TargetNoop).cli()


if __name__ == "__main__":
    main()
