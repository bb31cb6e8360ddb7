"""Write the Meltano Hub definitions and meltano.yml's loaders from ``--about``.

The settings of both targets are declared three times: in the targets'
code, in ``hub/_data/meltano/loaders/<target>/reverse-etl-oss.yml`` (the
files a Meltano Hub pull request adds, at the same paths) and in
``meltano.yml`` (what this repository's project installs). Only the first
is written by hand; this script derives the other two so that they cannot
drift, and ``tests/test_hub_definitions.py`` fails when someone changes a
setting without running it::

    uv run python hub/generate.py    # or any Python with both targets installed

It rewrites each Hub definition whole, and in ``meltano.yml`` only each
loader's ``capabilities``, ``settings_group_validation`` and ``settings``,
between its ``# BEGIN generated from <target> --about`` and ``# END
generated`` lines, so the rest of the file (``pip_url``, ``config``,
comments) stays as written. hub/README.md says what a Hub pull request
needs besides these files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import typing as t
from fnmatch import fnmatch
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: The Hub repository's layout: _data/meltano/loaders/<name>/<variant>.yml
HUB_LOADERS = ROOT / "hub" / "_data" / "meltano" / "loaders"
MELTANO_YML = ROOT / "meltano.yml"
README = ROOT / "README.md"
BEGIN = "    # BEGIN generated from {target} --about (python hub/generate.py)\n"
END = "    # END generated from {target} --about\n"

VARIANT = "reverse-etl-oss"
REPO = "https://github.com/reverse-etl-oss/singer-reverse-etl"

#: The table each target keeps in its pyproject.toml for what ``--about``
#: cannot say: how the Hub presents it (label, description, domain_url,
#: logo_url). A workspace member with this table is a target to generate.
HUB_TABLE = "meltano-hub"


def targets() -> dict[str, dict[str, t.Any]]:
    """{target name: its Hub metadata}, for every workspace member with one."""
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = workspace["tool"]["uv"]["workspace"]["members"]
    found: dict[str, dict[str, t.Any]] = {}
    for path in sorted(ROOT.glob("*/pyproject.toml")):
        if not any(fnmatch(path.parent.name, pattern) for pattern in patterns):
            continue
        project = tomllib.loads(path.read_text())
        if metadata := project.get("tool", {}).get(HUB_TABLE):
            found[project["project"]["name"]] = metadata
    return found


#: Words the Hub writes in capitals in generated labels (hub-utils' _get_label).
LABEL_WORDS = {"Api": "API", "Id": "ID", "Url": "URL", "Ssl": "SSL", "Oauth": "OAuth"}

#: Setting kinds for JSON schema types; strings are refined by ``kind_of``.
#: A JSON number is a ``string``: Meltano 4.4 casts a ``decimal`` setting
#: taken from an environment variable to Decimal and then fails to write the
#: config ("Object of type Decimal is not JSON serializable"), and an
#: ``integer`` one fails on "0.9"; the Hub's own definitions use neither for
#: fractions. As a string, a value from the environment reaches the target
#: as "0.9", which the target coerces to a number; one from meltano.yml
#: keeps its YAML type.
TYPE_KINDS = {
    "integer": "integer",
    "number": "string",
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


def hub_path(target: str) -> Path:
    """Where the Hub keeps this target's definition, here and in its repository."""
    return HUB_LOADERS / target / f"{VARIANT}.yml"


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
    """The setting kind: secrets are passwords, string enums options.

    ``password`` (with ``sensitive: true``) is what the Hub's definitions
    use for secrets; Meltano reads it as a sensitive string.
    """
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
    words = name.replace(".", " ").replace("_", " ").replace("-", " ").split()
    return " ".join(LABEL_WORDS.get(w.title(), w.title()) for w in words)


def setting(name: str, prop: dict[str, t.Any]) -> dict[str, t.Any]:
    """One setting: name, kind, description, options, sensitivity."""
    kind = kind_of(prop)
    declared: dict[str, t.Any] = {
        "name": name,
        "kind": kind,
        "description": prop.get("description", ""),
    }
    if kind == "options":
        declared["options"] = [
            {"label": label_of(value, {}), "value": value}
            for value in prop["enum"]
            if isinstance(value, str)
        ]
    if kind == "password":
        declared["sensitive"] = True
    return declared


def settings_of(info: dict[str, t.Any]) -> list[tuple[str, dict[str, t.Any]]]:
    """Every setting of ``--about``, sorted by name as the Hub's linter sorts them."""
    return sorted(flat_properties(info["settings"]))


def hub_definition(target: str, info: dict[str, t.Any]) -> dict[str, t.Any]:
    """The whole Hub file for one target, keys sorted (the Hub's yamllint)."""
    definition: dict[str, t.Any] = {
        **targets()[target],
        "capabilities": sorted(info["capabilities"]),
        "docs": f"{REPO}#{target}",
        "executable": target,
        "keywords": ["meltano_sdk", "reverse_etl"],
        "maintenance_status": "beta",
        "name": target,
        "namespace": target.replace("-", "_"),
        "next_steps": "",
        # the target's PyPI release pulls in singer-delivery (a dependency)
        "pip_url": target,
        "quality": "unknown",
        "repo": REPO,
        "settings": [
            sorted_keys(
                {
                    **setting(name, prop),
                    "label": label_of(name, prop),
                    **default_of(prop),
                }
            )
            for name, prop in settings_of(info)
        ],
        "settings_group_validation": group_validation(info),
        "settings_preamble": "",
        "supported_python_versions": info["supported_python_versions"],
        "usage": "",
        "variant": VARIANT,
    }
    return sorted_keys(definition)


def group_validation(info: dict[str, t.Any]) -> list[list[str]]:
    """The one set of settings a working configuration needs: the required ones."""
    return [sorted(info["settings"].get("required", []))]


def default_of(prop: dict[str, t.Any]) -> dict[str, t.Any]:
    """``{"value": default}`` when the target has a default, else nothing."""
    return {} if prop.get("default") is None else {"value": prop["default"]}


def sorted_keys(mapping: dict[str, t.Any]) -> dict[str, t.Any]:
    """Keys in order: the Hub's yamllint enables key-ordering."""
    return dict(sorted(mapping.items()))


def meltano_settings(info: dict[str, t.Any]) -> dict[str, t.Any]:
    """The generated keys of a loader in meltano.yml: the Hub's, less two.

    Defaults are left to the target (no ``value``), so meltano.yml never
    pins a default that the code has since changed; labels add nothing to
    ``meltano config list``, which shows the descriptions.
    """
    return {
        "capabilities": sorted(info["capabilities"]),
        "settings_group_validation": group_validation(info),
        "settings": [setting(name, prop) for name, prop in settings_of(info)],
    }


def dump(data: t.Any) -> str:
    """YAML as the Hub lints it: block style, two spaces, sequences unindented."""
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=88))


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


SETTINGS_BEGIN = "<!-- settings: {target} -->\n"
SETTINGS_END = "<!-- /settings -->"


def readme_table(info: dict[str, t.Any]) -> str:
    """The README's settings table: name, default, meaning, secrets marked."""
    required = set(info["settings"].get("required", []))
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for name, prop in info["settings"]["properties"].items():
        default = prop.get("default")
        shown = (
            "required"
            if name in required
            else ""
            if default is None
            else f"`{json.dumps(default).strip(chr(34))}`"
        )
        meaning = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
        if prop.get("secret") or prop.get("writeOnly"):
            meaning += " **Secret.**"
        rows.append(f"| `{name}` | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"


def update_readme(text: str, target: str, info: dict[str, t.Any]) -> str:
    """The README with one target's settings table replaced."""
    begin = SETTINGS_BEGIN.format(target=target)
    start = text.index(begin) + len(begin)
    stop = text.index(SETTINGS_END, start)
    return text[:start] + readme_table(info) + text[stop:]


def main() -> None:
    meltano_yml = MELTANO_YML.read_text()
    readme = README.read_text()
    for target in targets():
        info = about(target)
        path = hub_path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(hub_definition(target, info)))
        meltano_yml = update_meltano_yml(meltano_yml, target, info)
        readme = update_readme(readme, target, info)
    MELTANO_YML.write_text(meltano_yml)
    README.write_text(readme)


if __name__ == "__main__":
    main()
