"""`raftkv put KEY VALUE`: VALUE '-' is stdin and '@FILE' a file's bytes (values beyond the
command line's limit, binary values); --literal stores them as typed. On a real node."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cmdline.nodes import InProcess, raftkv


def value_of(kv: InProcess, key: str) -> bytes:
    code, out, err = kv("get", key)
    assert code == 0, err
    assert out.endswith(b"\n")
    return out[:-1]


def test_a_value_too_long_for_the_command_line_goes_through_a_file(
    url: str, tmp_path: Path
) -> None:
    big = os.urandom(100 * 1024).hex().encode()  # 200 KB: over Linux's 128 KiB per argument
    with pytest.raises(OSError, match="Argument list too long"):
        raftkv("put", "big", big.decode(), endpoints=url)  # why a file is needed
    (tmp_path / "big.txt").write_bytes(big)
    r = raftkv("put", "big", f"@{tmp_path / 'big.txt'}", endpoints=url)  # a real process
    assert (r.code, r.err) == (0, "") and r.text.startswith("OK (revision ")
    r = raftkv("get", "big", endpoints=url)
    assert (r.code, r.out) == (0, big + b"\n")


def test_a_value_from_stdin_keeps_every_byte(kv: InProcess) -> None:
    value = bytes(range(256)) * 800 + b"\n"  # binary, 200 KB, a trailing newline kept
    code, out, err = kv("put", "bin", "-", stdin=value)
    assert (code, err) == (0, "") and out.startswith(b"OK (revision ")
    assert value_of(kv, "bin") == value


def test_literal_stores_dash_and_at_as_typed(kv: InProcess, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"file content")
    assert kv("put", "k1", "-", "--literal", stdin=b"stdin")[0] == 0
    assert value_of(kv, "k1") == b"-"
    assert kv("put", "k2", f"@{tmp_path / 'f'}", "--literal")[0] == 0
    assert value_of(kv, "k2") == f"@{tmp_path / 'f'}".encode()
    assert kv("put", "k3", f"@{tmp_path / 'f'}")[0] == 0
    assert value_of(kv, "k3") == b"file content"


def test_an_unreadable_file_is_a_usage_error_and_nothing_is_written(
    kv: InProcess, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    code, _, err = kv("put", "k4", f"@{missing}")
    assert (code, err) == (
        2,
        f"raftkv: error: cannot read the value from {missing}: No such file or directory\n",
    )
    assert kv("get", "k4")[0] == 1  # not found: nothing was written
    code, _, err = kv("put", "k4", "@")
    assert code == 2 and "'@' needs a file name" in err


def test_cas_takes_values_the_same_way(kv: InProcess, tmp_path: Path) -> None:
    (tmp_path / "old").write_bytes(b"one\x00")
    assert kv("put", "c", f"@{tmp_path / 'old'}")[0] == 0
    code, _, err = kv("cas", "c", f"@{tmp_path / 'old'}", "-", stdin=b"two\xff")
    assert code == 0, err
    assert value_of(kv, "c") == b"two\xff"
    code, _, err = kv("cas", "c", "-", "-", stdin=b"x")
    assert code == 2 and "only one VALUE can be '-'" in err
