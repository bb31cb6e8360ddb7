"""Cutting work into requests the API accepts."""

from __future__ import annotations

import typing as t
from collections.abc import Iterator, Sequence

_T = t.TypeVar("_T")


def chunked(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def split_to_fit(
    items: list[_T], encode: t.Callable[[list[_T]], bytes], limit: int
) -> Iterator[tuple[list[_T], bytes]]:
    """Request bodies of at most ``limit`` bytes, halving batches that exceed it.

    Sizes are measured on the real encoding, not estimated. Items too large
    to fit even alone never get here: the sink rejects them
    (``payload_too_large``) before they are batched.
    """
    body = encode(items)
    if len(body) <= limit or len(items) == 1:
        yield items, body
        return
    middle = len(items) // 2
    yield from split_to_fit(items[:middle], encode, limit)
    yield from split_to_fit(items[middle:], encode, limit)
