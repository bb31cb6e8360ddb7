"""target-agillic: the Singer target class and its settings."""

from __future__ import annotations

import typing as t
import urllib.parse

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities

from singer_delivery.http import RetryPolicy, Transport
from singer_delivery.settings import check_base_url, delivery_properties
from singer_delivery.target import DeliveryTarget
from target_agillic import settings
from target_agillic.auth import AUTH_METHODS, OAUTH2, authenticator
from target_agillic.client import AgillicClient
from target_agillic.contract import OneToManyTable, quota_exhausted
from target_agillic.mapping import DATE_FORMAT, TIMESTAMP_FORMAT, to_strftime
from target_agillic.sinks import AgillicSink, AudienceSink, OneToManySink, RecipientSink

MAX_CONCURRENCY = 20


class TargetAgillic(DeliveryTarget):
    """Keeps Agillic recipients in sync with a warehouse table."""

    name = "target-agillic"
    default_sink_class = RecipientSink
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        *DeliveryTarget.capabilities,
        PluginCapabilities.ACTIVATE_VERSION,
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
            "auth_method",
            th.StringType,
            default=OAUTH2,
            allowed_values=list(AUTH_METHODS),
            description=(
                "oauth2: fetch a bearer token with the Developer Key and "
                "Secret; basic: send them as HTTP Basic credentials on every "
                "call, no token."
            ),
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
            allowed_values=list(settings.SYNC_MODES),
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
            "object_type",
            th.StringType,
            default="recipients",
            allowed_values=list(settings.OBJECT_TYPES),
            description="recipients (Person Data) or one_to_many (rows of a table).",
        ),
        th.Property(
            "one_to_many_table_id",
            th.StringType,
            description="The one-to-many table, e.g. ORDERS (object_type one_to_many).",
        ),
        th.Property(
            "target_group_name",
            th.StringType,
            description=(
                "Static target group changed by audience_mode (case-sensitive)."
            ),
        ),
        th.Property(
            "audience_mode",
            th.StringType,
            allowed_values=list(settings.AUDIENCE_MODES),
            description=(
                "Unset: a plain recipient sync. add/upsert: upsert then add to the "
                "group; remove: remove from the group; mirror: make the group "
                "equal to the stream's complete snapshot."
            ),
        ),
        th.Property(
            "max_removal_ratio",
            th.NumberType,
            default=0.5,
            description=(
                "Mirror refuses a run that would remove more than this share of "
                "the members it remembers for the group."
            ),
        ),
        th.Property(
            "streams",
            th.ObjectType(
                additional_properties=th.ObjectType(
                    th.Property("object_type", th.StringType),
                    th.Property("one_to_many_table_id", th.StringType),
                    th.Property("target_group_name", th.StringType),
                    th.Property("audience_mode", th.StringType),
                    th.Property("sync_mode", th.StringType),
                    th.Property(
                        "field_mapping",
                        th.ObjectType(additional_properties=th.StringType),
                    ),
                    th.Property("recipient_id_field", th.StringType),
                )
            ),
            description=(
                "Per-stream overrides: {stream name: {object_type, "
                "one_to_many_table_id, target_group_name, audience_mode, "
                "sync_mode, field_mapping, recipient_id_field}}."
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
        self.one_to_many_tables: dict[str, OneToManyTable] = {}
        #: Recipients a dry run plans to create, so its row plans can rely on them.
        self.planned_recipients: set[str] = set()
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
            transport.auth = authenticator(
                self.config.get("auth_method", OAUTH2),
                transport,
                self.config["developer_key"],
                self.config["developer_secret"],
            )
            self._transport = transport
        return self._transport

    def stream_settings(self, stream_name: str) -> dict[str, t.Any]:
        """The settings that apply to one stream (top level plus overrides)."""
        return settings.stream_settings(self.config, stream_name)

    def get_sink_class(self, stream_name: str) -> type[AgillicSink]:
        """Route the stream: one-to-many rows, an audience, or recipients."""
        chosen = self.stream_settings(stream_name)
        if chosen.get("object_type") == "one_to_many":
            return OneToManySink
        if chosen.get("audience_mode"):
            return AudienceSink
        return RecipientSink

    def check_settings(self) -> list[str]:
        """Endpoint, concurrency and date formats, on top of the shared checks."""
        errors = super().check_settings()
        endpoint = self.config.get("api_endpoint")
        if endpoint and (
            problem := check_base_url(
                "api_endpoint", endpoint, "https://api-eu1.agillic.net"
            )
        ):
            errors.append(problem)
        concurrency = self.config.get("max_concurrency", 10)
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            errors.append(
                f"max_concurrency must be between 1 and {MAX_CONCURRENCY} (got "
                f"{concurrency}); Agillic answers 429 beyond {MAX_CONCURRENCY} "
                "concurrent requests"
            )
        errors += settings.check_routing(self.config)
        ratio = self.config.get("max_removal_ratio", 0.5)
        if not 0 <= ratio <= 1:
            errors.append(f"max_removal_ratio must be between 0 and 1 (got {ratio})")
        for setting in ("date_format", "timestamp_format"):
            if value := self.config.get(setting):
                try:
                    to_strftime(value)
                except ValueError as exc:
                    errors.append(f"{setting} {value!r}: {exc}")
        return errors

    def preflight(self) -> None:
        """Read-only checks before any input, so no run fails halfway.

        Credentials (a token), every configured target group (exists, is
        static), every one-to-many table (exists, has an identifier field) and
        every mapped Person Data field (known to the instance). An unknown
        mapped field fails the run: Agillic would refuse every record.
        """
        client = AgillicClient(self.transport)
        assert self.transport.auth is not None
        self.transport.auth.apply({})
        errors = [
            *self._check_groups(client),
            *self._check_tables(client),
            *self._check_fields(client),
        ]
        if errors:
            raise ConfigValidationError("Preflight failed", errors=errors)

    def _check_groups(self, client: AgillicClient) -> list[str]:
        wanted = settings.configured(self.config, "target_group_name")
        if not wanted:
            return []
        groups = {group.name: group for group in client.target_groups()}
        static = sorted(name for name, group in groups.items() if group.static)
        errors = []
        for name in sorted(wanted):
            if name not in groups:
                problem = "does not exist"
            elif not groups[name].static:
                problem = "is not static (only static groups can be changed)"
            else:
                continue
            errors.append(
                f"target_group_name {name!r} {problem}; static groups on this "
                f"instance: {', '.join(static) or 'none'} (names are case-sensitive)"
            )
        return errors

    def _check_tables(self, client: AgillicClient) -> list[str]:
        errors = []
        for name in sorted(settings.configured(self.config, "one_to_many_table_id")):
            table = client.one_to_many_table(name)
            if table is None:
                errors.append(f"one_to_many_table_id {name!r} does not exist")
            elif table.identifier is None:
                errors.append(
                    f"one-to-many table {name!r} has no identifier field, so rows "
                    "cannot be matched"
                )
            else:
                self.one_to_many_tables[name] = table
        return errors

    def _check_fields(self, client: AgillicClient) -> list[str]:
        mapped = {
            field
            for stream in [None, *(self.config.get("streams") or {})]
            for field in self._person_data_fields(stream)
        }
        if not mapped:
            return []
        unknown = sorted(mapped - set(client.persondata_fields()))
        if not unknown:
            return []
        message = (
            f"field_mapping sends Person Data field(s) {', '.join(unknown)} that "
            "this Agillic instance does not have; fix field_mapping or create the "
            "fields in Agillic"
        )
        return [message]

    def _person_data_fields(self, stream: str | None) -> set[str]:
        chosen = self.stream_settings(stream) if stream else dict(self.config)
        if chosen.get("object_type") == "one_to_many":
            return set()
        return set((chosen.get("field_mapping") or {}).values())


if __name__ == "__main__":
    TargetAgillic.cli()
