"""Hamamatsu NDPI on the DICOM route: how the pyramid is carried (which pages are levels: ``verify.shown_levels``)."""

from __future__ import annotations

PASSTHROUGH_NOTE = "pyramid re-tiled without re-encoding: NDPI strips cut into frames by joining their JPEG restart intervals (entropy-coded data untouched)"
