"""Write the Meltano Hub definitions and meltano.yml's loaders from ``--about``.

The settings of both targets are declared three times: in the targets'
code, in ``hub/loaders/*.yml`` (what a Meltano Hub pull request adds) and in
``meltano.yml`` (what this repository's project installs). Only the first
is written by hand; this script derives the other two so that they cannot
drift, and ``tests/test_hub_definitions.py`` fails when someone changes a
setting without running it::

    uv run python hub/generate.py    # or any Python with both targets installed

It rewrites ``hub/loaders/<target>.yml`` whole, and in ``meltano.yml`` only
each loader's ``capabilities``, ``settings_group_validation`` and
``settings``, between its ``# BEGIN generated from <target> --about`` and
``# END generated`` lines, so the rest of the file (``pip_url``, ``config``,
comments) stays as written.

Submitting to the Hub: copy ``hub/loaders/<target>.yml`` to
``_data/meltano/loaders/<target>/reverse-etl-oss.yml``, add a
``reverse-etl-oss`` entry to ``_data/maintainers.yml`` and a logo at
``static/assets/logos/loaders/<destination>.png``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import typing as t
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
HUB_DIR = ROOT / "hub" / "loaders"
MELTANO_YML = ROOT / "meltano.yml"
BEGIN = "    # BEGIN generated from {target} --about (python hub/generate.py)\n"
END = "    # END generated from {target} --about\n"

VARIANT = "reverse-etl-oss"
REPO = "https://github.com/reverse-etl-oss/singer-reverse-etl"

#: What ``--about`` cannot say: how the Hub presents each target.
HUB_METADATA: dict[str, dict[str, t.Any]] = {
    "target-agillic": {
        "label": "Agillic",
        "description": (
            "Agillic marketing automation: recipients, one-to-many tables and "
            "static target groups (reverse ETL)"
        ),
        "domain_url": "https://www.agillic.com/",
        "logo_url": "/assets/logos/loaders/agillic.png",
    },
    "target-gladly": {
        "label": "Gladly",
        "description": (
            "Gladly customer service platform: customer profiles (reverse ETL)"
        ),
        "domain_url": "https://www.gladly.com/",
        "logo_url": "/assets/logos/loaders/gladly.png",
    },
}

#: Words the Hub writes in capitals in generated labels.
LABEL_WORDS = {"Api": "API", "Id": "ID", "Url": "URL"}

#: Hub kinds for JSON schema types; strings are refined by ``kind_of``.
TYPE_KINDS = {
    "integer": "integer",
    "number": "decimal",
    "boolean": "boolean",
    "object": "object",
    "array": "array",
    "string": "string",
}


def about(target: str) -> dict[str, t.Any]:
    """``<target> --about --format json``, from the running Python's bin dir.

    The targets are installed next to the interpreter (a virtualenv), so
    this finds the copy under test rather than whatever is first on PATH.
    """
    executable = Path(sys.executable).parent / target
    output = subprocess.run(
        [str(executable), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return t.cast(dict[str, t.Any], json.loads(output))


def schema_types(schema: dict[str, t.Any]) -> list[str]:
    """The non-null JSON types a property allows, including inside oneOf/anyOf."""
    found: list[str] = []
    declared = schema.get("type", [])
    for name in [declared] if isinstance(declared, str) else declared:
        if name != "null" and name not in found:
            found.append(name)
    for option in schema.get("oneOf", []) + schema.get("anyOf", []):
        if isinstance(option, dict):
            found += [n for n in schema_types(option) if n not in found]
    return found


def flat_properties(
    schema: dict[str, t.Any], prefix: str = ""
) -> t.Iterator[tuple[str, dict[str, t.Any]]]:
    """(setting name, property schema) as Meltano names settings.

    An object whose sub-properties are declared becomes dotted settings
    (``faker_config.seed``), as the Hub and ``meltano config set`` expect;
    an open object (``field_mapping``, ``streams``) and ``stream_maps``,
    whose keys are stream names, stay one object setting.
    """
    for name, prop in schema.get("properties", {}).items():
        dotted = f"{prefix}{name}"
        if prop.get("properties") and dotted != "stream_maps":
            yield from flat_properties(prop, f"{dotted}.")
        else:
            yield dotted, prop


def kind_of(prop: dict[str, t.Any]) -> str:
    """The Meltano setting kind: secrets are passwords, enums are options."""
    if prop.get("secret") or prop.get("writeOnly"):
        return "password"
    types = schema_types(prop)
    if prop.get("enum") and types == ["string"]:
        return "options"
    if "array" in types:
        return "array"
    if len(types) != 1:  # e.g. faker_config.seed: number, string or boolean
        return "string"
    return TYPE_KINDS[types[0]]


def label_of(name: str, prop: dict[str, t.Any]) -> str:
    """The schema's title, else the Hub's usual label for the name."""
    if prop.get("title"):
        return str(prop["title"])
    words = name.replace(".", " ").replace("_", " ").split()
    return " ".join(LABEL_WORDS.get(w.title(), w.title()) for w in words)


def hub_setting(name: str, prop: dict[str, t.Any]) -> dict[str, t.Any]:
    """One setting: name, label, kind, description, options, sensitivity."""
    kind = kind_of(prop)
    setting: dict[str, t.Any] = {
        "name": name,
        "label": label_of(name, prop),
        "kind": kind,
        "description": prop.get("description", ""),
    }
    if kind == "options":
        setting["options"] = [
            {"label": label_of(value, {}), "value": value} for value in prop["enum"]
        ]
    if kind == "password":
        setting["sensitive"] = True
    return setting


def install_url(target: str) -> str:
    """pip requirements for the target and the shared package it needs.

    singer-delivery is not on PyPI yet, so both come from the repository.
    """
    return " ".join(
        f"git+{REPO}.git#subdirectory={package}"
        for package in ("singer-delivery", target)
    )


def hub_definition(target: str, info: dict[str, t.Any]) -> dict[str, t.Any]:
    """The whole Hub file for one target."""
    settings_schema = info["settings"]
    definition: dict[str, t.Any] = {
        **HUB_METADATA[target],
        "capabilities": sorted(info["capabilities"]),
        "docs": f"{REPO}/tree/main/{target}#readme",
        "executable": target,
        "keywords": ["meltano_sdk", "reverse_etl"],
        "maintenance_status": "beta",
        "name": target,
        "namespace": target.replace("-", "_"),
        "next_steps": "",
        "pip_url": install_url(target),
        "quality": "unknown",
        "repo": REPO,
        "settings": [
            sorted_keys({**hub_setting(name, prop), **default_of(prop)})
            for name, prop in flat_properties(settings_schema)
        ],
        "settings_group_validation": [sorted(settings_schema.get("required", []))],
        "settings_preamble": "",
        "supported_python_versions": info["supported_python_versions"],
        "usage": "",
        "variant": VARIANT,
    }
    return sorted_keys(definition)


def default_of(prop: dict[str, t.Any]) -> dict[str, t.Any]:
    """``{"value": default}`` when the target has a default, else nothing."""
    return {} if prop.get("default") is None else {"value": prop["default"]}


def sorted_keys(mapping: dict[str, t.Any]) -> dict[str, t.Any]:
    """Keys in order: the Hub's yamllint enables key-ordering."""
    return dict(sorted(mapping.items()))


def meltano_settings(info: dict[str, t.Any]) -> dict[str, t.Any]:
    """The generated keys of a loader in meltano.yml.

    Defaults are left to the target (no ``value``), so meltano.yml never
    pins a default that the code has since changed; labels add nothing to
    ``meltano config <target> list``, which shows the descriptions.
    """
    settings = []
    for name, prop in flat_properties(info["settings"]):
        setting = hub_setting(name, prop)
        del setting["label"]
        settings.append(setting)
    return {
        "capabilities": sorted(info["capabilities"]),
        "settings_group_validation": [sorted(info["settings"].get("required", []))],
        "settings": settings,
    }


def dump(data: t.Any) -> str:
    """YAML as the Hub lints it: block style, two spaces, sequences unindented."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=88)


def update_meltano_yml(text: str, target: str, info: dict[str, t.Any]) -> str:
    """meltano.yml with one loader's generated part replaced.

    The block is indented to sit among the keys of the loader's list entry.
    """
    begin, end = BEGIN.format(target=target), END.format(target=target)
    if begin not in text or end not in text:
        raise SystemExit(f"meltano.yml lacks the markers for {target}:\n{begin}{end}")
    lines = dump(meltano_settings(info)).splitlines(keepends=True)
    block = "".join(f"    {line}" for line in lines)
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[:start] + block + text[stop:]


def main() -> None:
    HUB_DIR.mkdir(parents=True, exist_ok=True)
    meltano_yml = MELTANO_YML.read_text()
    for target in HUB_METADATA:
        info = about(target)
        (HUB_DIR / f"{target}.yml").write_text(dump(hub_definition(target, info)))
        meltano_yml = update_meltano_yml(meltano_yml, target, info)
    MELTANO_YML.write_text(meltano_yml)


if __name__ == "__main__":
    main()
