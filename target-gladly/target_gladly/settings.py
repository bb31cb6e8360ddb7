"""target-gladly's settings, declared once, and the checks across them.

Top-level settings apply to every stream; ``streams`` overrides the routing
settings (``STREAM_KEYS``) per stream name, checked by the same declarations.
Combinations that cannot work fail at startup, naming ``streams.<name>``.
"""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th

from singer_delivery.ratelimit import AUTO, SCOPES
from singer_delivery.settings import STREAMS, for_stream, target_settings
from target_gladly import contract
from target_gladly.activity import ACTIVITY_FIELDS, check_activity_mapping
from target_gladly.mapping import check_field_mapping, check_phone_region

CUSTOMER_PROFILES = "customer_profiles"
CUSTOMER_ACTIVITY = "customer_activity"
OBJECT_TYPES = (CUSTOMER_PROFILES, CUSTOMER_ACTIVITY)
SYNC_MODES = ("upsert", "insert", "update", "delete")
AUDIENCE_MODES = ("add", "remove", "mirror")
NO_AUDIENCES = (
    "Gladly has no list or audience API, so there is nothing to add customers "
    "to, remove them from or mirror; use sync_mode upsert, insert, update or "
    "delete"
)

DEFAULT_RATE = 10
#: One profile per request: batches only group records for change detection.
MAX_BATCH_ROWS = 1000

#: The settings a stream may override under ``streams``.
STREAM_KEYS = (
    "object_type",
    "sync_mode",
    "field_mapping",
    "phone_type",
    "default_phone_region",
    "activity_type",
)


def _properties() -> list[th.Property[t.Any]]:
    return [
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
            "object_type",
            th.StringType,
            default=CUSTOMER_PROFILES,
            allowed_values=list(OBJECT_TYPES),
            description=(
                "customer_profiles: write profiles as sync_mode says; "
                "customer_activity: add one item per record to its customer's "
                "timeline (the customer found by email or phone, created when "
                "missing; the item id derived from the stream's key properties, "
                "so reruns add nothing twice; Gladly items never change, so a "
                "changed activity needs a new key)."
            ),
        ),
        th.Property(
            "sync_mode",
            th.StringType,
            default="upsert",
            allowed_values=list(SYNC_MODES),
            description=(
                "Profiles only. upsert: match by email, update what differs or "
                "create; insert: only create, existing profiles are rejected; "
                "update: only update profiles by their Gladly id (mapped to id), "
                "missing ones are rejected; delete: delete the profiles the "
                "records name by email or mapped id (needs allow_deletes and the "
                "Compliance Admin role; irreversible)."
            ),
        ),
        th.Property(
            "field_mapping",
            th.ObjectType(additional_properties=th.StringType),
            description=(
                "{record field: Gladly field}. Profiles: name, email, phone, "
                "address, externalCustomerId, image and id are profile fields; "
                "any other name is a custom attribute. Customer activity: "
                f"{', '.join(ACTIVITY_FIELDS)} (link is the URL, linkText its "
                "text; email, else phone, names the customer). When absent, "
                "record fields go under their own names by the same rules "
                "(_sdc_* fields are skipped)."
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
            "activity_type",
            th.StringType,
            allowed_values=list(contract.ACTIVITY_TYPES),
            description=(
                "Customer activity: the activityType of items whose record maps "
                f"none ({', '.join(contract.ACTIVITY_TYPES)}). Unset, every "
                "activity record must hold one."
            ),
        ),
        th.Property(
            "max_requests_per_second",
            th.NumberType(exclusive_minimum=0),
            default=DEFAULT_RATE,
            description=(
                "Requests per second for each HTTP method (GET, POST, PATCH, "
                "DELETE separately), shared by all threads and streams. Gladly "
                "allows 10 per method for the whole organization."
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
    ]


def properties() -> list[th.Property[t.Any]]:
    """Every target-gladly setting, in the order ``--about`` lists them."""
    return target_settings(
        _properties(),
        stream_keys=STREAM_KEYS,
        streams_help="E.g. one stream of profiles and one of customer activity.",
        max_batch_rows=MAX_BATCH_ROWS,
        default_max_retries=3,
    )


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


def check_routes(config: t.Mapping[str, t.Any]) -> list[str]:
    """Problems of each route: the top level, then each ``streams`` entry.

    A stream's problem that is the top level's too is reported once, there.
    """
    top = route_problems(config)
    errors = list(top)
    for name in config.get(STREAMS) or {}:
        errors += [
            f"{STREAMS}.{name}: {problem}"
            for problem in route_problems(for_stream(config, name))
            if problem not in top
        ]
    return errors


def route_problems(settings: t.Mapping[str, t.Any]) -> list[str]:
    """What cannot work in one route's settings, each naming the fix."""
    mapping = settings.get("field_mapping")
    if settings.get("object_type") == CUSTOMER_ACTIVITY:
        errors = []
        if (mode := settings.get("sync_mode")) != "upsert":
            errors.append(
                f"object_type customer_activity cannot be combined with sync_mode "
                f"{mode}: activity finds or creates its customer as upsert does "
                "and only adds items; give it sync_mode upsert (the default)"
            )
        if mapping is not None:
            errors += check_activity_mapping(mapping, settings.get("activity_type"))
        return errors + check_phone_region(settings.get("default_phone_region"))
    errors = check_field_mapping(mapping) if mapping else []
    if settings.get("sync_mode") == "delete" and mapping:
        errors += _check_delete_mapping(mapping)
    return errors + check_phone_region(settings.get("default_phone_region"))


def _check_delete_mapping(mapping: t.Mapping[str, str]) -> list[str]:
    """A delete needs a field that names the profile."""
    if {"email", "id"} & set(mapping.values()):
        return []
    message = (
        "sync_mode delete names each profile by email or Gladly id, and "
        "field_mapping maps no field to email or id"
    )
    return [message]
