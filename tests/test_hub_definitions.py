"""hub/loaders/*.yml and meltano.yml agree with each target's ``--about``.

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

from tests.cli import BIN

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("target-agillic", "target-gladly")
REGENERATE = "out of date: run `python hub/generate.py`"

#: Keys the Hub's schema allows in a loader definition and in a setting
#: (schemas/plugin_definitions/loaders.schema.json, common/base_setting...).
HUB_KEYS = {
    "capabilities", "name", "pip_url", "variant", "description", "executable",
    "repo", "namespace", "logo_url", "label", "settings", "docs", "python",
    "settings_group_validation", "commands", "dialect", "target_schema", "hidden",
    "requires", "maintenance_status", "quality", "domain_url", "keywords",
    "definition", "next_steps", "settings_preamble", "usage", "prereq",
    "supported_python_versions", "log_parser",
}  # fmt: skip
HUB_REQUIRED = {
    "name", "namespace", "variant", "label", "description", "logo_url", "repo",
    "docs", "pip_url", "executable", "capabilities", "settings",
    "settings_group_validation",
}  # fmt: skip
SETTING_KEYS = {
    "name", "aliases", "label", "value", "placeholder", "kind", "description",
    "tooltip", "documentation", "env", "value_processor", "value_post_processor",
    "oauth", "options", "docs", "hidden", "sensitive",
}  # fmt: skip
HUB_CAPABILITIES = {
    "about", "stream-maps", "activate-version", "batch", "soft-delete",
    "hard-delete", "datatype-failsafe", "schema-flattening", "target-schema",
    "validate-records", "structured-logging",
}  # fmt: skip
#: Meltano kinds a JSON schema type may be declared as.
KINDS = {
    "string": {"string", "options", "password"},
    "integer": {"integer"},
    "number": {"decimal"},
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
    return t.cast(
        dict[str, t.Any],
        yaml.safe_load((ROOT / "hub" / "loaders" / f"{target}.yml").read_text()),
    )


def meltano_yml() -> dict[str, t.Any]:
    return t.cast(dict[str, t.Any], yaml.safe_load((ROOT / "meltano.yml").read_text()))


def loader(target: str) -> dict[str, t.Any]:
    (entry,) = [p for p in meltano_yml()["plugins"]["loaders"] if p["name"] == target]
    return t.cast(dict[str, t.Any], entry)


def check_declared(target: str, declared: list[dict[str, t.Any]]) -> None:
    """Every setting of --about, no other, each with a fitting kind and secrets marked."""
    by_name = {s["name"]: s for s in declared}
    expected = settings_of(target)
    assert len(by_name) == len(declared), "a setting is declared twice"
    assert sorted(set(expected) - set(by_name)) == [], f"missing: {REGENERATE}"
    assert sorted(set(by_name) - set(expected)) == [], f"extra: {REGENERATE}"
    sensitive = {n for n, s in by_name.items() if s.get("sensitive")}
    assert sensitive == secrets_of(target), REGENERATE
    for name in secrets_of(target):
        assert by_name[name]["kind"] == "password", name
    for name, prop in expected.items():
        setting = by_name[name]
        if (kind := json_type(prop)) is not None:
            assert setting["kind"] in KINDS[kind], (name, setting["kind"], kind)
        if prop.get("enum"):
            assert [o["value"] for o in setting["options"]] == prop["enum"], name
        assert setting.get("description", "") == prop.get("description", ""), (
            f"{name} description {REGENERATE}"
        )


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
def test_hub_definition_is_in_the_hubs_loader_format(target: str) -> None:
    definition = hub(target)
    assert HUB_REQUIRED <= set(definition) <= HUB_KEYS
    assert (definition["name"], definition["executable"]) == (target, target)
    assert definition["namespace"] == target.replace("-", "_")
    assert set(definition["capabilities"]) <= HUB_CAPABILITIES
    assert f"#subdirectory={target}" in definition["pip_url"]
    assert "#subdirectory=singer-delivery" in definition["pip_url"]
    # the Hub's yamllint enables key-ordering
    assert list(definition) == sorted(definition)
    for setting in definition["settings"]:
        assert set(setting) <= SETTING_KEYS, setting["name"]
        assert list(setting) == sorted(setting), setting["name"]
        assert setting["label"] and setting["description"], setting["name"]


def test_hub_definitions_share_variant_and_repository() -> None:
    agillic, gladly = (hub(target) for target in TARGETS)
    for key in ("variant", "repo", "maintenance_status", "keywords"):
        assert agillic[key] == gladly[key], key
    assert agillic["docs"].startswith(agillic["repo"])


@pytest.mark.parametrize("target", TARGETS)
def test_meltano_yml_declares_every_setting_with_secrets_sensitive(
    target: str,
) -> None:
    entry = loader(target)
    check_declared(target, entry["settings"])
    assert entry["capabilities"] == sorted(about(target)["capabilities"])
    assert entry["pip_url"].split() == ["-e", "./singer-delivery", "-e", f"./{target}"]


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
