"""Hand-written msgpack headers are byte for byte what msgspec writes (readers cannot tell)."""

from __future__ import annotations

import msgspec
import pytest

from raftkv.packing import LONGEST_BIN_HEADER, array_header, bin_header

SIZES = [0, 1, 15, 16, 255, 256, 65535, 65536, 70000]


@pytest.mark.parametrize("n", SIZES)
def test_bin_header_is_msgspecs(n: int) -> None:
    data = b"x" * n
    encoded = msgspec.msgpack.encode(data)
    assert encoded == bin_header(n) + data
    assert len(bin_header(n)) <= LONGEST_BIN_HEADER


@pytest.mark.parametrize("n", SIZES)
def test_array_header_is_msgspecs(n: int) -> None:
    items = [0] * n
    assert msgspec.msgpack.encode(items) == array_header(n) + b"\x00" * n
