"""target-agillic: the Singer target class."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities
from typing_extensions import override

from singer_delivery import DeliveryTarget, RetryPolicy, Transport
from singer_delivery.settings import check_base_url, for_stream
from target_agillic import settings
from target_agillic.auth import authenticator
from target_agillic.client import AgillicClient, WarnOnce
from target_agillic.contract import OneToManyTable, quota_exhausted
from target_agillic.deletes import RecipientDeleteSink
from target_agillic.events import EventSink
from target_agillic.sinks import AgillicSink, AudienceSink, OneToManySink, RecipientSink

if t.TYPE_CHECKING:
    from singer_delivery.budget import CallBudget

#: 429s in a row, over two minutes, that mean the daily quota is spent.
QUOTA_STREAK = 50


@dataclass
class AgillicResources:
    """What preflight learned, shared by every sink of the run."""

    one_to_many_tables: dict[str, OneToManyTable] = field(default_factory=dict)
    #: Recipients a dry run plans to create, so its row and event plans can
    #: rely on them.
    planned_recipients: set[str] = field(default_factory=set)
    warn_once: WarnOnce = field(default_factory=WarnOnce)


class TargetAgillic(DeliveryTarget[AgillicResources]):
    """Keeps Agillic recipients in sync with a warehouse table."""

    name = "target-agillic"
    default_sink_class = RecipientSink
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        *DeliveryTarget.capabilities,
        PluginCapabilities.ACTIVATE_VERSION,
    ]
    config_jsonschema = th.PropertiesList(*settings.properties()).to_dict()

    @property
    @override
    def api_url(self) -> str:
        """The configured ``api_endpoint``."""
        return str(self.config["api_endpoint"]).rstrip("/")

    @property
    @override
    def request_concurrency(self) -> int:
        """Per-record calls (insert, update, group changes) use every connection."""
        return int(self.config["max_concurrency"])

    @override
    def get_sink_class(self, stream_name: str) -> type[AgillicSink]:
        """Route the stream: deletes, one-to-many rows, events, an audience, or
        recipients (the settings checks rule out the combinations)."""
        chosen = self.delivery_run.settings_for(stream_name)
        if chosen["sync_mode"] == "delete":
            return RecipientDeleteSink
        if chosen["object_type"] == "one_to_many":
            return OneToManySink
        if chosen["object_type"] == "event":
            return EventSink
        if chosen.get("audience_mode"):
            return AudienceSink
        return RecipientSink

    @override
    def check_settings(self) -> list[str]:
        """The endpoint and the routing, on top of the shared checks."""
        errors = super().check_settings()
        if problem := check_base_url(
            "api_endpoint", self.config["api_endpoint"], "https://api-eu1.agillic.net"
        ):
            errors.append(problem)
        return errors + settings.check(self.config)

    @override
    def create_transport(self, *, budget: CallBudget | None) -> Transport:
        """Connections capped at ``max_concurrency``, the chosen authentication."""
        config = self.config
        transport = Transport(
            base_url=self.api_url,
            timeout=float(config["request_timeout"]),
            retry=RetryPolicy(
                total=int(config["max_retries"]), give_up_after_429s=QUOTA_STREAK
            ),
            max_concurrency=int(config["max_concurrency"]),
            fatal_check=quota_exhausted,
            budget=budget,
            user_agent=f"{self.name}/{self.plugin_version}",
        )
        transport.auth = authenticator(
            config["auth_method"],
            transport,
            config["developer_key"],
            config["developer_secret"],
        )
        return transport

    @override
    def preflight(self, transport: Transport) -> AgillicResources:
        """Read-only checks before any input, so no run fails halfway.

        Credentials, every configured target group (exists, is static),
        every one-to-many table (exists, has an identifier field) and every
        mapped Person Data field (known to the instance). An unknown mapped
        field fails the run: Agillic would refuse every record. Events are
        not checked: Agillic documents no event discovery, so an unknown
        ``event_name`` shows only when an event is fired (``unknown_event``).
        """
        client = AgillicClient(transport)
        resources = AgillicResources()
        errors = [
            *self._check_fields(client),
            *self._check_groups(client),
            *self._check_tables(client, resources),
        ]
        if errors:
            raise ConfigValidationError("Preflight failed", errors=errors)
        return resources

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

    def _check_tables(
        self, client: AgillicClient, resources: AgillicResources
    ) -> list[str]:
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
                resources.one_to_many_tables[name] = table
        return errors

    def _check_fields(self, client: AgillicClient) -> list[str]:
        """Also the credential check: the first call of every run."""
        known = set(client.persondata_fields())
        streams = [None, *(self.config.get("streams") or {})]
        mapped = {field for stream in streams for field in self._person_data(stream)}
        unknown = sorted(mapped - known)
        if not unknown:
            return []
        message = (
            f"field_mapping sends Person Data field(s) {', '.join(unknown)} that "
            "this Agillic instance does not have; fix field_mapping or create the "
            "fields in Agillic"
        )
        return [message]

    def _person_data(self, stream: str | None) -> set[str]:
        """The Person Data fields a stream writes: none for rows and events,
        whose mapped fields are table columns and context parameters."""
        chosen = for_stream(self.config, stream) if stream else dict(self.config)
        if chosen["object_type"] in ("one_to_many", "event"):
            return set()
        return set((chosen.get("field_mapping") or {}).values())


if __name__ == "__main__":
    TargetAgillic.cli()
