"""Run a target's CLI on Singer messages, as a tap would feed it.

``run_target`` runs the CLI's own entry point (click command, exit code,
logging to stderr, STATE to stdout) inside the test process: a new Python
process costs 0.6 s of CPU importing singer-sdk, most of what a typical test
spends. Tests marked ``real_cli`` (start-up, configuration messages, bad
input, and the main acceptance run of each feature: quarantine, run history,
verification, the call budget, mirror safety, events, activity, deletes) and
every ``start_target`` (signals, kills) run a separate process.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import traceback
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import click

BIN = Path(sys.executable).parent
#: Whether ``run_target`` stays in the test process (see the module docstring).
IN_PROCESS = True

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
    """Feed ``lines`` to ``<name> --config`` and wait for it to end.

    In-process the lines go through ``--input`` (a file); in a process they
    are piped to stdin, as a tap's output would be.
    """
    config_path = write_config(tmp_path / f"{name}-config.json", config)
    if IN_PROCESS:
        input_path = tmp_path / f"{name}-input.jsonl"
        input_path.write_text("\n".join(lines) + "\n")
        args = ["--config", str(config_path), "--input", str(input_path)]
        return run_in_process(name, args, cwd=tmp_path, env=env or {})
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


def run_in_process(
    name: str, args: list[str], *, cwd: Path, env: dict[str, str]
) -> Result:
    """The console script ``name`` called as a function, as its process would be.

    Restores what a run changes for the whole process: the root logger's
    handlers (singer-sdk adds one per run), the signal handlers it installs,
    the environment and the working directory.
    """
    [entry] = entry_points(group="console_scripts", name=name)
    stdout, stderr = _text_stream(), _text_stream()
    with (
        _process_state(cwd, env),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        # Loading builds the click command, which sets up logging to stderr.
        command = t.cast(click.Command, entry.load())
        code = _exit_code(command, name, args)
    return Result(code, _read(stdout), _read(stderr))


def _exit_code(command: click.Command, name: str, args: list[str]) -> int:
    """What the process would exit with; an escaping exception prints as Python would."""
    try:
        command.main(args, prog_name=name)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # what Python does with a message
        return 1
    except Exception:  # noqa: BLE001 - an uncaught error is the test's finding
        traceback.print_exc()
        return 1
    return 0


@contextlib.contextmanager
def _process_state(cwd: Path, env: dict[str, str]) -> Iterator[None]:
    """Run in ``cwd`` with ``env`` added; put back what a run changes globally."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    environ, here = dict(os.environ), Path.cwd()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(environ)
        for sig, on_signal in signals.items():
            signal.signal(sig, on_signal)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def _text_stream() -> io.TextIOWrapper:
    """A stdout or stderr with a byte buffer below, as msgspec's writer needs."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)


def _read(stream: io.TextIOWrapper) -> str:
    stream.flush()
    return t.cast(io.BytesIO, stream.buffer).getvalue().decode("utf-8")


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
