"""Benchmark: a replicated counter on 3 local processes, raftkv's library vs PySyncObj.

    python examples/bench_counter.py                       # raftkv, fsync on
    python examples/bench_counter.py --system pysyncobj    # needs `pip install pysyncobj`
    python examples/bench_counter.py --no-fsync --concurrency 1 --duration 5

Three node processes on 127.0.0.1; the load runs inside the leader's process (so neither
system pays for forwarding), as `concurrency` callers each adding 1 in a loop for `duration`
seconds after a one-second warm-up. Prints one JSON line: ops/s and latency percentiles.
The figures in docs/vs-pysyncobj.md come from this script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

WARMUP_S = 1.0
STABLE_LEADER_S = 1.0  # PySyncObj: the leader a replica must see unchanged before it decides


def summarize(
    system: str, args: argparse.Namespace, lat: list[float], secs: float, acked: int
) -> str:
    lat.sort()

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3)

    return json.dumps(
        {
            "system": system,
            "fsync": system == "raftkv" and not args.no_fsync,
            "batch": system == "raftkv" or not args.no_batch,
            "concurrency": args.concurrency,
            "ops": len(lat),
            "ops_per_s": round(len(lat) / secs),
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(lat) * 1000, 3),
            "acknowledged": acked,
        }
    )


# --- raftkv ----------------------------------------------------------------------------------


async def raftkv_node(args: argparse.Namespace, peers: dict[str, str]) -> None:
    from raftkv import Counter, Node, NodeOptions  # noqa: PLC0415

    counter = Counter()
    options = NodeOptions(fsync=not args.no_fsync, snapshot_every=0)
    data = Path(args.data_dir) / args.node
    async with Node(counter, node_id=args.node, peers=peers, data_dir=data, options=options) as n:
        leader = await n.wait_for_leader()
        if leader == args.node:
            lat: list[float] = []
            loop = asyncio.get_running_loop()
            start = loop.time()
            measure_from = start + WARMUP_S
            stop = measure_from + args.duration

            acked = [0]

            async def caller() -> None:
                while (t0 := loop.time()) < stop:
                    await counter.add(1)
                    acked[0] += 1
                    if t0 >= measure_from:
                        lat.append(loop.time() - t0)

            await asyncio.gather(*(caller() for _ in range(args.concurrency)))
            print(summarize("raftkv", args, lat, args.duration, acked[0]), flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # "final": report this replica's value
        print(json.dumps({"final": await counter.get()}), flush=True)
        await asyncio.to_thread(sys.stdin.read)


# --- PySyncObj -------------------------------------------------------------------------------


def pysyncobj_node(args: argparse.Namespace, peers: dict[str, str]) -> None:
    from pysyncobj import (  # type: ignore[import-untyped, import-not-found, unused-ignore]  # noqa: PLC0415
        FAIL_REASON,
        SyncObj,
        SyncObjConf,
        replicated,
    )

    class PCounter(SyncObj):  # type: ignore[misc]
        def __init__(self, me: str, partners: list[str]) -> None:
            super().__init__(me, partners, SyncObjConf(appendEntriesUseBatch=not args.no_batch))
            self.value = 0

        @replicated  # type: ignore[untyped-decorator]
        def add(self, n: int) -> int:
            self.value += n
            return self.value

    raft = {nid: spec.split("@")[0] for nid, spec in peers.items()}
    me = raft[args.node]
    obj = PCounter(me, [a for nid, a in raft.items() if nid != args.node])
    # Decide who runs the load on a leader that has stayed put: at start-up a first leader can
    # lose to a second one before it looks, while the second saw the first, and then no replica
    # ran the load (seen once in a make test run on a busy machine).
    leader, since = None, time.monotonic()
    while leader is None or time.monotonic() - since < STABLE_LEADER_S:
        now = obj._getLeader()
        if now != leader:
            leader, since = now, time.monotonic()
        time.sleep(0.05)
    if str(leader) == me:
        lat: list[float] = []
        start = time.monotonic()
        measure_from, stop = start + WARMUP_S, start + WARMUP_S + args.duration
        finished = threading.Semaphore(0)
        acked = [0]

        def issue() -> None:
            t0 = time.monotonic()
            if t0 >= stop:
                finished.release()
                return

            def done(result: Any, err: Any) -> None:
                if err == FAIL_REASON.SUCCESS:
                    acked[0] += 1
                    if t0 >= measure_from:
                        lat.append(time.monotonic() - t0)
                issue()

            obj.add(1, callback=done)

        for _ in range(args.concurrency):
            issue()
        for _ in range(args.concurrency):
            finished.acquire()
        print(summarize("pysyncobj", args, lat, args.duration, acked[0]), flush=True)
    sys.stdin.readline()  # "final": let replication settle, report this replica's value
    time.sleep(2.0)
    print(json.dumps({"final": obj.value}), flush=True)
    sys.stdin.read()
    obj.destroy()


# --- the parent ------------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def main(args: argparse.Namespace) -> int:
    ports = free_ports(6)
    spec = ",".join(
        f"n{i + 1}=127.0.0.1:{ports[2 * i]}@http://127.0.0.1:{ports[2 * i + 1]}" for i in range(3)
    )
    flags = [f"--system={args.system}", f"--concurrency={args.concurrency}"]
    flags += [f"--duration={args.duration}"] + (["--no-fsync"] if args.no_fsync else [])
    flags += ["--no-batch"] if args.no_batch else []
    with tempfile.TemporaryDirectory(prefix="raftkv-bench-", dir=args.tmp) as tmp:
        dirs = [f"--data-dir={tmp}"]
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, f"--node=n{i + 1}", f"--peers={spec}", *dirs, *flags],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(3)
        ]
        result: list[str] = []

        def read(p: subprocess.Popen[str]) -> None:
            assert p.stdout is not None
            result.extend(line.strip() for line in p.stdout if line.strip())

        readers = [threading.Thread(target=read, args=(p,), daemon=True) for p in procs]
        for t in readers:
            t.start()
        deadline = time.monotonic() + args.duration + 60
        while not result and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in procs:  # every replica reports its value: do they agree with the acks?
            assert p.stdin is not None
            p.stdin.write("final\n")
            p.stdin.flush()
        # Each replica prints one "final" line, after its summary if it ran the load (two
        # may have, when leadership moved at start-up): wait for all three before closing.
        while sum('"final"' in r for r in result) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    if not result:
        print("no result")
        return 1
    summary = next(json.loads(r) for r in result if "ops" in r)
    summary["replica_values"] = [json.loads(r)["final"] for r in result if "final" in r]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=["raftkv", "pysyncobj"], default="raftkv")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--no-fsync", action="store_true", help="raftkv only")
    parser.add_argument("--no-batch", action="store_true", help="PySyncObj only")
    parser.add_argument("--tmp", help="where the data dirs go (default: the system's tmp)")
    parser.add_argument("--node")
    parser.add_argument("--peers")
    parser.add_argument("--data-dir")
    a = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if a.node is None:
        sys.exit(main(a))
    node_peers = dict(item.split("=", 1) for item in a.peers.split(","))
    if a.system == "raftkv":
        asyncio.run(raftkv_node(a, node_peers))
    else:
        pysyncobj_node(a, node_peers)
