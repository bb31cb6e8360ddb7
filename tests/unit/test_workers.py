"""The delivery threads' pool."""

from __future__ import annotations

import ctypes
import os
import typing as t

import pytest

from singer_delivery.workers import MALLOC_ARENAS, WorkerPool


class Libc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return 1


@pytest.mark.parametrize("glibc", [True, False])
def test_a_pool_limits_glibc_malloc_arenas_before_its_threads_start(
    monkeypatch: pytest.MonkeyPatch, glibc: bool
) -> None:
    libc = Libc()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)

    def confstr(name: str) -> str | None:
        assert name == "CS_GNU_LIBC_VERSION"
        return "glibc 2.36" if glibc else None

    monkeypatch.setattr(os, "confstr", confstr)
    pool = WorkerPool(2, "test")
    try:
        assert pool.submit(lambda: 6 * 7).result(timeout=5) == 42
    finally:
        pool.shutdown()
    expected: list[t.Any] = [(-8, MALLOC_ARENAS)] if glibc else []
    assert libc.calls == expected
