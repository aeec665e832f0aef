from collections.abc import Buffer

def positions(buf: Buffer, /) -> bytes:
    """JPEG marker positions in ``buf`` (see wsianon.io.jpeg.marker_positions), as native int64 values."""
