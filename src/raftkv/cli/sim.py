"""`raftkv sim`: sweep simulator seeds in parallel worker processes and report.

Exit status 1 on any violation, with the exact command that replays each failing seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict

from raftkv.cli.common import Subparsers
from raftkv.sim.faults import FaultKind, parse_faults
from raftkv.sim.runner import CHECK_STEPS, SeedResult, SimSettings, run_seed


def parse_seeds(spec: str) -> range:
    """'A..B' (inclusive) or a single seed 'A'."""
    try:
        if ".." in spec:
            lo, hi = (int(x) for x in spec.split("..", 1))
        else:
            lo = hi = int(spec)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must look like 0..199 or 17, not {spec!r}"
        ) from None
    if lo < 0 or hi < lo:
        raise argparse.ArgumentTypeError(f"empty or negative seed range {spec!r}")
    return range(lo, hi + 1)


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "sim",
        help="run the deterministic simulator over many seeds",
        description="Run seeded simulations with faults; check Raft's safety properties after "
        "every event, liveness after healing, and linearizability of every client history.",
    )
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0..99"), help="A..B")
    p.add_argument("--nodes", type=int, default=5, help="cluster size (default 5)")
    p.add_argument(
        "--faults",
        default="all",
        help="all, none, or a comma list of: " + ", ".join(k.value for k in FaultKind),
    )
    p.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    p.add_argument(
        "--check-steps",
        type=int,
        default=CHECK_STEPS,
        metavar="N",
        help=f"linearizability search budget per history (default {CHECK_STEPS:,}); a history "
        "the search cannot decide within it fails the run",
    )
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--trace", action="store_true", help="print the event trace of each seed")
    p.set_defaults(func=run)


def _replay(args: argparse.Namespace, seed: int) -> str:
    return f"raftkv sim --seeds {seed}..{seed} --nodes {args.nodes} --faults {args.faults} --trace"


def run(args: argparse.Namespace) -> int:
    try:
        faults = parse_faults(args.faults)
    except ValueError as e:
        print(f"raftkv sim: {e}", file=sys.stderr)
        return 2
    if not 1 <= args.nodes <= 9:
        print("raftkv sim: --nodes must be between 1 and 9", file=sys.stderr)
        return 2
    settings = SimSettings(
        nodes=args.nodes, faults=faults, clients=args.clients, check_steps=args.check_steps
    )
    seeds: range = args.seeds
    started = time.monotonic()
    results: list[SeedResult] = []
    jobs = max(1, min(args.jobs, len(seeds)))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        # One job runs in this process (simplest to debug); more fan out to worker processes.
        mapper = map if jobs == 1 else pool.map
        for result in mapper(_run_one, seeds, [settings] * len(seeds), [args.trace] * len(seeds)):
            results.append(result)
            if args.trace and result.trace:
                print("\n".join(result.trace))
            if not result.passed:
                print(f"seed {result.seed}: VIOLATION: {result.violations[0]}", file=sys.stderr)
            if not args.json and (len(results) % 20 == 0 or len(results) == len(seeds)):
                print(
                    f"  {len(results)}/{len(seeds)} seeds, "
                    f"{sum(not r.passed for r in results)} failing, "
                    f"{time.monotonic() - started:.1f}s",
                    file=sys.stderr,
                )
    failing = [r for r in results if not r.passed]
    # A history the checker could not decide proves nothing: the run does not pass.
    undecided = [r for r in results if r.passed and r.linearizable == "unknown"]
    summary = {
        "seeds": len(results),
        "nodes": args.nodes,
        "faults": sorted(f.value for f in faults),
        "violations": sum(len(r.violations) for r in results),
        "failing_seeds": [r.seed for r in failing],
        "linearizable": sum(r.linearizable == "linearizable" for r in results),
        "linearizability_unknown": sum(r.linearizable == "unknown" for r in results),
        "ops": sum(r.ops for r in results),
        "ok": sum(r.ok for r in results),
        "unknown_outcomes": sum(r.unknown for r in results),
        "elections": sum(r.elections for r in results),
        "commits": sum(r.commits for r in results),
        "events": sum(r.events for r in results),
        "seconds": round(time.monotonic() - started, 2),
        "undecided_seeds": [r.seed for r in undecided],
        "replay": [_replay(args, r.seed) for r in failing],
    }
    if args.json:
        if failing:
            summary["first_failure"] = asdict(failing[0]) | {"trace": None}
        print(json.dumps(summary))
    else:
        print(
            f"{summary['seeds']} seeds, {args.nodes} nodes, faults {args.faults}: "
            f"{len(failing)} failing; {summary['ops']} ops checked "
            f"({summary['linearizable']} histories linearizable), {summary['elections']} "
            f"elections, {summary['commits']} commits, {summary['seconds']}s"
        )
        for r in failing:
            print(f"seed {r.seed} FAILED:")
            for v in r.violations:
                print(f"  - {v}")
            print(f"  replay: {_replay(args, r.seed)}")
        for r in undecided:
            print(
                f"seed {r.seed} UNDECIDED: the linearizability search ran out of its budget "
                f"({args.check_steps:,} steps); retry with a larger --check-steps: "
                f"{_replay(args, r.seed)} --check-steps {args.check_steps * 10}"
            )
    return 1 if failing or undecided else 0


def _run_one(seed: int, settings: SimSettings, trace: bool) -> SeedResult:
    return run_seed(seed, settings, trace=trace)
