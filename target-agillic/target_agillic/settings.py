"""Per-stream routing: which Agillic object each stream writes, and how.

Top-level settings apply to every stream; ``streams`` overrides them per
stream name. Invalid combinations fail at startup, naming the stream.
"""

from __future__ import annotations

import typing as t

SYNC_MODES = ("upsert", "insert", "update")
OBJECT_TYPES = ("recipients", "one_to_many")
AUDIENCE_MODES = ("add", "remove", "mirror", "upsert")
STREAM_KEYS = (
    "object_type",
    "one_to_many_table_id",
    "target_group_name",
    "audience_mode",
    "sync_mode",
    "field_mapping",
    "recipient_id_field",
)


def stream_settings(config: t.Mapping[str, t.Any], stream: str) -> dict[str, t.Any]:
    """Top-level settings with the stream's overrides applied."""
    overrides = (config.get("streams") or {}).get(stream) or {}
    return {**config, **{k: v for k, v in overrides.items() if v is not None}}


def check_routing(config: t.Mapping[str, t.Any]) -> list[str]:
    """Every problem with the top level and each ``streams`` entry."""
    errors = _check_one("top-level settings", config)
    streams = config.get("streams") or {}
    for name, overrides in streams.items():
        where = f"streams.{name}"
        if not isinstance(overrides, dict):
            errors.append(f"{where} must be an object of settings")
            continue
        unknown = sorted(set(overrides) - set(STREAM_KEYS))
        if unknown:
            errors.append(
                f"{where} has unknown setting(s) {', '.join(unknown)}; a stream may "
                f"override only {', '.join(STREAM_KEYS)}"
            )
        errors += _check_one(where, stream_settings(config, name))
    return errors


def _check_one(where: str, settings: t.Mapping[str, t.Any]) -> list[str]:
    errors = []
    object_type = settings.get("object_type") or "recipients"
    audience = settings.get("audience_mode")
    if object_type not in OBJECT_TYPES:
        errors.append(f"{where}: object_type must be one of {', '.join(OBJECT_TYPES)}")
    if settings.get("sync_mode", "upsert") not in SYNC_MODES:
        errors.append(f"{where}: sync_mode must be one of {', '.join(SYNC_MODES)}")
    if audience is not None and audience not in AUDIENCE_MODES:
        errors.append(
            f"{where}: audience_mode must be one of {', '.join(AUDIENCE_MODES)}"
        )
    if audience and not settings.get("target_group_name"):
        errors.append(
            f"{where}: audience_mode {audience} needs target_group_name (the static "
            "target group to change)"
        )
    if audience and object_type == "one_to_many":
        errors.append(
            f"{where}: audience_mode cannot be combined with object_type "
            "one_to_many; route the audience through a recipients stream"
        )
    if audience and settings.get("sync_mode", "upsert") != "upsert":
        errors.append(
            f"{where}: audience_mode upserts recipients before changing the group; "
            "leave sync_mode unset (or upsert) for this stream"
        )
    if object_type == "one_to_many" and not settings.get("one_to_many_table_id"):
        errors.append(
            f"{where}: object_type one_to_many needs one_to_many_table_id (e.g. ORDERS)"
        )
    return errors


def configured(config: t.Mapping[str, t.Any], key: str) -> set[str]:
    """Every value of ``key`` at the top level and in ``streams``."""
    values = {config.get(key)}
    for overrides in (config.get("streams") or {}).values():
        if isinstance(overrides, dict):
            values.add(overrides.get(key))
    return {v for v in values if v}
