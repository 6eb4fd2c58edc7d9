"""The asyncio shell around the pure core: Ready loop, peer transport, HTTP API, metrics.

from raftkv.runtime import NodeSettings, parse_peers, run
run(NodeSettings(node_id="n1", data_dir=Path("data/n1"), listen=("127.0.0.1", 7001),
                 http=("127.0.0.1", 8001), peers=parse_peers("n1=127.0.0.1:7001@...")))
"""

from raftkv.runtime.settings import NodeSettings, PeerAddress, parse_hostport, parse_peers

__all__ = ["NodeSettings", "PeerAddress", "parse_hostport", "parse_peers"]
