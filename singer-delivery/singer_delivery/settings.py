"""Settings: declared once, read from the config and the environment, checked.

Every setting is declared once, as a JSON-schema property with its default,
range and allowed values, so ``--about``, Meltano Hub and the checks here all
read the same declaration. Values from the environment arrive as text and
are converted by that declaration; the checks then report every problem at
once, each as one line naming the setting, its environment variable and the
fix, before any input is read.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import typing as t
import unicodedata
import urllib.parse

import jsonschema
from singer_sdk import typing as th

from singer_delivery.ledger import LedgerError, LedgerUrl

MAX_REQUEST_TIMEOUT = 600
#: Settings singer-sdk adds on its own (stream maps, flattening, log level).
SDK_SETTINGS = frozenset(
    {
        "stream_maps",
        "stream_map_config",
        "faker_config",
        "flattening_enabled",
        "flattening_max_depth",
        "flattening_max_key_length",
        "flattening_separator",
        "batch_size_rows",
        "validate_records",
        "process_activate_version_messages",
    }
)
#: The key under which per-stream overrides live.
STREAMS = "streams"


def delivery_settings(
    *,
    max_batch_rows: int,
    default_max_retries: int = 5,
    call_budget: bool = False,
) -> list[th.Property[t.Any]]:
    """The change-detection, reporting and resilience settings of every target.

    ``max_batch_rows`` is the destination's limit of entries per request;
    ``call_budget`` adds ``daily_call_budget`` for APIs with a daily quota.
    """
    properties: list[th.Property[t.Any]] = [
        th.Property(
            "ledger_url",
            th.StringType,
            secret=True,
            description=(
                "Where the delivery ledger lives: sqlite:///path/to/file.sqlite "
                "or postgresql://user:password@host:5432/db. Default: "
                "delivery-ledger.sqlite in $MELTANO_PROJECT_ROOT/.meltano/ when "
                "that is set, else in the working directory."
            ),
        ),
        th.Property(
            "ledger_lock_timeout",
            th.NumberType(minimum=0),
            default=60,
            description=(
                "Seconds to wait for another run against the same destination "
                "and ledger to finish before failing."
            ),
        ),
        th.Property(
            "shutdown_grace",
            th.NumberType(minimum=0),
            default=20,
            description=(
                "Seconds a run stopped by SIGTERM or SIGINT waits for batches "
                "already sent to be acknowledged (and committed) before it "
                "ends. Keep it below the time the orchestrator allows between "
                "SIGTERM and SIGKILL (30 s in Kubernetes by default)."
            ),
        ),
        th.Property(
            "skip_unchanged",
            th.BooleanType,
            default=True,
            description=(
                "Do not send a record whose mapped payload equals what was last "
                "delivered for its key."
            ),
        ),
        th.Property(
            "full_sync",
            th.BooleanType,
            default=False,
            description=(
                "Send every record regardless of the ledger, quarantined ones "
                "included (and update the ledger): the way to repair a "
                "destination changed behind the target's back."
            ),
        ),
        th.Property(
            "retry_rejected",
            th.StringType,
            default="changed",
            allowed_values=["changed", "always"],
            description=(
                "changed: a record the API refused for good is sent again only "
                "once its payload changes (until then it is counted as "
                "quarantined); always: send it again on every run."
            ),
        ),
        th.Property(
            "store_reject_keys",
            th.BooleanType,
            default=True,
            description=(
                "Keep the destination key (e.g. the email) of open rejects in "
                "the ledger's ledger_rejects table, so a person can find the row "
                "to fix; false keeps only its hash."
            ),
        ),
        th.Property(
            "dry_run",
            th.BooleanType,
            default=False,
            description=(
                "Write nothing to the destination or the ledger; write a plan of "
                "what a real run would do."
            ),
        ),
        th.Property(
            "rejects_path",
            th.StringType,
            description=(
                "JSONL file that rejected records are appended to. Default: "
                "<target>-rejects.jsonl next to the default ledger."
            ),
        ),
        th.Property(
            "rejects_include_record",
            th.BooleanType,
            default=False,
            description=(
                "Also write the full record into the rejects file (it may hold "
                "personal data)."
            ),
        ),
        th.Property(
            "max_reject_ratio",
            th.NumberType(minimum=0, maximum=1),
            default=0.1,
            description=(
                "Exit non-zero (after delivering what it could) when more than "
                "this share of the run's records is rejected or quarantined."
            ),
        ),
        th.Property(
            "report_path",
            th.StringType,
            description=(
                "JSON file for the run report. A dry run writes its plan next to "
                "it as <name>.plan.jsonl."
            ),
        ),
        th.Property(
            "batch_size_rows",
            th.IntegerType(minimum=1, maximum=max_batch_rows),
            default=max_batch_rows,
            description=(
                f"Records per batch, 1 to {max_batch_rows} (the API takes at most "
                f"{max_batch_rows} entries per request)."
            ),
        ),
        th.Property(
            "request_timeout",
            th.NumberType(exclusive_minimum=0, maximum=MAX_REQUEST_TIMEOUT),
            default=30,
            description="Seconds before an HTTP request is abandoned and retried.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0, maximum=20),
            default=default_max_retries,
            description=(
                "Retries of a request that failed transiently (429, 5xx, timeout, "
                "dropped or cut-off connection)."
            ),
        ),
    ]
    if call_budget:
        properties.append(
            th.Property(
                "daily_call_budget",
                th.IntegerType(minimum=1),
                description=(
                    "Most API calls per UTC day for this instance, counted in the "
                    "ledger across every run that shares it; a run that would "
                    "pass it stops cleanly (delivered work committed, STATE "
                    "written). Unset: calls are counted, not capped."
                ),
            )
        )
    return properties


def delete_settings() -> list[th.Property[t.Any]]:
    """The guard of ``sync_mode: delete`` (deletes are irreversible)."""
    properties: list[th.Property[t.Any]] = [
        th.Property(
            "allow_deletes",
            th.BooleanType,
            default=False,
            description=(
                "Must be true for any stream with sync_mode delete; without it "
                "such a config is refused at startup."
            ),
        ),
        th.Property(
            "max_deletes",
            th.IntegerType(minimum=0),
            default=100,
            description=(
                "A run whose input asks for more deletes than this deletes "
                "nothing and exits non-zero (raise it for one run when a large "
                "erasure is intended)."
            ),
        ),
    ]
    return properties


#: Stands for "no default" where ``None`` may be one.
_NO_DEFAULT = object()
#: Settings that steer a run (the ledger, outputs, pacing, guards, batching)
#: but never change what a record maps to.
RUN_SETTINGS = frozenset(
    prop.name
    for prop in (
        *delivery_settings(max_batch_rows=1, call_budget=True),
        *delete_settings(),
    )
) | (SDK_SETTINGS - {"validate_records"})


def payload_settings(
    settings: t.Mapping[str, t.Any], schema: t.Mapping[str, t.Any]
) -> dict[str, t.Any]:
    """The settings that may change a stream's payloads, as identity for
    source fingerprints: a stream's effective settings without the run's own
    (``RUN_SETTINGS``; stream maps and flattening change the record itself),
    the secrets, the other streams' overrides, and any at its default (given
    or not: singer-sdk fills some in during a run).
    """
    properties = schema.get("properties", {})
    return {
        name: value
        for name, value in settings.items()
        if name not in RUN_SETTINGS
        and name != STREAMS
        and not properties.get(name, {}).get("secret")
        and value != properties.get(name, {}).get("default", _NO_DEFAULT)
    }


def check_delete_guard(config: t.Mapping[str, t.Any]) -> list[str]:
    """``sync_mode: delete`` anywhere needs ``allow_deletes: true``."""
    if config.get("allow_deletes"):
        return []
    where = ["top-level settings"] if config.get("sync_mode") == "delete" else []
    where += [
        f"{STREAMS}.{name}"
        for name, overrides in (config.get(STREAMS) or {}).items()
        if isinstance(overrides, dict) and overrides.get("sync_mode") == "delete"
    ]
    if not where:
        return []
    return [
        (
            f"allow_deletes must be true for sync_mode delete ({', '.join(where)}); "
            "deletes are irreversible, so they are refused unless allowed explicitly"
        )
    ]


def target_settings(
    own: t.Sequence[th.Property[t.Any]],
    *,
    stream_keys: t.Sequence[str],
    streams_help: str,
    max_batch_rows: int,
    default_max_retries: int = 5,
    call_budget: bool = False,
) -> list[th.Property[t.Any]]:
    """A target's whole settings: its own, the guarded deletes, per-stream
    overrides of ``stream_keys``, and the shared delivery settings."""
    return [
        *own,
        *delete_settings(),
        stream_overrides(
            own,
            stream_keys,
            "Per-stream overrides: {stream name: {"
            + ", ".join(stream_keys)
            + f"}}}}. {streams_help} Streams not listed use the top level.",
        ),
        *delivery_settings(
            max_batch_rows=max_batch_rows,
            default_max_retries=default_max_retries,
            call_budget=call_budget,
        ),
    ]


def stream_overrides(
    properties: t.Sequence[th.Property[t.Any]], names: t.Sequence[str], description: str
) -> th.Property[t.Any]:
    """The ``streams`` setting: per-stream copies of the named top-level settings.

    Built from the same declarations, so a stream's override is checked
    exactly as the top-level setting is.
    """
    declared = {prop.name: prop.to_dict()[prop.name] for prop in properties}
    overridable = {
        "type": "object",
        "properties": {
            name: {k: v for k, v in declared[name].items() if k != "default"}
            for name in names
        },
        "additionalProperties": False,
    }
    return th.Property(
        STREAMS,
        th.ObjectType(additional_properties=th.CustomType(overridable)),
        description=description,
    )


def for_stream(config: t.Mapping[str, t.Any], stream: str) -> dict[str, t.Any]:
    """Top-level settings with the stream's overrides applied."""
    overrides = (config.get(STREAMS) or {}).get(stream) or {}
    return {**config, **{k: v for k, v in overrides.items() if v is not None}}


# --- reading the config -------------------------------------------------------


def env_prefix(target_name: str) -> str:
    """``target-agillic`` reads ``TARGET_AGILLIC_*`` variables."""
    return re.sub(r"[^A-Z0-9]", "_", target_name.upper()) + "_"


def from_environment(
    schema: t.Mapping[str, t.Any],
    prefix: str,
    environ: t.Mapping[str, str] | None = None,
) -> dict[str, t.Any]:
    """Settings given as environment variables (or in a ``.env`` file of the
    working directory), still as text (see ``coerce``)."""
    if environ is None:
        from dotenv import dotenv_values, find_dotenv

        dotenv = dotenv_values(find_dotenv(usecwd=True))
        environ = {**{k: v for k, v in dotenv.items() if v is not None}, **os.environ}
    found: dict[str, t.Any] = {}
    for name, spec in schema.get("properties", {}).items():
        value = environ.get(prefix + name.upper())
        if value is not None:
            found[name] = _parse_structured(spec, value)
    return found


def _parse_structured(spec: t.Mapping[str, t.Any], value: str) -> t.Any:
    """Objects and arrays come as JSON text; anything else stays text for now."""
    if _types(spec) & {"object", "array"}:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _types(spec: t.Mapping[str, t.Any]) -> set[str]:
    kind = spec.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def coerce(config: dict[str, t.Any], schema: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """Numbers and booleans given as text become numbers and booleans.

    Meltano hands settings from environment variables and ``.env`` over as
    text, and so does ``--config ENV``; a value that is not a number stays
    text, for validation to name.
    """
    properties = schema.get("properties", {})
    coerced = dict(config)
    for name, value in config.items():
        if isinstance(value, str) and name in properties:
            coerced[name] = _coerce_text(_types(properties[name]), value)
    return coerced


def _coerce_text(types: set[str], value: str) -> t.Any:
    text = value.strip()
    if "boolean" in types and text.lower() in ("true", "false", "1", "0", "yes", "no"):
        return text.lower() in ("true", "1", "yes")
    if "integer" in types and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if "number" in types:
        try:
            number = float(text)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in text else number
    return value


def with_defaults(
    config: t.Mapping[str, t.Any], schema: t.Mapping[str, t.Any]
) -> dict[str, t.Any]:
    """The config with every unset setting at its declared default."""
    defaults = {
        name: spec["default"]
        for name, spec in schema.get("properties", {}).items()
        if "default" in spec
    }
    return {**defaults, **{k: v for k, v in config.items() if v is not None}}


# --- checking it --------------------------------------------------------------


def schema_problems(
    config: t.Mapping[str, t.Any], schema: t.Mapping[str, t.Any], prefix: str
) -> list[str]:
    """Every JSON-schema violation, each as one line a person can act on."""
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: list(e.path))
    return [_explain(error, schema, prefix) for error in errors]


def _explain(
    error: jsonschema.ValidationError, schema: t.Mapping[str, t.Any], prefix: str
) -> str:
    path = [str(p) for p in error.path]
    if error.validator == "required":
        name = str(error.message).split("'")[1]
        path = [*path, name]
    setting = ".".join(path)
    top = schema.get("properties", {}).get(path[0], {}) if path else {}
    where = (
        f" (in the config, or the {prefix}{path[0].upper()} environment variable)"
        if len(path) == 1
        else ""
    )
    spec = error.schema if isinstance(error.schema, dict) else {}
    secret = not path or bool(top.get("secret") or top.get("writeOnly"))
    got = "" if secret else f" (got {json.dumps(error.instance, default=str)})"
    kind = error.validator
    if kind == "required":
        hint = top.get("description", "")
        return f"{setting} is required{where}: {hint}".rstrip(": ")
    if kind == "minLength":
        return f"{setting} is empty; give a value{where}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{setting} must be {_range(spec)}{got}{where}"
    if kind == "enum":
        options = ", ".join(map(str, spec.get("enum", [])))
        return f"{setting} must be one of {options}{got}{where}"
    if kind == "type":
        wanted = " or ".join(sorted(_types(spec) - {"null"}))
        return f"{setting} must be {_article(wanted)}{got}{where}"
    if kind == "additionalProperties":
        allowed = ", ".join(sorted(spec.get("properties", {})))
        given = t.cast(dict[str, t.Any], error.instance)  # the object checked
        extra = sorted(set(given) - set(spec.get("properties", {})))
        return (
            f"{setting} has unknown setting(s) {', '.join(extra)}; it may hold only "
            f"{allowed}"
        )
    return f"{setting}: {error.message if not secret else 'invalid value'}{where}"


def _range(spec: t.Mapping[str, t.Any]) -> str:
    low = spec.get("minimum", spec.get("exclusiveMinimum"))
    high = spec.get("maximum", spec.get("exclusiveMaximum"))
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    if low is not None:
        return f"{'more than' if 'exclusiveMinimum' in spec else 'at least'} {low:g}"
    return f"{'less than' if 'exclusiveMaximum' in spec else 'at most'} {high:g}"


def _article(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def unknown_settings(
    config: t.Mapping[str, t.Any], schema: t.Mapping[str, t.Any]
) -> list[str]:
    """Warnings for settings no one reads, with the closest valid name."""
    known = set(schema.get("properties", {})) | SDK_SETTINGS
    # names starting with "_" are Meltano's own extras
    unknown = [n for n in sorted(set(config) - known) if not n.startswith("_")]
    if not unknown:
        return []
    import difflib  # only a config with a typo pays its import (about 30 ms)

    candidates = sorted(known)
    warnings = []
    for name in unknown:
        close = difflib.get_close_matches(name, candidates, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"unknown setting {name!r} is ignored{hint}")
    return warnings


def check_ledger_url(config: t.Mapping[str, t.Any]) -> list[str]:
    """``ledger_url`` parses as a supported database (password never echoed)."""
    url = config.get("ledger_url")
    if not url:
        return []
    try:
        LedgerUrl.parse(url)
    except LedgerError as exc:
        return [str(exc)]
    return []


# --- base URLs and instances --------------------------------------------------


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost: where plain http is acceptable."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(setting: str, value: str, example: str) -> str | None:
    """An https URL (http on loopback) naming only a scheme, a host and a port.

    Checked with the parser that sends the requests (urllib3), and refused
    outright for characters where parsers disagree (a backslash, user info,
    whitespace, control characters): ``http://evil.com\\@127.0.0.1`` passes
    ``urlsplit`` as loopback while the request goes to evil.com.
    """
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    if any(c in value for c in "\\@") or any(
        c.isspace() or unicodedata.category(c).startswith("C") for c in value
    ):
        return (
            f"{setting} must be a plain URL such as {example}: no backslash, "
            "user name or password, whitespace or control characters"
        )
    try:
        sent = parse_url(value)
        parsed = urllib.parse.urlsplit(value)
    except (LocationParseError, ValueError):
        return f"{setting} {value!r} is not a URL; use e.g. {example}"
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"{setting} {value!r} is not a URL; use e.g. {example}"
    if (sent.host or "").strip("[]").lower() != parsed.hostname.lower():
        return f"{setting} {value!r} is ambiguous; use e.g. {example}"
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        return (
            f"{setting} must use https for a remote host (got {value!r}); plain "
            "http is only allowed for 127.0.0.1 or localhost"
        )
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        return (
            f"{setting} {value!r} must be the API's base URL alone, without a "
            f"path, query or fragment; use e.g. {example}"
        )
    return None


def instance_of(url: str) -> str:
    """The destination instance a URL names: lower-case host, default port dropped.

    Scopes and locks are named by it, so ``https://API.example.com:443`` and
    ``https://api.example.com`` share one history and one lock.
    """
    parsed = urllib.parse.urlsplit(url)
    host = (parsed.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parsed.scheme)
    port = parsed.port
    return host if port in (None, default) else f"{host}:{port}"
