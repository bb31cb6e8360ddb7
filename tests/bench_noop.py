"""The yardstick: a stock singer-sdk target whose sink does nothing.

With default settings it pays for what every SDK target pays for (the
default message reader, jsonschema validation, batching), so target-agillic's
time divided by this one's shows what the delivery machinery adds or saves.
"""

from __future__ import annotations

import typing as t

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink


class NoopSink(BatchSink):
    """Accepts every batch and drops it."""

    def process_batch(self, context: dict[str, t.Any]) -> None:
        """Nothing to write: only the SDK's own per-record work is measured."""


class TargetNoop(Target):
    """A stock target with default settings and a no-op BatchSink."""

    name = "target-noop"
    config_jsonschema = th.PropertiesList().to_dict()
    default_sink_class = NoopSink


if __name__ == "__main__":
    TargetNoop.cli()
