"""A brand-new Meltano project, anywhere, adds target-agillic from its definition.

Until the packages are on PyPI and the definition on Meltano Hub, the
recipe in hub/README.md is: point the Hub definition's ``pip_url`` at this
checkout and ``meltano add --from-ref`` it. This test runs that recipe
verbatim in a new project outside the repository, then checks what the
definition is for: every setting listed with its environment variable,
secrets stored in ``.env`` rather than meltano.yml, and a working loader.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
from pathlib import Path

import pytest
import yaml

from delivery_emulators import AgillicEmulator
from tests.e2e.harness import PLUGIN_ENV_PREFIXES, ROOT

DEFINITION = ROOT / "hub/_data/meltano/loaders/target-agillic/reverse-etl-oss.yml"
#: The recipe, exactly as hub/README.md shows it (REPO is the checkout).
RECIPE = """\
sed "s|^pip_url: .*|pip_url: $REPO/singer-delivery $REPO/target-agillic|" \\
  "$REPO/hub/_data/meltano/loaders/target-agillic/reverse-etl-oss.yml" > target-agillic.yml
meltano add target-agillic --from-ref target-agillic.yml
"""


class Project:
    """A Meltano project directory and the environment its commands run in."""

    def __init__(self, directory: Path, meltano: Path) -> None:
        self.directory = directory
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(PLUGIN_ENV_PREFIXES)
        }
        self.env.update(
            PATH=os.pathsep.join([str(meltano.parent), os.environ["PATH"]]),
            MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
            REPO=str(ROOT),
        )

    def sh(self, script: str, stdin: str | None = None) -> str:
        """Run shell lines in the project, as a user would type them."""
        result = subprocess.run(
            ["sh", "-e", "-c", script],
            cwd=self.directory,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert result.returncode == 0, f"{script}\n{result.stderr[-4000:]}"
        return result.stdout


@pytest.fixture
def project(meltano_executable: Path, tmp_path: Path) -> Project:
    """``meltano init`` in a temporary directory, far from this repository."""
    Project(tmp_path, meltano_executable).sh("meltano init fresh --no-usage-stats")
    return Project(tmp_path / "fresh", meltano_executable)


def singer_messages(emails: t.Sequence[str]) -> str:
    """A stream of recipients under their Person Data field names."""
    schema = {
        "type": "object",
        "properties": {"EMAIL": {"type": "string"}, "FIRSTNAME": {"type": "string"}},
    }
    lines = [{"type": "SCHEMA", "stream": "people", "schema": schema}]
    lines += [
        {"type": "RECORD", "stream": "people", "record": {"EMAIL": e, "FIRSTNAME": "A"}}
        for e in emails
    ]
    lines.append({"type": "STATE", "value": {"bookmarks": {"people": {"done": 1}}}})
    return "".join(json.dumps(line) + "\n" for line in lines)


def test_hub_readme_shows_the_recipe_this_test_runs() -> None:
    assert RECIPE in (ROOT / "hub" / "README.md").read_text()


@pytest.mark.meltano
@pytest.mark.slow
def test_fresh_project_gets_every_setting_secrets_in_env_and_a_working_loader(
    project: Project, agillic_emulator: AgillicEmulator
) -> None:
    project.sh(RECIPE)

    listed = project.sh("meltano config list target-agillic --all")
    for setting in yaml.safe_load(DEFINITION.read_text())["settings"]:
        env = "TARGET_AGILLIC_" + setting["name"].upper().replace(".", "_")
        assert f"{setting['name']} [env: {env}]" in listed, setting["name"]
    assert "max_removal_ratio [env: TARGET_AGILLIC_MAX_REMOVAL_RATIO]" in listed

    secret = agillic_emulator.developer_secret
    project.sh(f"meltano config set target-agillic developer_secret {secret}")
    dotenv = (project.directory / ".env").read_text()
    assert f"TARGET_AGILLIC_DEVELOPER_SECRET='{secret}'" in dotenv
    assert secret not in (project.directory / "meltano.yml").read_text()

    # the rest from the environment; the secret only from .env
    project.env.update(
        TARGET_AGILLIC_API_ENDPOINT=agillic_emulator.url,
        TARGET_AGILLIC_DEVELOPER_KEY=agillic_emulator.developer_key,
    )
    emails = ["one@example.com", "two@example.com"]
    stdout = project.sh("meltano invoke target-agillic", stdin=singer_messages(emails))

    assert set(agillic_emulator.recipients) == set(emails)
    assert json.loads(stdout.splitlines()[-1]) == {"bookmarks": {"people": {"done": 1}}}
