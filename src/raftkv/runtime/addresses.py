"""The address book: where each member listens (Raft address, HTTP URL), kept in step with the
replicated configuration.

Where addresses come from:
- a founding node's --peers; a joining node's answer to GET /v1/members from the cluster;
- the context of every CONFIG entry that adds a node (ConfChange.context, encoded here);
- a snapshot from the leader (its data carries the book, see snapshot_data.py).

An address is learned as soon as its CONFIG entry is in the log (the leader replicates to the
new node at once) and forgotten only once a later configuration without that node is applied
(until then the node may still lead, and followers must answer it). The book is saved to
DATA_DIR/members.json on every change, with the configuration this node started from, so a
restarted node (also one that joined later) knows its peers before it hears from anyone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkv.core.membership import Membership
from raftkv.errors import BadRequest, DiskError
from raftkv.runtime.settings import PeerAddress, parse_hostport
from raftkv.storage import fsutil

MEMBERS_FILE = "members.json"
FORMAT_VERSION = 1


def encode_address(addr: PeerAddress) -> dict[str, str]:
    return {"raft_address": f"{addr.raft_host}:{addr.raft_port}", "http_url": addr.http_url}


def decode_address(doc: Any, what: str) -> PeerAddress:
    """{"raft_address": "HOST:PORT", "http_url": "http://..."} -> PeerAddress (BadRequest)."""
    if not isinstance(doc, dict):
        raise BadRequest(f"{what}: expected an object with raft_address and http_url")
    raft, url = doc.get("raft_address"), doc.get("http_url")
    if not isinstance(raft, str) or not isinstance(url, str):
        raise BadRequest(f"{what}: raft_address and http_url must be strings")
    host, port = parse_hostport(raft, f"{what} raft_address")
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise BadRequest(f"{what}: http_url {url!r} must be an http:// or https:// URL")
    return PeerAddress(host, port, url)


def encode_context(addr: PeerAddress) -> str:
    """The ConfChange.context of an ADD_LEARNER: the new node's addresses, as JSON."""
    return json.dumps(encode_address(addr), separators=(",", ":"), sort_keys=True)


def decode_context(context: str) -> PeerAddress | None:
    """The addresses in a ConfChange.context; None when it carries none (or garbage)."""
    if not context:
        return None
    try:
        return decode_address(json.loads(context), "context")
    except (ValueError, BadRequest):
        return None


@dataclass(frozen=True, slots=True)
class _Known:
    address: PeerAddress
    index: int  # the log index that told us (0: configuration or a snapshot)


class AddressBook:
    """id -> PeerAddress. Changes call on_change(book) (the transport reconnects) and save."""

    def __init__(
        self,
        self_id: str,
        peers: Mapping[str, PeerAddress],
        *,
        path: Path | None = None,
        bootstrap: Membership | None = None,
    ) -> None:
        self.self_id = self_id
        self._known = {p: _Known(a, 0) for p, a in peers.items()}
        self._path = path
        self.bootstrap = bootstrap or Membership.of(tuple(peers))
        self._listeners: list[Callable[[AddressBook], None]] = []

    # --- queries ----------------------------------------------------------------------

    def get(self, node_id: str) -> PeerAddress | None:
        known = self._known.get(node_id)
        return None if known is None else known.address

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._known

    def peers(self) -> dict[str, PeerAddress]:
        """Every known node, this one included."""
        return {p: k.address for p, k in sorted(self._known.items())}

    def others(self) -> dict[str, PeerAddress]:
        return {p: a for p, a in self.peers().items() if p != self.self_id}

    # --- changes ----------------------------------------------------------------------

    def on_change(self, listener: Callable[[AddressBook], None]) -> None:
        self._listeners.append(listener)

    def learn(self, node_id: str, address: PeerAddress, index: int = 0) -> bool:
        """Record node_id's address as told by the entry at index. True if anything changed."""
        known = self._known.get(node_id)
        if known is not None and known.index > index:
            return False  # a newer entry already told us
        if known is not None and known.address == address:
            self._known[node_id] = _Known(address, index)
            return False
        self._known[node_id] = _Known(address, index)
        self._changed()
        return True

    def forget(self, node_id: str) -> None:
        """Drop node_id (an add that did not happen). Never this node itself."""
        if node_id != self.self_id and self._known.pop(node_id, None) is not None:
            self._changed()

    def keep_only(self, members: Iterable[str], index: int) -> list[str]:
        """The configuration applied at index holds only members: forget every other node
        learned before index (one learned later belongs to a newer configuration)."""
        keep = set(members) | {self.self_id}
        gone = [p for p, k in self._known.items() if p not in keep and k.index <= index]
        for p in gone:
            del self._known[p]
        if gone:
            self._changed()
        return gone

    def merge_snapshot(self, peers: Mapping[str, PeerAddress], index: int) -> None:
        """A snapshot at index carries the leader's book: learn the nodes we do not know. An
        address we were given locally (--peers, the join answer, members.json) is kept: it
        may deliberately differ from the leader's (a relay, another network path)."""
        changed = False
        for p, addr in peers.items():
            known = self._known.get(p)
            if known is None or (0 < known.index < index and known.address != addr):
                self._known[p] = _Known(addr, index)
                changed = True
        if changed:
            self._changed()

    def _changed(self) -> None:
        self.save()
        for listener in self._listeners:
            listener(self)

    # --- persistence ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "bootstrap": {
                "voters": list(self.bootstrap.voters),
                "learners": list(self.bootstrap.learners),
            },
            "peers": {p: encode_address(a) for p, a in self.peers().items()},
        }

    def save(self) -> None:
        """Write members.json atomically (tmp + fsync + rename + directory fsync). DiskError on
        failure."""
        if self._path is None:
            return
        text = json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"
        try:
            fsutil.atomic_write(self._path, text.encode())
        except OSError as e:
            raise fsutil.write_error(f"node {self.self_id}", self._path, e) from e

    @classmethod
    def load(cls, self_id: str, path: Path) -> AddressBook | None:
        """The book saved in path, or None if there is none. DiskError if unreadable."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise DiskError(f"node {self_id}: cannot read {path}: {e}", str(path)) from e
        try:
            doc = json.loads(text)
            if doc["version"] != FORMAT_VERSION:
                raise DiskError(
                    f"node {self_id}: {path}: unsupported format version {doc['version']}",
                    str(path),
                )
            peers = {str(p): decode_address(a, f"{path} peer {p}") for p, a in doc["peers"].items()}
            boot = doc["bootstrap"]
            bootstrap = Membership.of(
                tuple(map(str, boot["voters"])), tuple(map(str, boot["learners"]))
            )
        except (ValueError, KeyError, TypeError, AttributeError, BadRequest) as e:
            raise DiskError(
                f"node {self_id}: {path} is not a valid members file ({e})", str(path)
            ) from None
        return cls(self_id, peers, path=path, bootstrap=bootstrap)
