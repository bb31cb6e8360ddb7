"""Domain validation, sync-mode refusals and the Gladly settings schema."""

from __future__ import annotations

import pytest

from target_gladly.contract import derived_id, gladly_host
from target_gladly.settings import check_modes
from target_gladly.target import TargetGladly


@pytest.mark.parametrize(
    ("domain", "host"),
    [
        ("mycompany", "mycompany.gladly.com"),
        (" MyCompany ", "mycompany.gladly.com"),
        ("my-company2", "my-company2.gladly.com"),
        ("mycompany.gladly.com", "mycompany.gladly.com"),
        ("mycompany.gladly.qa", "mycompany.gladly.qa"),
        ("mycompany.us-1.gladly.com", "mycompany.us-1.gladly.com"),
    ],
)
def test_subdomains_and_gladly_hosts_are_accepted(domain: str, host: str) -> None:
    assert gladly_host(domain) == host


@pytest.mark.parametrize(
    "domain",
    [
        "https://mycompany.gladly.com",
        "mycompany.gladly.com/api",
        "mycompany.gladly.com:443",
        "mycompany.example.com",
        "mycompany.gladly.com.evil.net",
        "gladly.com",
        "my_company",
        "-mycompany",
        "",
    ],
)
def test_anything_else_is_refused_with_the_expected_form(domain: str) -> None:
    with pytest.raises(ValueError, match="domain") as raised:
        gladly_host(domain)
    assert "mycompany.gladly.qa" in str(raised.value)
    assert "https://mycompany.gladly.com" in str(raised.value)


@pytest.mark.parametrize("mode", ["mirror", "add", "remove"])
def test_audience_modes_are_refused_because_gladly_has_no_lists(mode: str) -> None:
    [error] = check_modes({"sync_mode": mode})
    assert f"sync_mode {mode!r}" in error
    assert "no list or audience API" in error


def test_agillic_audience_mode_setting_is_refused_too() -> None:
    [error] = check_modes({"audience_mode": "add"})
    assert error.startswith("audience_mode")
    assert "no list or audience API" in error


def test_profile_modes_are_accepted_and_unknown_ones_named() -> None:
    assert check_modes({}) == []
    for mode in ("upsert", "insert", "update"):
        assert check_modes({"sync_mode": mode}) == []
    [error] = check_modes({"sync_mode": "merge"})
    assert "'merge'" in error
    assert "upsert, insert, update" in error


def test_schema_defaults_and_secrets() -> None:
    properties = TargetGladly.config_jsonschema["properties"]
    assert set(TargetGladly.config_jsonschema["required"]) == {
        "domain",
        "username",
        "api_token",
    }
    assert properties["api_token"]["secret"] is True
    assert properties["max_retries"]["default"] == 3
    assert properties["request_timeout"]["default"] == 30
    assert properties["max_requests_per_second"]["default"] == 10
    assert properties["sync_mode"]["default"] == "upsert"
    assert properties["phone_type"]["enum"] == ["MOBILE", "HOME", "OFFICE"]
    assert {"ledger_url", "dry_run", "rejects_path", "max_reject_ratio"} <= set(
        properties
    )


def test_derived_ids_are_url_safe_short_and_stable() -> None:
    first = derived_id("ada@example.com")
    assert first == derived_id("ada@example.com") != derived_id("bob@example.com")
    assert len(first) < 50
    assert first.replace("-", "").isalnum()
