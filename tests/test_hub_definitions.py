"""The Hub definitions and meltano.yml agree with each target's ``--about``.

``hub/_data/meltano/loaders/<target>/reverse-etl-oss.yml`` is what a Meltano
Hub pull request adds, at the same path; it must pass the Hub's own JSON
schema (vendored in tests/fixtures/hub/) and follow the Hub's conventions.
When one of these fails after a settings change: ``python hub/generate.py``.
"""

from __future__ import annotations

import functools
import json
import subprocess
import typing as t
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from hub.generate import targets
from tests.cli import BIN

ROOT = Path(__file__).resolve().parents[1]
HUB_LOADERS = ROOT / "hub" / "_data" / "meltano" / "loaders"
HUB_SCHEMAS = ROOT / "tests" / "fixtures" / "hub" / "schemas"
VARIANT = "reverse-etl-oss"
TARGETS = tuple(targets())
REGENERATE = "out of date: run `python hub/generate.py`"

#: Keys a Hub plugin page shows, beyond the few the schema requires.
HUB_REQUIRED = {
    "name", "namespace", "variant", "label", "description", "logo_url", "repo",
    "docs", "pip_url", "executable", "capabilities", "settings",
    "settings_group_validation", "quality", "maintenance_status", "domain_url",
}  # fmt: skip
#: Setting kinds that occur in the Hub's definitions (_data/meltano, at the
#: vendored commit): its schema also allows decimal, file and hidden, but no
#: definition uses them, and Meltano 4.4 fails on a decimal setting given
#: through an environment variable.
HUB_KINDS = {
    "string", "password", "object", "integer", "boolean", "array", "options",
    "date_iso8601", "oauth", "email",
}  # fmt: skip
#: Kinds each JSON schema type may be declared as; a number is a string,
#: which the target coerces (see TYPE_KINDS in hub/generate.py).
KINDS = {
    "string": {"string", "options", "password"},
    "integer": {"integer"},
    "number": {"string"},
    "boolean": {"boolean"},
    "object": {"object"},
    "array": {"array"},
}


@functools.cache
def about(target: str) -> dict[str, t.Any]:
    output = subprocess.check_output([str(BIN / target), "--about", "--format", "json"])
    return t.cast(dict[str, t.Any], json.loads(output))


def settings_of(target: str) -> dict[str, dict[str, t.Any]]:
    """Setting name → property schema, named as Meltano names settings.

    A nested object with declared properties (faker_config) is one setting
    per property (faker_config.seed); open objects and stream_maps are one.
    """
    found = {}
    for name, prop in about(target)["settings"]["properties"].items():
        if prop.get("properties") and name != "stream_maps":
            found.update({f"{name}.{k}": v for k, v in prop["properties"].items()})
        else:
            found[name] = prop
    return found


def secrets_of(target: str) -> set[str]:
    return {n for n, p in settings_of(target).items() if p.get("secret")}


def json_type(prop: dict[str, t.Any]) -> str | None:
    """The one non-null JSON type of a property; None when it has several."""
    declared = prop.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    for option in prop.get("oneOf", []) + prop.get("anyOf", []):
        if isinstance(option, dict) and "type" in option:
            option_types = option["type"]
            types.update(
                [option_types] if isinstance(option_types, str) else option_types
            )
    types.discard("null")
    return types.pop() if len(types) == 1 else None


def hub(target: str) -> dict[str, t.Any]:
    path = HUB_LOADERS / target / f"{VARIANT}.yml"
    return t.cast(dict[str, t.Any], yaml.safe_load(path.read_text()))


def meltano_yml() -> dict[str, t.Any]:
    return t.cast(dict[str, t.Any], yaml.safe_load((ROOT / "meltano.yml").read_text()))


def loader(target: str) -> dict[str, t.Any]:
    (entry,) = [p for p in meltano_yml()["plugins"]["loaders"] if p["name"] == target]
    return t.cast(dict[str, t.Any], entry)


@functools.cache
def hub_validator() -> Draft7Validator:
    """The Hub's loader schema, its ``$ref``s resolved by ``$id`` as its CI does."""
    schemas = [json.loads(p.read_text()) for p in HUB_SCHEMAS.glob("*/*.schema.json")]
    registry: Registry[t.Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT7))
        for s in schemas
    )
    loaders = json.loads(
        (HUB_SCHEMAS / "plugin_definitions/loaders.schema.json").read_text()
    )
    return Draft7Validator(loaders, registry=registry)


def check_declared(target: str, declared: list[dict[str, t.Any]]) -> None:
    """Every setting of --about, no other, sorted, kinds fitting, secrets marked."""
    by_name = {s["name"]: s for s in declared}
    expected = settings_of(target)
    assert len(by_name) == len(declared), "a setting is declared twice"
    assert sorted(set(expected) - set(by_name)) == [], f"missing: {REGENERATE}"
    assert sorted(set(by_name) - set(expected)) == [], f"extra: {REGENERATE}"
    assert list(by_name) == sorted(by_name), f"not sorted by name: {REGENERATE}"
    sensitive = {n for n, s in by_name.items() if s.get("sensitive")}
    assert sensitive == secrets_of(target), REGENERATE
    for name in secrets_of(target):
        assert by_name[name]["kind"] == "password", name
    for name, prop in expected.items():
        setting = by_name[name]
        assert setting["kind"] in HUB_KINDS, (name, setting["kind"])
        if (kind := json_type(prop)) is not None:
            assert setting["kind"] in KINDS[kind], (name, setting["kind"], kind)
        if prop.get("enum"):  # allowed_values; the Hub's options are strings
            assert setting["kind"] == "options", name
            values = [v for v in prop["enum"] if isinstance(v, str)]
            assert [o["value"] for o in setting["options"]] == values, name
        assert setting.get("description", "") == prop.get("description", ""), (
            f"{name} description {REGENERATE}"
        )


def test_hub_definitions_are_where_the_hub_keeps_loaders() -> None:
    """_data/meltano/loaders/<name>/<variant>.yml, name matching its directory."""
    found = sorted(p.relative_to(HUB_LOADERS) for p in HUB_LOADERS.rglob("*.yml"))
    assert found == [Path(target, f"{VARIANT}.yml") for target in TARGETS]
    for target in TARGETS:
        assert (hub(target)["name"], hub(target)["variant"]) == (target, VARIANT)


@pytest.mark.parametrize("target", TARGETS)
def test_hub_definition_passes_the_hubs_json_schema(target: str) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in hub_validator().iter_errors(hub(target))
    ]
    assert errors == []


def test_the_vendored_schema_rejects_what_the_hub_rejects() -> None:
    """The fixture really validates: refs resolve, unknown keys and kinds fail."""
    definition = hub(TARGETS[0])
    definition["settings"] = [{**definition["settings"][0], "kind": "float"}]
    definition["colour"] = "blue"
    messages = {e.message for e in hub_validator().iter_errors(definition)}
    assert any("'float' is not one of" in m for m in messages), messages
    assert any("'colour' was unexpected" in m for m in messages), messages


@pytest.mark.parametrize("target", TARGETS)
def test_hub_definition_declares_exactly_the_targets_settings(target: str) -> None:
    definition = hub(target)
    check_declared(target, definition["settings"])
    for setting in definition["settings"]:
        default = settings_of(target)[setting["name"]].get("default")
        assert setting.get("value") == default, f"{setting['name']} {REGENERATE}"
    assert definition["capabilities"] == sorted(about(target)["capabilities"])
    assert definition["settings_group_validation"] == [
        sorted(about(target)["settings"]["required"])
    ]
    assert (
        definition["supported_python_versions"]
        == (about(target)["supported_python_versions"])
    )


@pytest.mark.parametrize("target", TARGETS)
def test_hub_definition_follows_the_hubs_conventions(target: str) -> None:
    definition = hub(target)
    assert set(definition) >= HUB_REQUIRED
    assert (definition["name"], definition["executable"]) == (target, target)
    assert definition["namespace"] == target.replace("-", "_")
    assert definition["pip_url"] == target  # from PyPI; it pulls in singer-delivery
    # the Hub's yamllint enables key-ordering
    assert list(definition) == sorted(definition)
    for setting in definition["settings"]:
        assert list(setting) == sorted(setting), setting["name"]
        assert setting["label"], setting["name"]
        assert setting["description"], setting["name"]


@pytest.mark.parametrize("target", TARGETS)
def test_hub_docs_link_the_readme_section_of_the_target(target: str) -> None:
    definition = hub(target)
    assert definition["docs"] == f"{definition['repo']}#{target}"
    readme = (ROOT / "README.md").read_text()
    assert f"\n## {target}\n" in readme


def test_hub_definitions_share_variant_and_repository() -> None:
    agillic, gladly = (hub(target) for target in TARGETS)
    for key in ("variant", "repo", "maintenance_status", "keywords"):
        assert agillic[key] == gladly[key], key


@pytest.mark.parametrize("target", TARGETS)
def test_meltano_yml_declares_every_setting_with_secrets_sensitive(
    target: str,
) -> None:
    entry = loader(target)
    check_declared(target, entry["settings"])
    assert entry["capabilities"] == sorted(about(target)["capabilities"])
    assert entry["pip_url"].split() == ["-e", "./singer-delivery", "-e", f"./{target}"]
    hub_kinds = {s["name"]: s["kind"] for s in hub(target)["settings"]}
    assert {s["name"]: s["kind"] for s in entry["settings"]} == hub_kinds


def sensitive_settings() -> set[str]:
    """Names of every sensitive setting of every plugin in meltano.yml."""
    plugins = meltano_yml()["plugins"]
    return {
        s["name"]
        for kind in ("extractors", "loaders")
        for plugin in plugins[kind]
        for s in plugin.get("settings", [])
        if s.get("sensitive")
    }


def test_meltano_yml_holds_secrets_only_for_the_demo() -> None:
    project = meltano_yml()
    assert project["send_anonymous_usage_stats"] is False
    secrets = sensitive_settings()
    assert {"developer_secret", "api_token", "sqlalchemy_url"} <= secrets
    configs = [
        plugin.get("config", {})
        for kind in ("extractors", "loaders")
        for plugin in project["plugins"][kind]
    ]
    for environment in project["environments"]:
        if environment["name"] != "demo":
            plugins = environment.get("config", {}).get("plugins", {})
            configs += [p.get("config", {}) for ps in plugins.values() for p in ps]
    for config in configs:
        assert not secrets & set(config), config
