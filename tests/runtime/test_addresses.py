"""The address book, its tracking of the configuration in the log, and the server snapshot."""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec
import pytest

from raftkv.core.config import Config
from raftkv.core.membership import ConfChange, ConfChangeKind, Membership
from raftkv.core.raft import RaftNode
from raftkv.core.types import Role
from raftkv.errors import BadRequest, DiskError, ProtocolError
from raftkv.kv.commands import Put, encode_command
from raftkv.kv.store import KvStore
from raftkv.runtime.addresses import (
    AddressBook,
    decode_address,
    decode_context,
    encode_context,
)
from raftkv.runtime.kvhooks import ServerStore
from raftkv.runtime.membership import MembershipTracker
from raftkv.runtime.settings import PeerAddress
from raftkv.runtime.snapshot_data import (
    copy_out,
    decode_server_snapshot,
    encode_server_snapshot,
    server_snapshot_buffer,
)

A1 = PeerAddress("127.0.0.1", 7001, "http://127.0.0.1:8001")
A2 = PeerAddress("127.0.0.1", 7002, "http://127.0.0.1:8002")
A2_MOVED = PeerAddress("10.0.0.2", 7002, "http://10.0.0.2:8002")


def test_context_round_trips_and_garbage_carries_no_address() -> None:
    assert decode_context(encode_context(A2)) == A2
    assert decode_context("") is None
    assert decode_context("{not json") is None
    assert decode_context('{"raft_address": "nohost", "http_url": "http://h:1"}') is None
    with pytest.raises(BadRequest, match="http_url"):
        decode_address({"raft_address": "h:1", "http_url": "ftp://h"}, "member n2")


def test_book_learns_newer_news_only_saves_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "members.json"
    book = AddressBook("n1", {"n1": A1}, path=path)
    seen: list[dict[str, PeerAddress]] = []
    book.on_change(lambda b: seen.append(b.peers()))
    assert book.learn("n2", A2, 10)
    assert not book.learn("n2", A2_MOVED, 5)  # an older entry does not overrule a newer one
    assert book.learn("n2", A2_MOVED, 12)
    assert seen == [{"n1": A1, "n2": A2}, {"n1": A1, "n2": A2_MOVED}]
    loaded = AddressBook.load("n1", path)
    assert loaded is not None and loaded.peers() == {"n1": A1, "n2": A2_MOVED}
    assert loaded.bootstrap == Membership.of(("n1",))
    # Only nodes learned before the applied configuration are forgotten; never this node.
    book.learn("n3", A2, 20)
    assert book.keep_only(["n1"], 15) == ["n2"]
    assert set(book.peers()) == {"n1", "n3"}
    assert book.keep_only([], 25) == ["n3"] and set(book.peers()) == {"n1"}
    # A snapshot's book adds unknown nodes and corrects what an older entry told, but an
    # address given locally (index 0, e.g. a relay in --peers) stays.
    book.learn("n9", A2, 20)
    book.merge_snapshot({"n1": A2, "n2": A2, "n9": A2_MOVED}, 30)
    assert book.peers() == {"n1": A1, "n2": A2, "n9": A2_MOVED}
    assert book.keep_only(["n1", "n2"], 30) == ["n9"]
    path.write_text("{}")
    with pytest.raises(DiskError, match="not a valid members file"):
        AddressBook.load("n1", path)
    assert AddressBook.load("n1", tmp_path / "absent.json") is None


def _drive(raft: RaftNode) -> None:
    """Carry out every Ready, each write durable at once (a single voter commits alone)."""
    while raft.has_ready():
        rd = raft.ready()
        if rd.persist is not None and rd.persist.ack is not None:
            raft.persisted(rd.persist.ack)


def _leader() -> RaftNode:
    raft = RaftNode("n1", ["n1"], Config(), random.Random(1))
    raft.campaign()
    _drive(raft)
    assert raft.role is Role.LEADER
    return raft


def test_tracker_learns_on_append_forgets_once_applied(tmp_path: Path) -> None:
    raft = _leader()
    book = AddressBook("n1", {"n1": A1}, path=tmp_path / "members.json")
    removed: list[int] = []
    tracker = MembershipTracker(book, removed.append)
    tracker.update(raft)
    raft.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, "n2", encode_context(A2)))
    tracker.update(raft)  # appended, not yet applied: the address is known already
    assert book.get("n2") == A2
    _drive(raft)
    tracker.update(raft)
    saved = json.loads((tmp_path / "members.json").read_text())
    assert saved["peers"]["n2"]["http_url"] == A2.http_url
    raft.propose_conf_change(ConfChange(ConfChangeKind.REMOVE, "n2"))
    tracker.update(raft)
    assert book.get("n2") == A2  # n2 may still have to be answered until this applies
    _drive(raft)
    tracker.update(raft)
    assert book.get("n2") is None and removed == [] and not tracker.removed


def test_tracker_reports_this_nodes_removal_only_from_a_remove_entry() -> None:
    raft = _leader()
    raft.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, "n2", encode_context(A2)))
    _drive(raft)
    # A follower's view: n2 got a snapshot from before it was added: not a removal.
    book = AddressBook("n2", {"n2": A2})
    removed: list[int] = []
    learner = RaftNode("n2", [], Config(), random.Random(2), learners=["n2"])
    tracker = MembershipTracker(book, removed.append)
    tracker.update(learner)
    assert removed == []
    # The leader's own log: removing a member that is not us is not our removal either.
    mine = MembershipTracker(AddressBook("n1", {"n1": A1}), removed.append)
    raft.propose_conf_change(ConfChange(ConfChangeKind.REMOVE, "n2"))
    _drive(raft)
    mine.update(raft)
    assert removed == [] and not mine.removed


def test_server_snapshot_carries_the_book_and_reads_plain_kv_images() -> None:
    kv = KvStore()
    kv.apply(1, b"")  # malformed command: still advances the store
    image = kv.snapshot()
    data = encode_server_snapshot(image, {"n1": A1, "n2": A2})
    assert decode_server_snapshot(data) == (image, {"n1": A1, "n2": A2})
    assert decode_server_snapshot(image) == (image, {})
    with pytest.raises(ProtocolError):
        decode_server_snapshot(b"garbage")
    with pytest.raises(ProtocolError):
        decode_server_snapshot(data[:6])


@pytest.mark.parametrize("size", [0, 200, 255, 256, 65535, 65536, 300_000])
def test_server_snapshot_encoded_in_place_is_msgspecs_encoding(size: int) -> None:
    """The image is encoded into the snapshot's own buffer (no copy), with the headers
    written in front of it afterwards: the bytes are msgspec's (shortest headers)."""
    image = b"RKVS" + b"i" * size
    book = {"n1": A1, "n2": A2}
    expected = b"RKSV\x01" + msgspec.msgpack.encode(
        [image, {p: [a.raft_host, a.raft_port, a.http_url] for p, a in book.items()}]
    )
    assert encode_server_snapshot(image, book) == expected
    assert copy_out(server_snapshot_buffer(lambda buf: buf.extend(image), book)) == expected
    assert decode_server_snapshot(expected) == (image, book)


def test_server_store_view_encodes_what_the_store_holds_then() -> None:
    book = AddressBook("n1", {"n1": A1, "n2": A2})
    store = ServerStore(book)
    for i in range(1, 2001):
        store.apply(i, encode_command(Put(f"k{i:04d}", b"v" * 100)))
    expected = encode_server_snapshot(store.snapshot(), book.peers())
    view = store.snapshot_view()
    store.apply(2001, encode_command(Put("later", b"x")))
    assert view.encode() == expected


@pytest.mark.parametrize("size", [0, 1, 5 * 1024 * 1024 + 3])
def test_copy_out_copies_exactly(size: int) -> None:
    buf = bytearray(b"head..." + bytes(range(256)) * (size // 256 + 1))[: size + 7]
    view = memoryview(buf)[7:]
    before = bytes(view)
    out = copy_out(view)
    assert type(out) is bytes and out == before
    del view
    buf[7:] = b"\xff" * size  # a copy: the buffer may change afterwards
    assert out == before
