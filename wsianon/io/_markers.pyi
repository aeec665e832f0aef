from collections.abc import Buffer

def positions(buf: Buffer, /) -> bytes:
    """JPEG marker positions in ``buf`` (see wsianon.io.jpeg.marker_positions), as native int64 values."""

def pairs_and_restarts(buf: Buffer, /) -> tuple[bytes, bytes]:
    """Positions of 0xFF 0xFF pairs and of restart markers in ``buf`` (see
    wsianon.io.jpeg.pairs_and_restarts), each as native int64 values."""
