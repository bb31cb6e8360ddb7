"""Run a target's real CLI on Singer messages, as a tap would feed it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent

CUSTOMER_SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": ["string", "null"]},
        "first_name": {"type": ["string", "null"]},
        "tier": {"type": ["string", "null"]},
        "lifetime_value": {"type": ["number", "null"]},
        "birthdate": {"type": ["string", "null"], "format": "date"},
        "created_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
CUSTOMER_MAPPING = {
    "email": "EMAIL",
    "first_name": "FIRSTNAME",
    "tier": "TIER",
    "lifetime_value": "LIFETIME_VALUE",
    "birthdate": "BIRTHDATE",
    "created_at": "CREATED_AT",
}


def customer(i: int, **changes: t.Any) -> dict[str, t.Any]:
    """A deterministic customer row."""
    row = {
        "email": f"user{i:06d}@example.com",
        "first_name": f"Name{i}",
        "tier": ["bronze", "silver", "gold"][i % 3],
        "lifetime_value": round(i * 1.25, 2),
        "birthdate": f"19{50 + i % 50}-0{1 + i % 9}-1{i % 10}",
        "created_at": "2024-05-06T07:08:09Z",
    }
    row.update(changes)
    return row


def messages(
    records: t.Iterable[dict[str, t.Any]],
    *,
    stream: str = "customers",
    schema: dict[str, t.Any] | None = None,
    key_properties: t.Sequence[str] = ("email",),
    state_every: int | None = None,
) -> list[str]:
    """SCHEMA, RECORDs (with a STATE every ``state_every``), a final STATE."""
    lines = [
        json.dumps(
            {
                "type": "SCHEMA",
                "stream": stream,
                "schema": schema or CUSTOMER_SCHEMA,
                "key_properties": list(key_properties),
            }
        )
    ]
    count = 0
    for count, record in enumerate(records, start=1):
        lines.append(json.dumps({"type": "RECORD", "stream": stream, "record": record}))
        if state_every and count % state_every == 0:
            lines.append(state_line(stream, count))
    lines.append(state_line(stream, count))
    return lines


def state_line(stream: str, offset: int) -> str:
    """A STATE whose bookmark says how many records were read."""
    value = {"bookmarks": {stream: {"offset": offset}}}
    return json.dumps({"type": "STATE", "value": value})


@dataclass
class Result:
    """What the CLI printed and returned."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def states(self) -> list[dict[str, t.Any]]:
        """STATE values written to stdout, in order."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def write_config(path: Path, config: dict[str, t.Any]) -> Path:
    path.write_text(json.dumps(config))
    return path


def run_target(
    name: str,
    config: dict[str, t.Any],
    lines: t.Sequence[str],
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 240,
) -> Result:
    """Pipe ``lines`` into ``<name> --config`` and wait for it to end."""
    config_path = write_config(tmp_path / f"{name}-config.json", config)
    proc = subprocess.run(
        [str(BIN / name), "--config", str(config_path)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=tmp_path,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_ok(
    name: str,
    config: dict[str, t.Any],
    lines: t.Sequence[str],
    tmp_path: Path,
    **kwargs: t.Any,
) -> Result:
    """``run_target`` for runs that must succeed; shows stderr when not."""
    result = run_target(name, config, lines, tmp_path, **kwargs)
    assert result.returncode == 0, result.stderr
    return result


def start_target(
    name: str,
    config: dict[str, t.Any],
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start the CLI with a stdin pipe the test writes to itself."""
    config_path = write_config(tmp_path / f"{name}-config.json", config)
    return subprocess.Popen(
        [str(BIN / name), "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )
