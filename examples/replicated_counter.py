"""A replicated counter across 3 processes.

    python examples/replicated_counter.py

Starts 3 OS processes, each embedding one replica of a raftkv Counter (durable: every commit is
fsynced on a majority). Each process adds 1 to the counter 50 times, concurrently with the
others (followers forward to the leader), then reads the counter linearizably. Every process
must see 150. The data lives in a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raftkv import Counter, Node, NodeOptions

NODES = ("n1", "n2", "n3")
ADDS = 50
TIMEOUT_S = 60.0


async def replica(node_id: str, peers: dict[str, str], data_dir: str) -> None:
    """One process: start the node, add ADDS times, wait for everyone, report, stop."""
    counter = Counter()
    options = NodeOptions(tick_ms=20)
    async with Node(counter, node_id=node_id, peers=peers, data_dir=data_dir, options=options):
        started = time.perf_counter()
        for _ in range(ADDS):
            await counter.add(1)  # committed on a majority and applied when this returns
        elapsed = time.perf_counter() - started
        print(f"[{node_id}] added {ADDS} times in {elapsed:.2f}s", flush=True)
        while (value := await counter.get()) < ADDS * len(NODES):  # linearizable reads
            await asyncio.sleep(0.05)
        print(f"[{node_id}] counter = {value} (leader: {counter.attached_node.leader})", flush=True)
        print("DONE", flush=True)
        # Stay up until the parent says so, so the others keep their quorum.
        await asyncio.to_thread(sys.stdin.read)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def main() -> int:
    ports = free_ports(2 * len(NODES))
    peers = {
        nid: f"127.0.0.1:{ports[2 * i]}@http://127.0.0.1:{ports[2 * i + 1]}"
        for i, nid in enumerate(NODES)
    }
    spec = ",".join(f"{k}={v}" for k, v in peers.items())
    with tempfile.TemporaryDirectory(prefix="raftkv-counter-") as tmp:
        procs = {
            nid: subprocess.Popen(
                [sys.executable, __file__, "--node", nid, "--peers", spec, "--data-dir", tmp],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for nid in NODES
        }
        deadline = time.monotonic() + TIMEOUT_S
        ok = True
        for nid, proc in procs.items():
            assert proc.stdout is not None
            for line in proc.stdout:  # each child says DONE once it has seen the total
                if line.strip() == "DONE":
                    break
                print(line, end="", flush=True)
            else:
                print(f"{nid} ended early (exit {proc.wait()})")
                ok = False
            if time.monotonic() > deadline:
                ok = False
                break
        for proc in procs.values():  # everyone is done: let them stop
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs.values():
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                ok = False
        ok = ok and all(p.returncode == 0 for p in procs.values())
    print("all 3 replicas agree on 150" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node")
    parser.add_argument("--peers")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    if args.node is None:
        sys.exit(main())
    logging.basicConfig(level=logging.ERROR)  # peers not up yet at start: expected, not shown
    peers = dict(item.split("=", 1) for item in args.peers.split(","))
    asyncio.run(replica(args.node, peers, str(Path(args.data_dir) / args.node)))
