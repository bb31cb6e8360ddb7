"""The README's settings tables and commands agree with the code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from hub.generate import targets

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def about(target: str) -> dict[str, t.Any]:
    output = subprocess.check_output([str(BIN / target), "--about", "--format", "json"])
    about: dict[str, t.Any] = json.loads(output)
    return about


def table_rows(target: str) -> dict[str, tuple[str, str]]:
    """{setting: (default column, meaning column)} from the README table."""
    start = README.index(f"<!-- settings: {target} -->")
    end = README.index("<!-- /settings -->", start)
    rows: dict[str, tuple[str, str]] = {}
    for line in README[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([a-z_]+)`", cells[0]):
            rows[name] = (cells[1], cells[2])
    return rows


@pytest.mark.parametrize("target", list(targets()))
def test_settings_table_lists_every_setting_and_marks_secrets(target: str) -> None:
    settings = about(target)["settings"]
    rows = table_rows(target)
    assert set(rows) == set(settings["properties"])
    for name, spec in settings["properties"].items():
        default, meaning = rows[name]
        assert ("**Secret.**" in meaning) == bool(spec.get("secret")), name
        if name in settings.get("required", []):
            assert default == "required", name
        elif isinstance(spec.get("default"), bool | int | float | str):
            expected = json.dumps(spec["default"]).strip('"')
            assert default == f"`{expected}`", name


def test_readme_commands_are_dev_py_and_ci_runs_the_test_one() -> None:
    """A fresh machine needs only Python: both commands go through dev.py.

    CI (.ci/run) runs exactly the README's test command and nothing else, so
    what the README promises is what CI proves on every clean clone.
    """
    assert "python3 dev.py demo" in README
    assert "python3 dev.py tests" in README
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [
        line
        for line in ci.splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd ", "export "))
    ]
    assert commands == ["python3 dev.py tests"]
