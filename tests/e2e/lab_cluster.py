"""A chaos cluster whose nodes run on the hosts of a HostLab: node nI is `raftkv serve` inside
host nI's network namespace, listening on that host's own address (Raft port 7001, HTTP 8001
on every host, as on real machines).

Everything else is raftkv.chaos's ChaosCluster: process handling (kill -9, restart, the
parent-death signal), status polls, leader detection and stale reads. The nodes are started
without --allow-fault-injection: faults here come from the hosts' firewalls, not from raftkv.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from raftkv.chaos.cluster import ChaosCluster, NodeProcess, NodeTiming
from raftkv.devcluster.topology import NodeSpec

from .netns import HostLab

RAFT_PORT = 7001
HTTP_PORT = 8001


class LabCluster(ChaosCluster):
    def __init__(
        self, lab: HostLab, root: Path, log_dir: Path, timing: NodeTiming | None = None
    ) -> None:
        self.lab = lab
        super().__init__(len(lab.hosts), root, log_dir, timing or NodeTiming())

    def __post_init__(self) -> None:
        self.cluster_id = f"lab-{secrets.token_hex(4)}"
        self.nodes = {}
        for host in self.lab.hosts.values():
            spec = NodeSpec(host.name, RAFT_PORT, HTTP_PORT, host.ip)
            self.nodes[host.name] = NodeProcess(
                spec, self.root / host.name, self.log_dir / f"{host.name}.log"
            )

    def command(self, node: NodeProcess) -> list[str]:
        cmd = [c for c in super().command(node) if c != "--allow-fault-injection"]
        return self.lab.exec_in(node.spec.id, *cmd)
