"""CPU per write of each node, this tree against a baseline tree, in paired runs.

    .venv/bin/python bench/cpu_ab.py --baseline-src /tmp/base/src [--pairs 8] [--op put]

Why: on this 2-core machine write throughput is CPU-bound (three nodes and the load generator
share the cores), so a change that saves a few percent of the leader's CPU is a real gain, but
`bench/compare`'s throughput ratio moves by +-20% from round to round and needs hundreds of
rounds to see it. Machine drift (CPU steal, frequency) scales every process alike, so the
leader's CPU per write divided by its followers' (same run, same moment) cancels most of it:
that share is steady to a few percent per run. It compares the leader's own code paths (HTTP,
proposing, replicating); it assumes the followers' code costs the same in both trees (their
absolute CPU per write is printed to check that, but it is as noisy as the machine).

Each pair starts a fresh 3-node cluster of each tree in turn (alternating which goes first),
runs kvload.py for --duration seconds (64-client writes; --op get: linearizable reads, the keys
written first, outside the measured window), and reads every node's CPU time (utime + stime
of all its threads, /proc/PID/stat) before and after. Data lives on --data (default /dev/shm:
tmpfs, so fdatasync costs no CPU and the figures are the Python code's). Verdict: the median
over pairs of baseline share / raftkv share (above 1: raftkv's leader spends less per write),
with the same bootstrap interval as bench/compare's A/B (bench/ab.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import ab  # bench/ab.py, beside this file (the script's folder is on sys.path)
from compare import REPO, BenchError, Load, Raftkv, http_json, kvload, stop_on_signals

# kvload.py's populate step for reads (one short run that writes every key first).
FILL = argparse.Namespace(duration=1.0, warmup=0.0)


@dataclass(frozen=True)
class NodeCpu:
    role: str  # "leader" or "follower"
    us_per_op: float


@dataclass(frozen=True)
class Run:
    system: str
    pair: int
    ops_per_s: float
    nodes: tuple[NodeCpu, ...]

    @property
    def leader_share(self) -> float:
        """The leader's CPU per write over the mean of its followers'."""
        leader = [n.us_per_op for n in self.nodes if n.role == "leader"]
        followers = [n.us_per_op for n in self.nodes if n.role == "follower"]
        if len(leader) != 1 or not followers:
            raise BenchError(f"{self.system}: expected one leader, got {self.nodes}")
        return leader[0] / statistics.mean(followers)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, all threads, exited ones included (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(system: Raftkv, pair: int, args: argparse.Namespace, kvload_py: Path) -> Run:
    load = Load(f"{args.op}{args.clients}", args.op, args.clients, f"{args.op}, {args.clients}")
    system.start()
    try:
        roles = [str(http_json(url + "/v1/status").get("role")) for url in system.urls()]
        pids = system.pids()  # (node order, as urls())
        if args.op == "get":  # write the keys first, outside the measured window
            kvload(kvload_py, system, load, FILL, populate=True)
        before = [cpu_seconds(p) for p in pids]
        doc, _ = kvload(kvload_py, system, load, args, populate=False)
        after = [cpu_seconds(p) for p in pids]
    finally:
        system.stop()
    # CPU over the whole kvload run (warm-up included), ops over its measured part: scale.
    ops = doc["ops_per_s"] * (args.duration + args.warmup)
    nodes = tuple(
        NodeCpu(role, (a - b) * 1e6 / ops) for role, a, b in zip(roles, after, before, strict=True)
    )
    return Run(system.name, pair, doc["ops_per_s"], nodes)


def describe(r: Run) -> str:
    nodes = " ".join(f"{n.role[0]} {n.us_per_op:4.0f}" for n in r.nodes)
    return (
        f"pair {r.pair + 1} {r.system:8s} {r.ops_per_s:7,.0f} ops/s  CPU us/op: {nodes}  "
        f"leader/followers {r.leader_share:.3f}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline-src", type=Path, required=True, help="the other tree's src/")
    p.add_argument("--pairs", type=int, default=8, help="paired runs (8)")
    p.add_argument("--op", choices=("put", "get"), default="put")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--duration", type=float, default=8.0, help="seconds per run (8)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before it (1)")
    p.add_argument("--data", type=Path, default=Path("/dev/shm"), help="cluster data (tmpfs)")
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "bench")
    args = p.parse_args()
    kvload_py = args.shared.resolve() / "kvload.py"
    if not kvload_py.exists():
        print(f"cpu_ab: {kvload_py} is missing (pass --shared DIR)", file=sys.stderr)
        return 2
    work = args.data / f"raftkv-cpu-ab-{int(time.time())}"
    arms = [
        Raftkv("raftkv", "http-kv", "this tree", data_dir=work / "raftkv", base_port=9401),
        Raftkv(
            "baseline",
            "http-kv",
            str(args.baseline_src),
            data_dir=work / "baseline",
            base_port=9501,
            pythonpath=str(args.baseline_src.resolve()),
        ),
    ]
    runs: list[Run] = []
    with stop_on_signals():
        for pair in range(args.pairs):
            for system in arms if pair % 2 == 0 else arms[::-1]:
                runs.append(one_run(system, pair, args, kvload_py))
                print(describe(runs[-1]), file=sys.stderr, flush=True)
    shares = {(r.pair, r.system): r.leader_share for r in runs}
    ratios = [shares[(k, "baseline")] / shares[(k, "raftkv")] for k in range(args.pairs)]
    v = ab.verdict("leader share", ratios)
    for name in ("raftkv", "baseline"):
        mine = [r for r in runs if r.system == name]
        per_role = {
            role: statistics.median(n.us_per_op for r in mine for n in r.nodes if n.role == role)
            for role in ("leader", "follower")
        }
        share = statistics.median(r.leader_share for r in mine)
        print(
            f"{name:8s}: leader/followers median {share:.3f}"
            f"; CPU us/op median: leader {per_role['leader']:.0f}, "
            f"follower {per_role['follower']:.0f}"
        )
    print(
        f"baseline share / raftkv share over {len(ratios)} pairs: median {v.median:.3f} "
        f"(90% {v.low:.3f}-{v.high:.3f}): {v.text}; pairs where raftkv's leader was "
        f"relatively cheaper: {sum(x > 1 for x in ratios)}/{len(ratios)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
