"""Seed a new node's data directory from a snapshot file (a backup from GET /v1/snapshot).

The restored node starts a NEW configuration: the members given (as `raftkv serve --peers`),
all voters, whatever the backed-up cluster had. Restore every member of the new cluster from
the same file with the same members, or restore one and grow the cluster with
`raftkv serve --join` + `raftkv member promote`. The log starts after the snapshot's index,
in its term, so restored replicas agree on everything the backup holds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from raftkv.core.membership import Membership
from raftkv.core.types import HardState, Snapshot
from raftkv.errors import BadRequest
from raftkv.kv.store import KvStore
from raftkv.runtime.addresses import MEMBERS_FILE, AddressBook
from raftkv.runtime.settings import PeerAddress
from raftkv.runtime.shell import IDENTITY_FILE
from raftkv.runtime.snapshot_data import decode_server_snapshot, encode_server_snapshot
from raftkv.storage import LogStorage
from raftkv.storage.snapshot import parse_snapshot


@dataclass(frozen=True, slots=True)
class Restored:
    index: int
    term: int
    keys: int
    revision: int


def describe(path: Path) -> tuple[Snapshot, KvStore]:
    """Read and check a snapshot file: (the snapshot, its store). CorruptionError if bad."""
    snap = parse_snapshot(path.read_bytes(), path)
    image, _ = decode_server_snapshot(snap.data)
    return snap, KvStore.restore(image)


def restore_data_dir(
    source: Path,
    data_dir: Path,
    node_id: str,
    peers: dict[str, PeerAddress],
    cluster_id: str,
) -> Restored:
    if node_id not in peers:
        raise BadRequest(f"--peers must include this node ({node_id!r})")
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BadRequest(f"{data_dir} is not empty: restore into a new data directory")
    snap, kv = describe(source)
    image, _ = decode_server_snapshot(snap.data)
    members = Membership.of(tuple(peers))
    seeded = Snapshot(
        snap.index, snap.term, encode_server_snapshot(image, peers), members.voters, ()
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    storage, _ = LogStorage.open(data_dir / "raft")
    try:
        storage.install_snapshot(seeded)
        storage.save(HardState(snap.term, None, snap.index), ())
    finally:
        storage.close()
    AddressBook(node_id, peers, path=data_dir / MEMBERS_FILE, bootstrap=members).save()
    identity = {"cluster_id": cluster_id, "node_id": node_id}
    tmp = data_dir / (IDENTITY_FILE + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(identity) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, data_dir / IDENTITY_FILE)
    return Restored(snap.index, snap.term, len(kv), kv.revision)
