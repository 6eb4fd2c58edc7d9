"""Unit tests of the runtime's pure pieces: settings parsing, faults, txn JSON, event shapes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from raftkv.core.messages import AppendEntries, AppendEntriesResponse, RequestVoteResponse
from raftkv.core.types import Entry, EntryKind
from raftkv.errors import BadRequest
from raftkv.kv.commands import (
    Cas,
    CompareOp,
    CompareTarget,
    Delete,
    Put,
    TxnGet,
    TxnPut,
    encode_command,
)
from raftkv.kv.model import KeyValue
from raftkv.kv.results import GetResponse, PutResponse, Result, ResultStatus
from raftkv.runtime.events import EventHub, describe_entry, message_fields
from raftkv.runtime.faults import NetFaults
from raftkv.runtime.settings import NodeSettings, PeerAddress, parse_hostport, parse_peers
from raftkv.runtime.txn_json import parse_txn, txn_result_json, value_json

PEERS = "n1=127.0.0.1:7001@http://127.0.0.1:8001,n2=127.0.0.1:7002@http://127.0.0.1:8002/"


def test_parse_peers() -> None:
    peers = parse_peers(PEERS)
    assert peers == {
        "n1": PeerAddress("127.0.0.1", 7001, "http://127.0.0.1:8001"),
        "n2": PeerAddress("127.0.0.1", 7002, "http://127.0.0.1:8002"),
    }
    assert parse_hostport("[::1]:9000") == ("::1", 9000)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "no peers"),
        ("n1=127.0.0.1:7001", "ID=HOST:PORT@http"),
        ("n1=127.0.0.1@http://x:1", "HOST:PORT"),
        ("n1=127.0.0.1:x@http://x:1", "non-numeric port"),
        ("n1=127.0.0.1:99999@http://x:1", "out of range"),
        ("n1=127.0.0.1:1@ftp://x:1", "http:// or https://"),
        ("n1=h:1@http://x:1,n1=h:2@http://x:2", "listed twice"),
        ("n 1=h:1@http://x:1", "letters, digits"),
    ],
)
def test_parse_peers_errors(text: str, needle: str) -> None:
    with pytest.raises(BadRequest, match=needle):
        parse_peers(text)


def test_settings_validation(tmp_path: Path) -> None:
    peers = parse_peers(PEERS)
    base = {"data_dir": tmp_path, "listen": ("127.0.0.1", 7001), "http": ("127.0.0.1", 8001)}
    s = NodeSettings(node_id="n1", peers=peers, slow=3.0, **base)  # type: ignore[arg-type]
    assert s.voters == ("n1", "n2")
    assert s.tick_seconds == pytest.approx(0.15)
    assert s.message_delay_seconds == pytest.approx(0.05)
    with pytest.raises(BadRequest, match="must include this node"):
        NodeSettings(node_id="n9", peers=peers, **base)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="election_ticks"):
        NodeSettings(node_id="n1", peers=peers, election_ticks=1, **base)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="slow"):
        NodeSettings(node_id="n1", peers=peers, slow=0.5, **base)  # type: ignore[arg-type]


def test_net_faults() -> None:
    faults, peers = NetFaults(), frozenset({"n2", "n3"})
    faults.apply({"drop_to": ["n2"], "delay_ms": 300}, peers)
    assert faults.blocks("n2") and not faults.blocks("n3")
    assert faults.delay_seconds == pytest.approx(0.3)
    faults.apply({"isolate": True}, peers)
    assert faults.blocks("n3")
    faults.apply({"heal": True}, peers)
    assert faults.as_json() == {
        "isolate": False,
        "drop_to": [],
        "delay_ms": 0.0,
        "loss": 0.0,
        "duplicate": 0.0,
    }
    bad: object
    for bad in (
        {},
        [],
        {"isolate": 1},
        {"drop_to": ["n9"]},
        {"delay_ms": -1},
        {"nope": 1},
        {"loss": 1.5},
        {"duplicate": True},
    ):
        with pytest.raises(BadRequest):
            faults.apply(bad, peers)


def test_net_faults_loss_and_duplication_are_drawn_with_their_probability() -> None:
    faults, peers = NetFaults(rng=random.Random(7)), frozenset({"n2"})
    assert not any(faults.loses() or faults.duplicates() for _ in range(1000))
    faults.apply({"loss": 0.25, "duplicate": 1}, peers)
    lost = sum(faults.loses() for _ in range(4000))
    assert 800 < lost < 1200  # 1000 expected; the seed makes it exact and repeatable
    assert all(faults.duplicates() for _ in range(100))
    faults.apply({"heal": True}, peers)
    assert (faults.loss, faults.duplicate) == (0.0, 0.0)


def test_parse_txn() -> None:
    txn = parse_txn(
        {
            "compare": [
                {"key": "a", "target": "value", "op": "=", "value": "x"},
                {"key": "b", "target": "mod", "op": "<", "value": 5},
            ],
            "success": [
                {"put": {"key": "a", "value_b64": "AAE="}},
                {"get": {"key": "p/", "prefix": True}},
            ],
            "failure": [{"delete": {"key": "a"}}],
        }
    )
    assert txn.compares[0].target is CompareTarget.VALUE and txn.compares[0].operand == b"x"
    assert txn.compares[1].op is CompareOp.LT and txn.compares[1].operand == 5
    assert txn.success == (TxnPut("a", b"\x00\x01"), TxnGet("p/", True))
    assert len(txn.failure) == 1


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"compare": {}},
        {"compare": [{"key": "a", "target": "size", "op": "=", "value": 1}]},
        {"compare": [{"key": "a", "target": "mod", "op": "=", "value": "1"}]},
        {"compare": [{"key": "a", "target": "value", "op": "~", "value": "1"}]},
        {"success": [{"put": {"key": "a"}}]},
        {"success": [{"put": {"key": "a", "value": "x"}, "get": {"key": "b"}}]},
        {"success": [{"incr": {"key": "a"}}]},
        {"success": [{"put": {"key": "a", "value_b64": "***"}}]},
        {"extra": 1},
    ],
)
def test_parse_txn_errors(doc: object) -> None:
    with pytest.raises(BadRequest):
        parse_txn(doc)


def test_txn_result_json() -> None:
    kv = KeyValue("k", b"\xff", 1, 2, 2)
    result = Result(ResultStatus.OK, 7, responses=(PutResponse(3), GetResponse((kv,))))
    doc = txn_result_json(result, 12)
    assert doc["revision"] == 7 and doc["index"] == 12 and doc["succeeded"] is True
    assert doc["responses"][0] == {"put": {"prev_revision": 3}}
    assert doc["responses"][1]["get"]["kvs"][0]["value_b64"] == "/w=="
    assert value_json(b"hi") == {"value": "hi"}


def test_describe_entry() -> None:
    def entry(data: bytes, kind: EntryKind = EntryKind.NORMAL) -> Entry:
        return Entry(1, 1, kind, data)

    assert describe_entry(entry(b"", EntryKind.NOOP)) == "no-op"
    assert describe_entry(entry(encode_command(Put("x", b"99")))) == "SET x=99"
    assert describe_entry(entry(encode_command(Put("x", b"1", 4)))) == "SET x=1 if rev=4"
    assert describe_entry(entry(encode_command(Delete("x")))) == "DEL x"
    assert describe_entry(entry(encode_command(Cas("x", None, b"2")))) == "CAS x: <absent> -> 2"
    assert describe_entry(entry(b"garbage")) == "invalid command"
    assert describe_entry(entry(encode_command(Put("x", b"y" * 500)))).endswith("…")


def test_message_fields() -> None:
    ae = AppendEntries(3, "n1", "n2", 4, 3, (Entry(3, 5), Entry(3, 6)), 4)
    assert message_fields("send", ae) == {
        "dir": "send",
        "type": "AppendEntries",
        "from": "n1",
        "to": "n2",
        "term": 3,
        "entries": 2,
        "index": 6,
        "commit": 4,
    }
    aer = message_fields("recv", AppendEntriesResponse(3, "n2", "n1", True, 6))
    assert aer["index"] == 6 and aer["success"] is True
    assert message_fields("drop", RequestVoteResponse(3, "n2", "n1", False))["granted"] is False


def test_event_hub_is_bounded_and_idle_without_subscribers() -> None:
    hub = EventHub("n1", queue_size=2)
    hub.publish("trace", {"event": "x"})  # nobody listens: nothing happens
    with hub.subscribe() as sub:
        assert hub.active
        for i in range(5):
            hub.publish("trace", {"i": i})
        assert sub.queue.qsize() == 2 and sub.dropped == 3
        first = sub.queue.get_nowait()
        assert first is not None
        event = json.loads(first)
        assert event["node"] == "n1" and event["kind"] == "trace" and event["i"] == 3
        assert isinstance(event["ts"], float)
    assert not hub.active
