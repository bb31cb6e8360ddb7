"""What every benchmark program shares: measured children, emulators, tables.

Each measured program runs as its own child process, reaped with
``os.wait4`` so its own wall time, user and system CPU and peak RSS are
known. Every child gets ``PYTHONPYCACHEPREFIX`` pointing into the bench's
work directory, so after one warm-up run no figure includes compiling
modules (an installed plugin starts warm; ``PYTHONDONTWRITEBYTECODE``
would otherwise add the compile time of every import to every run).

Only the standard library is used, so the figures can be reproduced with
nothing but Python and nox.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import textwrap
import time
import typing as t
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.cli import CUSTOMER_SCHEMA, customer, state_line

#: Children run from here, so ``python -m tests.…`` works from any cwd.
ROOT = Path(__file__).resolve().parents[1]
STREAM = "customers"
#: Taps built on singer-sdk emit a STATE every 10,000 records by default.
STATE_EVERY = 10_000
WIDTH = 100


class ChildFailed(RuntimeError):
    """A measured program exited non-zero: its figures would mean nothing."""


@dataclass(frozen=True)
class Measured:
    """One child process: wall time, its own CPU and peak RSS, its stdout."""

    seconds: float
    user: float
    system: float
    peak_rss_kb: int
    stdout: str

    @property
    def cpu(self) -> float:
        """User plus system CPU seconds of the child itself."""
        return self.user + self.system


def step(message: str) -> None:
    """Progress on a terminal: one status line on stderr, rewritten in place.

    Nothing when stderr is not a terminal (a log, nox's captured output), so
    the printed output is the tables alone.
    """
    if sys.stderr.isatty():
        print(f"\r\033[Kbench: {message}", end="", file=sys.stderr, flush=True)


def emit(text: str) -> None:
    """A block of output on stdout, after clearing a progress line."""
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    print(text, flush=True)


def child_env(workdir: Path) -> dict[str, str]:
    """Bytecode written to and read from ``workdir``: warm starts, clean repo."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def measure(argv: Sequence[str], workdir: Path, stdin: Path | None = None) -> Measured:
    """Run ``argv`` to completion; ``os.wait4`` gives this child's own usage.

    Output goes to files rather than pipes so that nothing but ``wait4`` reaps
    the child (``Popen.wait`` would, and lose its resource usage).
    """
    stdout_path, stderr_path = workdir / "child.stdout", workdir / "child.stderr"
    with contextlib.ExitStack() as files:
        stdin_file = files.enter_context(stdin.open("rb")) if stdin else None
        stdout_file = files.enter_context(stdout_path.open("wb"))
        stderr_file = files.enter_context(stderr_path.open("wb"))
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=stdin_file,
            stdout=stdout_file,
            stderr=stderr_file,
            env=child_env(workdir),
            cwd=ROOT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = stderr_path.read_text(errors="replace")[-3000:]
        raise ChildFailed(f"{' '.join(argv)} exited {proc.returncode}:\n{tail}")
    return Measured(
        seconds,
        usage.ru_utime,
        usage.ru_stime,
        usage.ru_maxrss,
        stdout_path.read_text(),
    )


def check_last_state(measured: Measured, records: int) -> None:
    """A run that did not checkpoint every record did not finish its work."""
    states = [json.loads(line) for line in measured.stdout.splitlines() if line]
    offset = states[-1]["bookmarks"][STREAM]["offset"] if states else None
    if offset != records:
        raise ChildFailed(f"last STATE offset is {offset}, expected {records}")


def write_input(
    path: Path,
    records: int,
    row: Callable[[int], dict[str, t.Any]] = customer,
) -> Path:
    """One input file: SCHEMA, ``row(i)`` RECORDs, a STATE every 10,000 and last.

    Written a line at a time rather than with ``tests.cli.messages``: a child
    process starts with its parent's peak RSS (Linux keeps the high-water
    mark across fork and exec), so this process must stay small.
    """
    schema = {"schema": CUSTOMER_SCHEMA, "key_properties": ["email"]}
    with path.open("w") as out:
        out.write(json.dumps({"type": "SCHEMA", "stream": STREAM, **schema}) + "\n")
        for i in range(records):
            record = {"type": "RECORD", "stream": STREAM, "record": row(i)}
            out.write(json.dumps(record) + "\n")
            if (i + 1) % STATE_EVERY == 0 or i + 1 == records:
                out.write(state_line(STREAM, i + 1) + "\n")
    return path


def write_json(path: Path, value: t.Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def stream_report(path: Path) -> dict[str, t.Any]:
    """The counts of the one stream in a run report JSON (``report_path``)."""
    report = json.loads(path.read_text())
    return t.cast(dict[str, t.Any], report["streams"][STREAM])


def remove_sqlite(path: Path) -> None:
    """A ledger file and its journal files, so the next run starts fresh."""
    for sibling in path.parent.glob(f"{path.name}*"):
        sibling.unlink()


# -- emulators ------------------------------------------------------------


@contextlib.contextmanager
def emulator_process(module: str, flags: Sequence[str], workdir: Path) -> Iterator[str]:
    """``python -m <module> <flags>`` in its own process; yields its URL.

    Its own process, so its CPU is never the measured target's.
    """
    argv = [sys.executable, "-m", module, *flags]
    env = child_env(workdir)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise ChildFailed(f"{module} did not start: {line!r}")
        yield line.removeprefix("listening on ").strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def control(url: str, path: str, body: t.Any = None) -> t.Any:
    """A control endpoint (``/_emulator/...``): GET, or POST with a JSON body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/_emulator/{path}",
        data=data,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def reset(url: str, **settings: t.Any) -> None:
    """Forget the emulator's data and counters, then apply ``settings``."""
    control(url, "reset", {})
    if settings:
        control(url, "config", settings)


def calls(url: str) -> dict[str, t.Any]:
    """``GET /_emulator/calls``: write calls, status counts, calls per route."""
    return t.cast(dict[str, t.Any], control(url, "calls"))


# -- figures ----------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Several measurements of one figure: shown as median (min-max)."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: t.Iterable[float]) -> Spread:
        return cls(tuple(values))

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, fmt: str = "{:.2f}", spread: bool = True) -> str:
        """``median (min-max)``; the median alone for one value or no spread."""
        text = fmt.format(self.median)
        low, high = fmt.format(min(self.values)), fmt.format(max(self.values))
        if spread and len(self.values) > 1 and low != high:
            text += f" ({low}-{high})"
        return text


def mib(kilobytes: float) -> str:
    return f"{kilobytes / 1024:.1f}"


def count(value: float) -> str:
    return f"{value:,.0f}"


def counts(values: t.Iterable[int]) -> str:
    """One figure that should not vary: itself, or every distinct value."""
    distinct = sorted(set(values))
    return " / ".join(f"{value:,}" for value in distinct)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A plain aligned table: the first ``left`` columns left-aligned, the rest right."""
    widths = [
        max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def section(title: str, notes: Sequence[str], body: str) -> str:
    """A titled block: notes (what each figure is, how measured), then a table."""
    wrapped = [
        textwrap.fill(note, WIDTH, initial_indent="  ", subsequent_indent="    ")
        for note in notes
    ]
    return "\n".join(["", title, "=" * len(title), *wrapped, "", body])


def _first_line(path: str, prefix: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return "unknown"


def _commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        )
        return found.stdout.strip() + (" (with local changes)" if dirty.stdout else "")
    return "unknown"


def load_average() -> str:
    """The machine's load average over 1, 5 and 15 minutes: how busy it is."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def machine_lines() -> list[str]:
    """Where and when: machine, CPU, memory, load, Python, singer-sdk, commit."""
    memory = _first_line("/proc/meminfo", "MemTotal")
    if memory.endswith(" kB"):
        memory = f"{int(memory.removesuffix(' kB')) / 1024**2:.1f} GiB"
    try:
        sdk = importlib.metadata.version("singer-sdk")
    except importlib.metadata.PackageNotFoundError:
        sdk = "not installed"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"date:     {now}, commit {_commit()}",
        f"machine:  {platform.platform()}, {_first_line('/proc/cpuinfo', 'model name')}",
        f"          {os.cpu_count()} CPUs, {memory} memory; {load_average()} at start",
        (
            f"python:   {platform.python_implementation()} {platform.python_version()}, "
            f"singer-sdk {sdk}"
        ),
    ]


def rss_floor_note() -> str:
    """Why a peak RSS cannot read below this process's own peak."""
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return textwrap.fill(
        f"Peak RSS figures cannot read below {mib(floor)} MiB: a child starts "
        "with its parent's high-water mark (this bench process's own peak).",
        WIDTH,
    )
