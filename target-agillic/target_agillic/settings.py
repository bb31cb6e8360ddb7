"""target-agillic's settings, declared once, and the checks across them.

Top-level settings apply to every stream; ``streams`` overrides the routing
settings (``STREAM_KEYS``) per stream name, checked by the same declarations.
Invalid combinations fail at startup, naming the stream.
"""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th

from singer_delivery.settings import (
    for_stream,
    target_settings,
)
from target_agillic.auth import AUTH_METHODS, OAUTH2
from target_agillic.mapping import DATE_FORMAT, TIMESTAMP_FORMAT, to_strftime

SYNC_MODES = ("upsert", "insert", "update", "delete")
OBJECT_TYPES = ("recipients", "one_to_many", "event")
AUDIENCE_MODES = ("add", "remove", "mirror", "upsert")
#: Requests in flight an Agillic instance allows, shared by all its clients.
MAX_CONCURRENCY = 20
#: Entries per batch request.
MAX_BATCH_ROWS = 1000

#: The settings a stream may override under ``streams``.
STREAM_KEYS = (
    "object_type",
    "one_to_many_table_id",
    "event_name",
    "refire_on_change",
    "target_group_name",
    "audience_mode",
    "sync_mode",
    "field_mapping",
    "recipient_id_field",
)


def _properties() -> list[th.Property[t.Any]]:
    return [
        th.Property(
            "api_endpoint",
            th.StringType(min_length=1),
            required=True,
            description=(
                "Base URL of the Agillic API, e.g. https://api-eu1.agillic.net "
                "(plain http only for 127.0.0.1 or localhost)."
            ),
        ),
        th.Property(
            "auth_method",
            th.StringType,
            default=OAUTH2,
            allowed_values=list(AUTH_METHODS),
            description=(
                "oauth2: exchange the developer key and secret for a bearer token "
                "(renewed before it expires); basic: send them as HTTP Basic "
                "credentials on every call, as Agillic also allows."
            ),
        ),
        th.Property(
            "developer_key",
            th.StringType(min_length=1),
            required=True,
            secret=True,
            description="Developer API key (OAuth2 client id).",
        ),
        th.Property(
            "developer_secret",
            th.StringType(min_length=1),
            required=True,
            secret=True,
            description="Developer API secret (OAuth2 client secret).",
        ),
        th.Property(
            "recipient_id_field",
            th.StringType(min_length=1),
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
                "recipients are rejected; delete: each record names a recipient "
                "to delete (needs allow_deletes; a recipients stream only)."
            ),
        ),
        th.Property(
            "field_mapping",
            th.ObjectType(additional_properties=th.StringType),
            description=(
                "{record field: Person Data field}. When given, only mapped fields "
                "are sent; when absent, record fields go under their own names. "
                "With object_type event, every field but the recipient ID is a "
                "context parameter of that name, not Person Data."
            ),
        ),
        th.Property(
            "date_format",
            th.StringType,
            default=DATE_FORMAT,
            description=(
                "How date values are written (Java-style pattern); must match the "
                "instance's date format."
            ),
        ),
        th.Property(
            "timestamp_format",
            th.StringType,
            default=TIMESTAMP_FORMAT,
            description=(
                "How date-time values are written (Java-style pattern; aware "
                "timestamps are converted to UTC); must match the instance's "
                "timestamp format."
            ),
        ),
        th.Property(
            "object_type",
            th.StringType,
            default="recipients",
            allowed_values=list(OBJECT_TYPES),
            description=(
                "recipients (Person Data), one_to_many (rows of a table) or event "
                "(fire event_name once per record: the recipient from "
                "recipient_id_field, every other mapped field a context "
                "parameter, the stream's key the event's identity)."
            ),
        ),
        th.Property(
            "one_to_many_table_id",
            th.StringType,
            description="The one-to-many table, e.g. ORDERS (object_type one_to_many).",
        ),
        th.Property(
            "event_name",
            th.StringType(min_length=1),
            description=(
                "The Agillic event to fire, e.g. ORDER_PLACED (required with "
                "object_type event; case-sensitive)."
            ),
        ),
        th.Property(
            "refire_on_change",
            th.BooleanType,
            default=False,
            description=(
                "object_type event: fire an event again when its record changes "
                "(false: each key fires once, ever, as far as the ledger knows)."
            ),
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
            allowed_values=list(AUDIENCE_MODES),
            description=(
                "Unset: a plain recipient sync. add/upsert: upsert then add to the "
                "group; remove: remove from the group; mirror: make the group "
                "equal to the stream's complete snapshot."
            ),
        ),
        th.Property(
            "max_removal_ratio",
            th.NumberType(minimum=0, maximum=1),
            default=0.5,
            description=(
                "Mirror refuses a run that would remove more than this share of "
                "the members it remembers for the group."
            ),
        ),
        th.Property(
            "max_concurrency",
            th.IntegerType(minimum=1, maximum=MAX_CONCURRENCY),
            default=10,
            description=(
                f"Requests in flight at once, 1 to {MAX_CONCURRENCY} (Agillic "
                f"allows {MAX_CONCURRENCY} per instance, shared with other clients)."
            ),
        ),
        th.Property(
            "task_timeout",
            th.NumberType(exclusive_minimum=0),
            default=600,
            description="Seconds to wait for an async batch task before failing.",
        ),
        th.Property(
            "verify_deliveries",
            th.StringType,
            default="sample",
            allowed_values=["off", "sample", "all"],
            description=(
                "When a batch task completes without per-entry results: off "
                "trusts it (entries counted as unverified); sample reads back "
                "one page of each such batch and all of it if anything is "
                "missing; all reads back every entry. Only what is found is "
                "committed; the rest is sent again next run."
            ),
        ),
    ]


def properties() -> list[th.Property[t.Any]]:
    """Every target-agillic setting, in the order ``--about`` lists them."""
    return target_settings(
        _properties(),
        stream_keys=STREAM_KEYS,
        streams_help="One run can carry recipients, rows, events and audiences.",
        max_batch_rows=MAX_BATCH_ROWS,
        call_budget=True,
    )


def check(config: t.Mapping[str, t.Any]) -> list[str]:
    """Problems across settings: routing at the top level and per stream, formats."""
    errors = _check_route("top-level settings", config)
    for name in config.get("streams") or {}:
        errors += _check_route(f"streams.{name}", for_stream(config, name))
    for setting in ("date_format", "timestamp_format"):
        try:
            to_strftime(config[setting])
        except ValueError as exc:
            errors.append(f"{setting} {config[setting]!r}: {exc}")
    return errors


def _check_route(where: str, settings: t.Mapping[str, t.Any]) -> list[str]:
    return [
        *_check_delete(where, settings),
        *_check_audience(where, settings),
        *_check_object_type(where, settings),
    ]


def _check_object_type(where: str, settings: t.Mapping[str, t.Any]) -> list[str]:
    """Rows need their table and events their name."""
    object_type = settings["object_type"]
    if object_type == "one_to_many" and not settings.get("one_to_many_table_id"):
        return [
            f"{where}: object_type one_to_many needs one_to_many_table_id (e.g. ORDERS)"
        ]
    if object_type == "event" and not settings.get("event_name"):
        message = (
            f"{where}: object_type event needs event_name (the Agillic event to "
            "fire, e.g. ORDER_PLACED)"
        )
        return [message]
    return []


def _check_audience(where: str, settings: t.Mapping[str, t.Any]) -> list[str]:
    """An audience changes a group of recipients it upserts first."""
    audience = settings.get("audience_mode")
    if not audience:
        return []
    errors = []
    if not settings.get("target_group_name"):
        errors.append(
            f"{where}: audience_mode {audience} needs target_group_name (the static "
            "target group to change)"
        )
    if settings["object_type"] != "recipients":
        errors.append(
            f"{where}: audience_mode cannot be combined with object_type "
            f"{settings['object_type']}; route the audience through a recipients "
            "stream"
        )
    # delete with an audience is named by _check_delete, in its own words
    if settings["sync_mode"] not in ("upsert", "delete"):
        errors.append(
            f"{where}: audience_mode upserts recipients before changing the group; "
            "leave sync_mode unset (or upsert) for this stream"
        )
    return errors


def _check_delete(where: str, settings: t.Mapping[str, t.Any]) -> list[str]:
    """``sync_mode: delete`` deletes recipients, and does nothing else."""
    if settings["sync_mode"] != "delete":
        return []
    errors = []
    if settings.get("audience_mode"):
        errors.append(
            f"{where}: sync_mode delete cannot be combined with audience_mode; "
            "to take recipients out of a group without deleting them, use "
            "audience_mode remove"
        )
    if settings["object_type"] != "recipients":
        errors.append(
            f"{where}: sync_mode delete deletes recipients, so it cannot be "
            f"combined with object_type {settings['object_type']}; use a "
            "recipients stream"
        )
    return errors


def configured(config: t.Mapping[str, t.Any], key: str) -> set[str]:
    """Every value of ``key`` at the top level and in ``streams``."""
    values = {config.get(key)}
    for overrides in (config.get("streams") or {}).values():
        if isinstance(overrides, dict):
            values.add(overrides.get(key))
    return {v for v in values if v}
