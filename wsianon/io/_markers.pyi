from collections.abc import Buffer

def positions(buf: Buffer, /) -> bytes:
    """JPEG marker positions in ``buf`` (see wsianon.io.jpeg.marker_positions), as native int64 values."""

def pairs_and_restarts(buf: Buffer, /) -> tuple[bytes, bytes]:
    """Positions of 0xFF 0xFF pairs and of restart markers in ``buf`` (see
    wsianon.io.jpeg.pairs_and_restarts), each as native int64 values."""

def prefix_mask(buf: Buffer, starts: Buffer, prefix: Buffer, /) -> bytes:
    """For each native int64 position in ``starts``: 1 where ``buf`` holds ``prefix`` there (wholly
    inside ``buf``), else 0 (see wsianon.io.jpeg.prefix_mask)."""

def index(buf: Buffer, /) -> tuple[bytes, bytes, bytes]:
    """``positions(buf)`` and ``pairs_and_restarts(buf)`` from one pass (see
    wsianon.io.jpeg.marker_index)."""
