"""target-gladly: the Singer target class and its settings."""

from __future__ import annotations

import math
import typing as t

from singer_sdk import typing as th
from typing_extensions import override

from singer_delivery import (
    DeliveryTarget,
    RateLimiter,
    RetryPolicy,
    Transport,
    delivery_settings,
)
from singer_delivery.ratelimit import AUTO, SCOPES
from singer_delivery.settings import check_base_url
from target_gladly import contract
from target_gladly.client import GladlyClient
from target_gladly.mapping import check_field_mapping, check_phone_region
from target_gladly.sinks import CustomerProfileSink, ProfileLocks

if t.TYPE_CHECKING:
    from singer_delivery.budget import CallBudget

SYNC_MODES = ("upsert", "insert", "update")
AUDIENCE_MODES = ("add", "remove", "mirror")
NO_AUDIENCES = (
    "Gladly has no list or audience API, so there is nothing to add customers "
    "to, remove them from or mirror; use sync_mode upsert, insert or update"
)

DEFAULT_RATE = 10
#: One profile per request: batches only group records for change detection.
MAX_BATCH_ROWS = 1000

#: Connections: pacing, not the pool, must be what makes a request wait, or
#: a request would take its pacing slot and then go out late in a burst.
MAX_CONNECTIONS = 64


class TargetGladly(DeliveryTarget[ProfileLocks]):
    """Keeps Gladly customer profiles in sync with a warehouse table."""

    name = "target-gladly"
    default_sink_class = CustomerProfileSink
    config_jsonschema = th.PropertiesList(
        th.Property(
            "domain",
            th.StringType(min_length=1),
            required=True,
            description=(
                "The organization's Gladly subdomain, e.g. mycompany for "
                "https://mycompany.gladly.com; a full Gladly host such as "
                "mycompany.gladly.qa (sandbox) or mycompany.us-1.gladly.com is "
                "also accepted. No scheme, path or port."
            ),
        ),
        th.Property(
            "base_url",
            th.StringType,
            description=(
                "Override of the API base URL (tests, emulators, proxies); plain "
                "http only for 127.0.0.1 or localhost. Default: https://{domain host}."
            ),
        ),
        th.Property(
            "username",
            th.StringType(min_length=1),
            required=True,
            description="Email address of the Gladly API user.",
        ),
        th.Property(
            "api_token",
            th.StringType(min_length=1),
            required=True,
            secret=True,
            description="API token of that user (HTTP Basic password).",
        ),
        th.Property(
            "sync_mode",
            th.StringType,
            default="upsert",
            allowed_values=list(SYNC_MODES),
            description=(
                "upsert: match by email, update what differs or create; insert: "
                "only create, existing profiles are rejected; update: only update "
                "profiles by their Gladly id (mapped to id), missing ones are "
                "rejected."
            ),
        ),
        th.Property(
            "field_mapping",
            th.ObjectType(additional_properties=th.StringType),
            description=(
                "{record field: profile field}. name, email, phone, address, "
                "externalCustomerId, image and id are profile fields; any other "
                "name is a custom attribute. When absent, record fields go under "
                "their own names by the same rule (_sdc_* fields are skipped)."
            ),
        ),
        th.Property(
            "phone_type",
            th.StringType,
            allowed_values=list(contract.PHONE_TYPES),
            description=(
                "Type given to phone numbers: MOBILE, HOME or OFFICE; unset sends "
                "no type. A MOBILE number must be unique in Gladly: a record "
                "whose mobile number another profile holds is rejected."
            ),
        ),
        th.Property(
            "default_phone_region",
            th.StringType,
            description=(
                "Country of phone numbers written without a leading + and "
                "country code, as an ISO 3166 alpha-2 code such as DK. Numbers "
                "are sent in E.164; unset, a number without a country code is "
                "rejected (Gladly would read it as a US number)."
            ),
        ),
        th.Property(
            "max_requests_per_second",
            th.NumberType(exclusive_minimum=0),
            default=DEFAULT_RATE,
            description=(
                "Requests per second for each HTTP method (GET, POST, PATCH "
                "separately), shared by all threads and streams. Gladly allows "
                "10 per method for the whole organization."
            ),
        ),
        th.Property(
            "rate_limit_scope",
            th.StringType,
            default=AUTO,
            allowed_values=list(SCOPES),
            description=(
                "Whose requests one rate budget counts: per_method (GET, POST "
                "and PATCH each get max_requests_per_second), shared (all "
                "methods together get it), or auto (per method until Gladly's "
                "rate-limit headers show one budget for all methods, then shared)."
            ),
        ),
        *delivery_settings(max_batch_rows=MAX_BATCH_ROWS, default_max_retries=3),
    ).to_dict()

    # --- settings -----------------------------------------------------------

    @property
    @override
    def api_url(self) -> str:
        """``base_url`` when set, else the organization's Gladly host."""
        if base_url := self.config.get("base_url"):
            return str(base_url).rstrip("/")
        return f"https://{contract.gladly_host(self.config['domain'])}"

    @property
    def rate(self) -> float:
        """Requests per second allowed for each HTTP method."""
        return float(self.config["max_requests_per_second"])

    @property
    @override
    def request_concurrency(self) -> int:
        """Records in flight per stream: about one per request per second.

        Round trips of up to a second per record then still keep the GET
        and the write budgets busy at once; more threads would only wait.
        """
        return min(32, max(8, math.ceil(self.rate)))

    @override
    def delivery_threads(self, transport: Transport) -> int:
        """Two batches at once: each already spreads its records over
        ``request_concurrency`` threads, and pacing is the limit."""
        return 2

    @override
    def check_settings(self) -> list[str]:
        """Domain, base URL, modes and mapping, on top of the shared checks."""
        errors = super().check_settings()
        config = self.config
        try:
            contract.gladly_host(config["domain"])
        except ValueError as exc:
            errors.append(str(exc))
        base_url = config.get("base_url")
        if base_url and (
            problem := check_base_url(
                "base_url", base_url, "https://mycompany.gladly.com"
            )
        ):
            errors.append(problem)
        errors += check_modes(config)
        if mapping := config.get("field_mapping"):
            errors += check_field_mapping(mapping)
        errors += check_phone_region(config.get("default_phone_region"))
        return errors

    # --- API ----------------------------------------------------------------

    @override
    def create_transport(self, *, budget: CallBudget | None) -> Transport:
        """Paced at ``max_requests_per_second`` per method, HTTP Basic."""
        transport = Transport(
            base_url=self.api_url,
            timeout=float(self.config["request_timeout"]),
            retry=RetryPolicy(total=int(self.config["max_retries"])),
            max_concurrency=MAX_CONNECTIONS,
            rate_limiter=RateLimiter(self.rate, scope=self.config["rate_limit_scope"]),
            fatal_check=contract.credential_failure,
            budget=budget,
            user_agent=f"{self.name}/{self.plugin_version}",
        )
        transport.session.auth = (self.config["username"], self.config["api_token"])
        return transport

    @override
    def preflight(self, transport: Transport) -> ProfileLocks:
        """Check credentials and permission before any input is read."""
        response = GladlyClient(transport).organization()
        limit = response.headers.get(contract.LIMIT_HEADER, "")
        if limit.isdigit() and int(limit) < self.rate:
            self.logger.warning(
                "Gladly allows %s requests per second per method, fewer than "
                "max_requests_per_second=%g; lower it to avoid 429 answers",
                limit,
                self.rate,
            )
        return ProfileLocks()


def check_modes(config: t.Mapping[str, t.Any]) -> list[str]:
    """``sync_mode`` must be a profile mode; audience settings have no meaning."""
    errors = []
    mode = config.get("sync_mode", "upsert")
    if mode in AUDIENCE_MODES:
        errors.append(f"sync_mode {mode!r} is not available: {NO_AUDIENCES}")
    elif mode not in SYNC_MODES:
        errors.append(
            f"sync_mode {mode!r} is not one of {', '.join(SYNC_MODES)}; "
            "upsert is the default"
        )
    if "audience_mode" in config:
        errors.append(f"audience_mode is not available: {NO_AUDIENCES}")
    return errors


if __name__ == "__main__":
    TargetGladly.cli()
