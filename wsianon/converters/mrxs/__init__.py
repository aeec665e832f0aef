"""3DHistech MRXS: the native redactor and the pieces of the format it reads.

``redactor.py`` holds :class:`MrxsConverter`; the names other modules and the tests
import from ``wsianon.converters.mrxs`` are re-exported here.
"""

from __future__ import annotations

from wsianon.converters.mrxs.redactor import IniDoc, IniLine, MrxsConverter, jpeg_text_segments, keyed_slide_id

__all__ = ["IniDoc", "IniLine", "MrxsConverter", "jpeg_text_segments", "keyed_slide_id"]
