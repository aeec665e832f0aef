"""How much memory a tifffile page or tile takes once decoded, judged before decoding it.

A page's sizes are the source's choice.  Width x height alone does not bound the decode:
tifffile allocates width x height x SamplesPerPixel x bytes per sample, and a damaged
SamplesPerPixel (fuzz seeds 92 and 93: 40,893 and 65,520 samples on a 280 x 300 label page)
made one whole-page read of ``pages`` allocate and fill 3.4-6.6 GB.  Every whole-page or
whole-tile decode in the verifier asks these first; a picture over the bound is not decoded and
the check that wanted it judges it as it judges any picture it cannot read (fail closed).
"""

from __future__ import annotations

import math

# a decoded page or tile this verifier reads whole: 16 Mpx of 4 samples of 32 bits (the largest
# page read whole, ``pages.MAX_JUDGED_PIXELS``, RGBA at 8 bits takes a quarter of this)
MAX_DECODED_BYTES = 256 << 20


def _itemsize(page) -> int:
    """Bytes per sample; a sample type tifffile has no array type for counts as 8 bytes."""
    dtype = getattr(page, "dtype", None)
    return int(dtype.itemsize) if dtype is not None else 8


def page_bytes(page) -> int:
    """Bytes of ``page`` decoded whole (every sample of every pixel of every plane)."""
    return math.prod(int(x) for x in page.shape) * _itemsize(page)


def tile_bytes(page) -> int:
    """Bytes of one decoded tile or strip of ``page`` (tifffile's ``chunks``: the shape it decodes
    one segment to, samples included where they are interleaved; an NDPI page's segments are its
    restart intervals, as tifffile cuts it by McuStarts)."""
    return math.prod(int(x) for x in page.chunks) * _itemsize(page)


def _within(size, page) -> bool:
    """Whether ``size(page)`` is at most ``MAX_DECODED_BYTES``; a page whose sizes cannot be read
    does not fit (it is not decoded)."""
    try:
        return size(page) <= MAX_DECODED_BYTES
    except (TypeError, ValueError, AttributeError, OverflowError):
        return False


def page_fits(page) -> bool:
    """Whether ``page`` decoded whole stays within ``MAX_DECODED_BYTES``."""
    return _within(page_bytes, page)


def tile_fits(page) -> bool:
    """Whether one decoded tile of ``page`` stays within ``MAX_DECODED_BYTES``."""
    return _within(tile_bytes, page)
