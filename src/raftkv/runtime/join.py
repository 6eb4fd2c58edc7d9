"""`raftkv serve --join URL,...`: start a new, empty node as a learner of a running cluster.

Before the node starts: ask the cluster (any member's HTTP URL; followers forward) to add this
node as a learner at its --listen / --http addresses, unless it is a member already (added
with `raftkv member add`), and save the members' addresses and a learner-only starting
configuration to DATA_DIR/members.json. The node then starts with an empty log; the leader
sends it the log (or a snapshot, then the log) and the configuration with it. Promote it with
`raftkv member promote ID` once it has caught up.

A data directory that already holds members.json has joined before (or was bootstrapped):
--join is then ignored and the node restarts with its data.
"""

from __future__ import annotations

import asyncio
import logging

from raftkv.client import AsyncClient
from raftkv.core.membership import Membership
from raftkv.errors import BadRequest
from raftkv.runtime.addresses import MEMBERS_FILE, AddressBook, decode_address
from raftkv.runtime.settings import NodeSettings, PeerAddress

log = logging.getLogger("raftkv.join")


def prepare_join(settings: NodeSettings, endpoints: list[str], timeout: float) -> bool:
    """Join the cluster at endpoints unless this data dir already did; True if it joined now."""
    return asyncio.run(join(settings, endpoints, timeout))


async def join(settings: NodeSettings, endpoints: list[str], timeout: float) -> bool:
    """prepare_join() inside a running event loop."""
    path = settings.data_dir / MEMBERS_FILE
    if path.exists():
        return False
    if (settings.storage_dir).exists():
        raise BadRequest(
            f"{settings.data_dir} already holds a node's log but no {MEMBERS_FILE}: it was not "
            "started with --join; start it without --join, or give --join an empty --data-dir"
        )
    me = settings.peers[settings.node_id]
    peers = await _join(settings.node_id, me, endpoints, timeout)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    book = AddressBook(
        settings.node_id,
        peers,
        path=path,
        bootstrap=Membership.of((), (settings.node_id,)),
    )
    book.save()
    return True


async def _join(
    node_id: str, me: PeerAddress, endpoints: list[str], timeout: float
) -> dict[str, PeerAddress]:
    raft = f"{me.raft_host}:{me.raft_port}"
    async with AsyncClient(endpoints, timeout=timeout) as client:
        members = {m.id: m for m in await client.members()}
        mine = members.get(node_id)
        if mine is None:
            log.info("%s: asking the cluster to add this node as a learner", node_id)
            await client.add_member(node_id, raft, me.http_url)
            members = {m.id: m for m in await client.members()}
        elif (mine.raft_address, mine.http_url) != (raft, me.http_url):
            raise BadRequest(
                f"the cluster knows {node_id} at {mine.raft_address} / {mine.http_url}, not "
                f"{raft} / {me.http_url}: remove it first (raftkv member remove {node_id})"
            )
    peers = {
        m.id: decode_address(
            {"raft_address": m.raft_address, "http_url": m.http_url}, f"member {m.id}"
        )
        for m in members.values()
        if m.raft_address and m.http_url
    }
    peers[node_id] = me
    return peers
