"""The peer codec: round trips, arbitrary splits, and garbage that is only ever a ProtocolError."""

from __future__ import annotations

import struct
import tracemalloc

import google_crc32c
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.core.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftkv.core.types import Entry, EntryKind
from raftkv.errors import ProtocolError, TooLarge, WrongCluster
from raftkv.wire import (
    DEFAULT_MAX_FRAME_SIZE,
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    FrameType,
    Handshake,
    MessageBatch,
    check_handshake,
    encode_chunked,
    encode_handshake,
    encode_messages,
)

BINARY = bytes(range(256)) + b"\x00\xff" * 10

ONE_OF_EACH: list[Message] = [
    RequestVote(3, "n1", "n2", last_log_index=10, last_log_term=2),
    RequestVote(4, "n1", "n2", last_log_index=0, last_log_term=0, pre_vote=True, transfer=True),
    RequestVoteResponse(3, "n2", "n1", granted=True),
    RequestVoteResponse(3, "n2", "n1", granted=False, pre_vote=True),
    AppendEntries(
        5,
        "n1",
        "n3",
        prev_log_index=7,
        prev_log_term=4,
        entries=(
            Entry(5, 8, EntryKind.NOOP),
            Entry(5, 9, EntryKind.NORMAL, BINARY),
            Entry(5, 10, EntryKind.CONFIG, b"\x00"),
        ),
        commit=7,
    ),
    AppendEntries(5, "n1", "n3", prev_log_index=0, prev_log_term=0, entries=(), commit=0),
    AppendEntriesResponse(5, "n3", "n1", success=True, index=10),
    AppendEntriesResponse(5, "n3", "n1", success=False, index=7, hint_index=3, hint_term=2),
    Heartbeat(5, "n1", "n2", commit=9, read_seq=17),
    HeartbeatResponse(5, "n2", "n1", read_seq=17),
    TimeoutNow(6, "n1", "n2"),
    InstallSnapshot(7, "n1", "n2", index=100, snapshot_term=6, voters=("n1", "n2"), data=BINARY),
]


def _frame(
    payload: bytes,
    *,
    magic: bytes = MAGIC,
    version: int = PROTOCOL_VERSION,
    kind: int = FrameType.MESSAGES,
    length: int | None = None,
    crc: int | None = None,
) -> bytes:
    n = len(payload) if length is None else length
    c = int(google_crc32c.value(payload)) if crc is None else crc
    return struct.pack(">2sBBII", magic, version, kind, n, c) + payload


def _stream() -> tuple[bytes, list[Frame]]:
    frames: list[Frame] = [
        Handshake("c1", "n1", PROTOCOL_VERSION),
        MessageBatch(tuple(ONE_OF_EACH[:4])),
        MessageBatch(()),
        MessageBatch(tuple(ONE_OF_EACH[4:])),
    ]
    data = encode_handshake("c1", "n1") + b"".join(
        encode_messages(f.messages) for f in frames[1:] if isinstance(f, MessageBatch)
    )
    return data, frames


# --- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("msg", ONE_OF_EACH, ids=lambda m: type(m).__name__)
def test_every_message_type_round_trips(msg: Message) -> None:
    assert FrameDecoder().feed(encode_messages([msg])) == [MessageBatch((msg,))]


def test_every_message_type_is_covered() -> None:
    assert {type(m) for m in ONE_OF_EACH} == set(MESSAGE_TYPES)


def test_handshake_round_trips_and_validates() -> None:
    [hs] = FrameDecoder().feed(encode_handshake("cluster-a", "n2"))
    assert hs == Handshake("cluster-a", "n2", PROTOCOL_VERSION)
    assert isinstance(hs, Handshake)
    assert check_handshake(hs, "cluster-a") is hs
    assert check_handshake(hs, "cluster-a", node_id="n2") is hs
    with pytest.raises(WrongCluster, match="cluster-b"):
        check_handshake(hs, "cluster-b")
    with pytest.raises(ProtocolError, match="expected peer 'n3'"):
        check_handshake(hs, "cluster-a", node_id="n3")
    with pytest.raises(ProtocolError, match="protocol version 99"):
        check_handshake(Handshake("cluster-a", "n2", 99), "cluster-a")
    with pytest.raises(ProtocolError, match="empty node id"):
        check_handshake(Handshake("cluster-a", "", PROTOCOL_VERSION), "cluster-a")


def test_frame_header_layout() -> None:
    data = encode_messages([ONE_OF_EACH[0]])
    magic, version, kind, length, crc = struct.unpack(">2sBBII", data[:HEADER_SIZE])
    payload = data[HEADER_SIZE:]
    assert (magic, version, kind, length) == (b"RK", 1, FrameType.MESSAGES, len(payload))
    assert crc == google_crc32c.value(payload)


names = st.text(min_size=1, max_size=8)
u64 = st.integers(0, 2**63 - 1)
entries = st.builds(Entry, u64, u64, st.sampled_from(EntryKind), st.binary(max_size=64))
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(RequestVote, u64, names, names, u64, u64, st.booleans(), st.booleans()),
    st.builds(RequestVoteResponse, u64, names, names, st.booleans(), st.booleans()),
    st.builds(
        AppendEntries, u64, names, names, u64, u64, st.tuples(entries, entries) | st.just(()), u64
    ),
    st.builds(AppendEntriesResponse, u64, names, names, st.booleans(), u64, u64, u64),
    st.builds(Heartbeat, u64, names, names, u64, u64),
    st.builds(HeartbeatResponse, u64, names, names, u64),
    st.builds(TimeoutNow, u64, names, names),
    st.builds(
        InstallSnapshot, u64, names, names, u64, u64, st.lists(names).map(tuple), st.binary()
    ),
)


@given(st.lists(st.lists(messages, max_size=5), min_size=1, max_size=4), st.data())
def test_random_batches_round_trip_at_random_splits(
    batches: list[list[Message]], data: st.DataObject
) -> None:
    stream = b"".join(encode_messages(b) for b in batches)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder = FrameDecoder()
    out: list[Frame] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += decoder.feed(stream[a:b])
    assert out == [MessageBatch(tuple(b)) for b in batches]
    assert decoder.buffered == 0


# --- splitting ------------------------------------------------------------------------


def test_stream_split_at_every_byte_boundary() -> None:
    data, frames = _stream()
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(data[:cut]) + decoder.feed(data[cut:]) == frames
        assert decoder.buffered == 0


def test_stream_fed_one_byte_at_a_time() -> None:
    data, frames = _stream()
    decoder = FrameDecoder()
    out: list[Frame] = []
    for i in range(len(data)):
        out += decoder.feed(memoryview(data)[i : i + 1])
    assert out == frames


# --- garbage --------------------------------------------------------------------------

_batch = encode_messages([ONE_OF_EACH[0]])[HEADER_SIZE:]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_frame(_batch, magic=b"GE"), "bad magic"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad magic"),
        (_frame(_batch, version=2), "unknown protocol version 2"),
        (_frame(_batch, kind=7), "unknown frame type 7"),
        (_frame(b"", length=DEFAULT_MAX_FRAME_SIZE + 1), "exceeds the limit"),
        (_frame(_batch, crc=12345), "checksum mismatch"),
        (_frame(b"\xc1"), "undecodable MESSAGES payload"),
        (_frame(_batch, kind=FrameType.HANDSHAKE), "undecodable HANDSHAKE payload"),
        (_frame(b"\x91\x93\xa2rv\x01\x02"), "undecodable MESSAGES payload"),
        (_frame(b"\x90\x90"), "undecodable MESSAGES payload"),  # trailing bytes
        (_frame(b""), "undecodable MESSAGES payload"),
    ],
)
def test_garbage_is_a_clear_protocol_error_and_poisons(data: bytes, message: str) -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match=message):
        decoder.feed(data)
    assert decoder.error is not None
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.feed(encode_handshake("c1", "n1"))


def test_good_frames_before_garbage_still_poison() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_handshake("c", "n")) != []
    with pytest.raises(ProtocolError):
        decoder.feed(b"XXXXXXXXXXXXXXXX")
    with pytest.raises(ProtocolError):
        decoder.feed(b"")


def test_oversized_length_rejected_from_the_header_alone_without_allocating() -> None:
    header = _frame(b"", length=0xFFFF_FFFF)
    decoder = FrameDecoder()
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="4294967295 bytes exceeds"):
            decoder.feed(header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_max_frame_size_is_configurable() -> None:
    small = FrameDecoder(max_frame_size=16)
    with pytest.raises(ProtocolError, match="limit of 16"):
        small.feed(encode_messages(ONE_OF_EACH))
    with pytest.raises(TooLarge):
        encode_messages(ONE_OF_EACH, max_frame_size=16)
    with pytest.raises(ValueError, match="max_frame_size"):
        FrameDecoder(max_frame_size=0)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_protocol_error(data: bytes) -> None:
    decoder = FrameDecoder(max_frame_size=1024)
    try:
        frames = decoder.feed(data)
    except ProtocolError:
        return
    assert all(isinstance(f, Handshake | MessageBatch) for f in frames)


@st.composite
def mutated_stream(draw: st.DrawFn) -> bytes:
    data = bytearray(_stream()[0])
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data) - 1))
        match draw(st.sampled_from(["flip", "insert", "delete", "set"])):
            case "flip":
                data[i] ^= 1 << draw(st.integers(0, 7))
            case "insert":
                data[i:i] = draw(st.binary(min_size=1, max_size=4))
            case "delete":
                del data[i : i + draw(st.integers(1, 4))]
            case _:
                data[i] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=500)
@given(mutated_stream(), st.integers(1, 64))
def test_mutated_frames_decode_or_raise_protocol_error(data: bytes, chunk: int) -> None:
    decoder = FrameDecoder()
    valid = _stream()[1]
    try:
        for i in range(0, len(data), chunk):
            for frame in decoder.feed(data[i : i + chunk]):
                # A mutation that survives CRC32C must be a whole-frame edit, so a frame we
                # hand out is always one that was really sent.
                assert frame in valid
                if isinstance(frame, Handshake):
                    check_handshake(frame, "c1")
    except (ProtocolError, WrongCluster):
        return


# --- payloads that pass the checksum but are still garbage (a buggy or hostile peer) ------

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.sampled_from(["rv", "rvr", "ae", "aer", "hb", "hbr", "tn", "is", "n1"]),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=30,
)


def _decode_or_protocol_error(kind: int, payload: bytes) -> None:
    try:
        frames = FrameDecoder().feed(_frame(payload, kind=kind))
    except ProtocolError:
        return
    if kind == FrameType.CHUNK and payload[:1] == b"\x00":
        assert frames == []  # the first of a run of chunks: more must follow
        return
    assert len(frames) == 1
    assert isinstance(frames[0], Handshake | MessageBatch)


@settings(max_examples=500)
@given(st.sampled_from(FrameType), msgpack_values)
def test_checksummed_random_msgpack_is_decoded_or_protocol_error(
    kind: FrameType, value: object
) -> None:
    try:
        payload = msgspec.msgpack.encode(value)
    except (OverflowError, msgspec.EncodeError):
        return  # an int out of msgpack range: not a payload anyone can send
    _decode_or_protocol_error(kind, payload)
    _decode_or_protocol_error(kind, msgspec.msgpack.encode([value]))


@settings(max_examples=500)
@given(st.sampled_from(ONE_OF_EACH), st.data())
def test_checksummed_mutated_payload_is_decoded_or_protocol_error(
    msg: Message, data: st.DataObject
) -> None:
    payload = bytearray(encode_messages([msg])[HEADER_SIZE:])
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    _decode_or_protocol_error(FrameType.MESSAGES, bytes(payload))


def test_checksummed_invalid_utf8_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="undecodable HANDSHAKE"):
        FrameDecoder().feed(_frame(b"\x93\xa1\xff\xa1n\x01", kind=FrameType.HANDSHAKE))


# --- chunked messages (a snapshot bigger than one frame) ----------------------------------


def _big_snapshot(size: int) -> InstallSnapshot:
    data = bytes(range(256)) * (size // 256 + 1)
    return InstallSnapshot(3, "n1", "n2", 900, 2, ("n1", "n2"), data[:size], ("n3",))


@pytest.mark.parametrize("frame_size", [2, 3, 100, 4096])
def test_a_message_too_big_for_one_frame_goes_as_chunks(frame_size: int) -> None:
    msg = _big_snapshot(10_000)
    with pytest.raises(TooLarge):
        encode_messages([msg], max_frame_size=frame_size)
    frames = encode_chunked([msg], max_frame_size=frame_size)
    assert len(frames) > 1
    assert all(len(f) <= HEADER_SIZE + frame_size for f in frames)
    assert {f[3] for f in frames} == {FrameType.CHUNK}
    tail = encode_messages([Heartbeat(3, "n1", "n2", 5)])
    stream = b"".join(frames) + tail
    dec = FrameDecoder(frame_size if frame_size > 100 else 4096)
    got: list[Frame] = []
    for i in range(0, len(stream), 777):  # chunks arrive split anywhere
        got += dec.feed(stream[i : i + 777])
    assert got == [MessageBatch((msg,)), MessageBatch((Heartbeat(3, "n1", "n2", 5),))]
    assert dec.buffered == 0


def test_chunked_message_limits_and_garbage_are_protocol_errors() -> None:
    frames = encode_chunked([_big_snapshot(5000)], max_frame_size=1000)
    with pytest.raises(TooLarge):
        encode_chunked([_big_snapshot(5000)], max_frame_size=1000, max_message_size=4000)
    dec = FrameDecoder(1000, max_message_size=4000)  # the receiver's limit holds too
    with pytest.raises(ProtocolError, match="chunked message exceeds"):
        dec.feed(b"".join(frames))
    # Another frame type in the middle of a run of chunks.
    dec = FrameDecoder()
    with pytest.raises(ProtocolError, match="inside a run of CHUNK frames"):
        dec.feed(frames[0] + encode_messages([Heartbeat(3, "n1", "n2", 5)]))
    # A chunk without a valid flag byte.
    payload = b"\x07abc"
    bad = struct.pack(">2sBBII", MAGIC, PROTOCOL_VERSION, FrameType.CHUNK, len(payload), 0)
    bad = bad[:8] + struct.pack(">I", google_crc32c.value(payload)) + payload
    with pytest.raises(ProtocolError, match="flag byte"):
        FrameDecoder().feed(bad)
