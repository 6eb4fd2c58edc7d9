"""Files a node keeps beside its log must survive a power cut once written."""

from __future__ import annotations

from raftkv.faultfs import FaultMount
from raftkv.runtime.addresses import AddressBook
from raftkv.runtime.settings import PeerAddress

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
