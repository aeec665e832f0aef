"""3DHistech MRXS: the native redactor and the parts of the format it reads.

Modules, along the format's own pieces:

* ``redactor.py`` — :class:`MrxsConverter` (sniff; analyze, the one walk that decides;
  inspect and plan derived from it, as short steps) and :func:`keyed_slide_id`;
* ``slide.py`` — opening and checking a slide (``NAME.mrxs`` + ``NAME/``);
* ``ini.py`` — Slidedat.ini as lines (bytes we do not change survive);
* ``index.py`` — Index.dat records: parse, and the patches that rewrite them;
* ``datafile.py`` — Data-file blobs and headers;
* ``images.py`` — the associated images (label, macro, whole slide, thumbnail);
* ``rules.py`` — what the profile ``wsianon/profiles/data/mrxs.json`` decides.
* ``closed_world.py`` — the closed-world post-pass over the plan (ini keys and sections,
  unreferenced Index.dat and Data-file bytes), called by :mod:`wsianon.converters.closed_world`.

Format-neutral JPEG helpers live in :mod:`wsianon.io.jpeg_images`.  The names other
modules and the tests import from ``wsianon.converters.mrxs`` are re-exported here, and the
package declares the format's :class:`FormatSpec`.
"""

from __future__ import annotations

from wsianon.converters.mrxs.ini import IniDoc, IniLine
from wsianon.converters.mrxs.redactor import MrxsConverter, keyed_slide_id
from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec
from wsianon.io.jpeg_images import jpeg_text_segments
from wsianon.verify.formats import mrxs as checks

SPEC: FormatSpec = FormatSpec.native(
    MrxsConverter(),
    verification=checks,
    dicom=DicomRoute(DicomVia.WSIDICOMIZER),
    closed_world=ClosedWorld.MRXS,
)

__all__ = ["IniDoc", "IniLine", "MrxsConverter", "SPEC", "jpeg_text_segments", "keyed_slide_id"]
