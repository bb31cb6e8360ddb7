"""HTTP emulators of the Agillic and Gladly APIs for tests."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from delivery_emulators.agillic import AgillicEmulator
    from delivery_emulators.base import EmulatorServer, Fault, RequestRecord
    from delivery_emulators.gladly import GladlyEmulator

__all__ = [
    "AgillicEmulator",
    "EmulatorServer",
    "Fault",
    "GladlyEmulator",
    "RequestRecord",
]
_MODULES = {
    "AgillicEmulator": "agillic",
    "EmulatorServer": "base",
    "Fault": "base",
    "GladlyEmulator": "gladly",
    "RequestRecord": "base",
}


def __getattr__(name: str) -> Any:
    """Import lazily so `python -m delivery_emulators.agillic` loads the module once."""
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
