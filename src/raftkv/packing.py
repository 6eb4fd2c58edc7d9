"""msgpack headers written by hand, for encoders that stream a large payload into place instead
of copying it (a snapshot of a large store): the bytes are exactly what msgspec writes for the
same value (the shortest form), so a reader cannot tell the difference.
"""

from __future__ import annotations


def array_header(n: int) -> bytes:
    """The header of an n-item msgpack array (an array_like Struct of n fields)."""
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def bin_header(n: int) -> bytes:
    """The header of an n-byte msgpack bin (a bytes value)."""
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


LONGEST_BIN_HEADER = 5
