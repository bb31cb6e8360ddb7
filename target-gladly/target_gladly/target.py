"""target-gladly: the Singer target class and how it routes streams."""

from __future__ import annotations

import math
import typing as t

from singer_sdk import typing as th
from typing_extensions import override

from singer_delivery import (
    DeliverySink,
    DeliveryTarget,
    RateLimiter,
    RetryPolicy,
    Transport,
)
from singer_delivery.settings import check_base_url
from target_gladly import contract
from target_gladly.activity import ActivitySink
from target_gladly.client import GladlyClient
from target_gladly.deletes import ProfileDeleteSink
from target_gladly.settings import (
    CUSTOMER_ACTIVITY,
    check_modes,
    check_routes,
    properties,
)
from target_gladly.sinks import CustomerProfileSink, ProfileLocks

if t.TYPE_CHECKING:
    from singer_delivery.budget import CallBudget

#: Connections: pacing, not the pool, must be what makes a request wait, or
#: a request would take its pacing slot and then go out late in a burst.
MAX_CONNECTIONS = 64


class TargetGladly(DeliveryTarget[ProfileLocks]):
    """Keeps Gladly customer profiles and timelines in step with warehouse tables."""

    name = "target-gladly"
    config_jsonschema = th.PropertiesList(*properties()).to_dict()

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
        """Domain, base URL, modes and each stream's route, on top of the shared
        checks (``allow_deletes`` among them)."""
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
        return errors + check_modes(config) + check_routes(config)

    @override
    def get_sink_class(self, stream_name: str) -> type[DeliverySink]:
        """Route the stream: customer activity, profile deletes, or profiles."""
        chosen = self.delivery_run.settings_for(stream_name)
        if chosen["object_type"] == CUSTOMER_ACTIVITY:
            return ActivitySink
        if chosen["sync_mode"] == "delete":
            return ProfileDeleteSink
        return CustomerProfileSink

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


if __name__ == "__main__":
    TargetGladly.cli()
