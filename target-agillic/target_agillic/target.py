"""target-agillic: the Singer target class and its settings."""

from __future__ import annotations

import typing as t
import urllib.parse

from singer_sdk import typing as th
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities

from singer_delivery.http import RetryPolicy, Transport
from singer_delivery.settings import check_base_url, delivery_properties
from singer_delivery.target import DeliveryTarget
from target_agillic.auth import ClientCredentials
from target_agillic.contract import quota_exhausted
from target_agillic.mapping import DATE_FORMAT, TIMESTAMP_FORMAT, to_strftime
from target_agillic.sinks import RecipientSink

SYNC_MODES = ("upsert", "insert", "update")
MAX_CONCURRENCY = 20


class TargetAgillic(DeliveryTarget):
    """Keeps Agillic recipients in sync with a warehouse table."""

    name = "target-agillic"
    default_sink_class = RecipientSink
    capabilities: t.ClassVar[list] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
        TargetCapabilities.VALIDATE_RECORDS,
    ]

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_endpoint",
            th.StringType,
            required=True,
            description=(
                "Base URL of the Agillic API, e.g. https://api-eu1.agillic.net "
                "(plain http only for 127.0.0.1 or localhost)."
            ),
        ),
        th.Property(
            "developer_key",
            th.StringType,
            required=True,
            secret=True,
            description="Developer API key (OAuth2 client id).",
        ),
        th.Property(
            "developer_secret",
            th.StringType,
            required=True,
            secret=True,
            description="Developer API secret (OAuth2 client secret).",
        ),
        th.Property(
            "recipient_id_field",
            th.StringType,
            default="EMAIL",
            description="The Person Data field that is the instance's recipient ID.",
        ),
        th.Property(
            "sync_mode",
            th.StringType,
            default="upsert",
            allowed_values=list(SYNC_MODES),
            description=(
                "upsert: create or update (async batches); insert: only create, "
                "existing recipients are rejected; update: only update, missing "
                "recipients are rejected."
            ),
        ),
        th.Property(
            "field_mapping",
            th.ObjectType(additional_properties=th.StringType),
            description=(
                "{record field: Person Data field}. When given, only mapped fields "
                "are sent; when absent, record fields go under their own names."
            ),
        ),
        th.Property(
            "date_format",
            th.StringType,
            default=DATE_FORMAT,
            description="How date values are written (Java-style pattern).",
        ),
        th.Property(
            "timestamp_format",
            th.StringType,
            default=TIMESTAMP_FORMAT,
            description=(
                "How date-time values are written (Java-style pattern; aware "
                "timestamps are converted to UTC)."
            ),
        ),
        th.Property(
            "max_concurrency",
            th.IntegerType,
            default=10,
            description=(
                f"Requests in flight at once, 1 to {MAX_CONCURRENCY} (Agillic "
                f"allows {MAX_CONCURRENCY} per instance, shared with other clients)."
            ),
        ),
        th.Property(
            "task_timeout",
            th.NumberType,
            default=600,
            description="Seconds to wait for an async batch task before failing.",
        ),
        *delivery_properties(),
    ).to_dict()

    def __init__(self, **kwargs: t.Any) -> None:
        self._transport: Transport | None = None
        super().__init__(**kwargs)

    @property
    def lock_name(self) -> str:
        """One run at a time per Agillic instance."""
        return (
            f"{self.name} {urllib.parse.urlsplit(self.config['api_endpoint']).netloc}"
        )

    @property
    def transport(self) -> Transport:
        """The connection pool, limits and token every sink shares."""
        if self._transport is None:
            transport = Transport(
                base_url=self.config["api_endpoint"],
                timeout=float(self.config.get("request_timeout", 30)),
                retry=RetryPolicy(total=int(self.config.get("max_retries", 5))),
                max_concurrency=int(self.config.get("max_concurrency", 10)),
                fatal_check=quota_exhausted,
                user_agent=f"{self.name}/{self.plugin_version}",
            )
            transport.auth = ClientCredentials(
                transport, self.config["developer_key"], self.config["developer_secret"]
            )
            self._transport = transport
        return self._transport

    def stream_settings(self, stream_name: str) -> dict[str, t.Any]:
        """The settings that apply to one stream."""
        return dict(self.config)

    def check_settings(self) -> list[str]:
        """Endpoint, concurrency and date formats, on top of the shared checks."""
        errors = super().check_settings()
        endpoint = self.config.get("api_endpoint")
        if endpoint and (problem := check_base_url("api_endpoint", endpoint)):
            errors.append(problem)
        concurrency = self.config.get("max_concurrency", 10)
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            errors.append(
                f"max_concurrency must be between 1 and {MAX_CONCURRENCY} (got "
                f"{concurrency}); Agillic answers 429 beyond {MAX_CONCURRENCY} "
                "concurrent requests"
            )
        for setting in ("date_format", "timestamp_format"):
            if value := self.config.get(setting):
                try:
                    to_strftime(value)
                except ValueError as exc:
                    errors.append(f"{setting} {value!r}: {exc}")
        return errors

    def preflight(self) -> None:
        """Fetch a token now, so bad credentials stop the run before any input."""
        assert self.transport.auth is not None
        self.transport.auth.apply({})


if __name__ == "__main__":
    TargetAgillic.cli()
