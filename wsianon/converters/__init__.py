"""Per-format knowledge: one package per format (``converters/<format>/``: its redactor and its
:class:`~wsianon.converters.registry.FormatSpec`), the format table (``registry.py``) and the
DICOM route (``converters/dicom/``).

``native_converters()`` lists the native redactors in detection order; ``spec_of(name)`` gives a
format's spec.
"""

from __future__ import annotations

from wsianon.converters.registry import FORMATS, by_name, generic_converter, native_converters, spec_of

__all__ = ["FORMATS", "by_name", "generic_converter", "native_converters", "spec_of"]
