"""Per-format knowledge: native redactors (one module per vendor family) and the DICOM route.

``native_converters()`` lists the native redactors in detection order.
"""

from __future__ import annotations

import importlib

from wsianon.converters.base import NativeConverter

# module path, class name — detection order matters: specific formats before generic TIFF
_NATIVE = [
    ("wsianon.converters.ndpi", "NdpiConverter"),
    ("wsianon.converters.mrxs", "MrxsConverter"),
    ("wsianon.converters.ventana", "VentanaConverter"),
    ("wsianon.converters.philips", "PhilipsConverter"),
    ("wsianon.converters.isyntax", "ISyntaxConverter"),
    ("wsianon.converters.leica", "LeicaConverter"),
    ("wsianon.converters.aperio", "AperioConverter"),
]
_GENERIC = ("wsianon.converters.generic", "GenericTiffConverter")

_cache: list[NativeConverter] | None = None


def _load(mod: str, cls: str) -> NativeConverter:
    return getattr(importlib.import_module(mod), cls)()


def native_converters() -> list[NativeConverter]:
    global _cache
    if _cache is None:
        _cache = [_load(m, k) for m, k in _NATIVE]
    return _cache


def generic_converter() -> NativeConverter:
    return _load(*_GENERIC)


def by_name(name: str) -> NativeConverter:
    for c in native_converters():
        if c.name == name:
            return c
    g = generic_converter()
    if g.name == name:
        return g
    raise KeyError(name)
