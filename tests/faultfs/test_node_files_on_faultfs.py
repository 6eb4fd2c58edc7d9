"""Files a node keeps beside its log must survive a power cut once written."""

from __future__ import annotations

import json

from raftkv.embed.options import NodeOptions, build_settings
from raftkv.faultfs import FaultMount
from raftkv.runtime.addresses import AddressBook
from raftkv.runtime.settings import NodeSettings, PeerAddress
from raftkv.runtime.shell import EMBEDDED, IDENTITY_FILE, KV_SERVER, check_identity

A1 = PeerAddress("127.0.0.1", 7001, "http://127.0.0.1:8001")
A2 = PeerAddress("127.0.0.1", 7002, "http://127.0.0.1:8002")


def test_the_address_book_survives_a_power_cut_once_saved(fs: FaultMount) -> None:
    path = fs.mountpoint / "members.json"
    book = AddressBook("n1", {"n1": A1}, path=path)
    assert book.learn("n2", A2, 10)  # saved: tmp file, fsync, rename
    fs.power_cut()
    loaded = AddressBook.load("n1", path)
    assert loaded is not None, "members.json was lost: its rename was never made durable"
    assert loaded.peers() == {"n1": A1, "n2": A2}


def test_a_new_data_dir_and_its_identity_survive_a_power_cut(fs: FaultMount) -> None:
    """The data directory a node creates, and identity.json in it, are durable once the node
    has started: their creation and rename are made durable in their directories."""
    server = NodeSettings(
        "n1", fs.mountpoint / "kv" / "n1", ("127.0.0.1", 7001), ("127.0.0.1", 8001), {"n1": A1}
    )
    check_identity(server, KV_SERVER)
    embedded = build_settings(
        "n1",
        {"n1": "127.0.0.1:7001@http://127.0.0.1:8001"},
        fs.mountpoint / "lib" / "n1",
        "raftkv",
        NodeOptions(),
    )
    check_identity(embedded, EMBEDDED)
    fs.power_cut()
    for settings in (server, embedded):
        path = settings.data_dir / IDENTITY_FILE
        assert path.exists(), f"{path} was lost in the power cut"
        assert json.loads(path.read_text())["node_id"] == "n1"
