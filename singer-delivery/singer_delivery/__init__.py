"""Reliable delivery machinery for Singer reverse-ETL targets.

A destination (an API) is added by subclassing :class:`DeliveryTarget` and
:class:`DeliverySink`: the sink maps a record to a key and a payload and
delivers batches of :class:`Item` s, returning one :class:`Outcome` each.
This package brings the rest: change detection against the ledger, retries
and pacing, rejects and quarantine, dry-run plans, checkpoints that never
run ahead of delivery, mirrors, the run report and the run's lifecycle.
See ``docs/adding-a-destination.md``.
"""

from singer_delivery.deletes import DeleteSink
from singer_delivery.errors import OperationalError
from singer_delivery.http import (
    ApiError,
    Authenticator,
    FatalApiError,
    RetryPolicy,
    Transport,
)
from singer_delivery.ledger import Scope
from singer_delivery.outcomes import (
    Action,
    Delivered,
    Item,
    Outcome,
    RecordRejected,
    Reject,
)
from singer_delivery.ratelimit import RateLimiter
from singer_delivery.recorder import Membership
from singer_delivery.run import DeliveryRun
from singer_delivery.settings import (
    delete_settings,
    delivery_settings,
    stream_overrides,
)
from singer_delivery.sink import DeliverySink
from singer_delivery.target import DeliveryTarget

__all__ = [
    "Action",
    "ApiError",
    "Authenticator",
    "DeleteSink",
    "Delivered",
    "DeliveryRun",
    "DeliverySink",
    "DeliveryTarget",
    "FatalApiError",
    "Item",
    "Membership",
    "OperationalError",
    "Outcome",
    "RateLimiter",
    "RecordRejected",
    "Reject",
    "RetryPolicy",
    "Scope",
    "Transport",
    "delete_settings",
    "delivery_settings",
    "stream_overrides",
]
