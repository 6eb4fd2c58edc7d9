"""`raftkv chaos`: one fault-testing campaign on a real local cluster, with a report.

The fault families and their faults come from raftkv.chaos.nemesis (FAMILIES, expand_faults):
a new family appears in --faults and in this command's help without a change here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from raftkv.chaos.nemesis import ALL_FAULTS, FAMILIES, expand_faults
from raftkv.chaos.report import write_report
from raftkv.chaos.runner import ChaosConfig, run_campaign
from raftkv.chaos.workload import WorkloadConfig
from raftkv.cli.common import Subparsers, int_in, positive_float

DESCRIPTION = """\
Start a cluster of real `raftkv serve` processes (temp data dirs, real fsync, fault
injection on), run concurrent read/write/cas clients, inject faults on a seeded schedule,
heal, then check: the history is linearizable, no acknowledged write is lost, the replicas
converge, a leader exists within a bound. Writes a report directory (report.json,
summary.md, history.jsonl, latency.png, node logs). Exit status 0 iff every check passed.
"""


def add_parser(sub: Subparsers) -> None:
    families = ", ".join(f"{fam} ({' '.join(names)})" for fam, names in FAMILIES.items())
    p = sub.add_parser(
        "chaos",
        help="fault-test a real local cluster and check linearizability",
        description=DESCRIPTION,
        epilog=f"Fault families and their faults: {families}. 'all' = every fault.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nodes", type=int_in(1, 9), default=3, help="cluster size (3)")
    p.add_argument(
        "--duration",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="seconds the clients run (30)",
    )
    p.add_argument(
        "--faults",
        type=_faults,
        default=ALL_FAULTS,
        metavar="LIST",
        help="comma-separated families or faults, 'all' (default) or 'none'",
    )
    p.add_argument("--seed", type=int, default=0, help="schedule and workload seed (0)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("chaos-report"),
        metavar="DIR",
        help="the report directory (chaos-report)",
    )
    p.add_argument("--json", action="store_true", help="print report.json to stdout")
    p.add_argument("--clients", type=int_in(1, 64), default=5, help="concurrent clients (5)")
    p.add_argument("--keys", type=int_in(1, 100), default=3, help="keys in use at once (3)")
    p.add_argument(
        "--ops-per-key",
        type=int_in(1, 100_000),
        default=150,
        metavar="N",
        help="operations before a key is retired for a fresh one (150)",
    )
    p.add_argument(
        "--op-timeout",
        type=_range,
        default=(1.0, 4.0),
        metavar="A:B",
        help="per-client operation timeout, drawn from A:B (1:4)",
    )
    p.add_argument(
        "--fault-s", type=_range, default=(2.0, 4.0), metavar="A:B", help="fault length (2:4)"
    )
    p.add_argument(
        "--quiet-s", type=_range, default=(1.0, 2.0), metavar="A:B", help="time between (1:2)"
    )
    p.add_argument(
        "--check-steps",
        type=int_in(1, 10**10),
        default=5_000_000,
        metavar="N",
        help="linearizability search budget; exhausted = failure (5000000)",
    )
    p.add_argument("--leader-bound", type=positive_float, default=10.0, metavar="S", help="(10)")
    p.add_argument("--keep-data", action="store_true", help="keep the nodes' data dirs")
    p.add_argument("--no-fsync", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_chaos)


def config_from_args(args: argparse.Namespace) -> ChaosConfig:
    return ChaosConfig(
        out=args.out,
        nodes=args.nodes,
        duration=args.duration,
        faults=tuple(args.faults),
        seed=args.seed,
        workload=WorkloadConfig(
            clients=args.clients,
            keys=args.keys,
            ops_per_key=args.ops_per_key,
            op_timeout=args.op_timeout,
        ),
        fault_s=args.fault_s,
        quiet_s=args.quiet_s,
        check_steps=args.check_steps,
        leader_bound_s=args.leader_bound,
        keep_data=args.keep_data,
        fsync=not args.no_fsync,
    )


def cmd_chaos(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    print(
        f"chaos: {config.nodes} nodes, {config.duration:g}s, seed {config.seed}, "
        f"faults {','.join(config.faults) or 'none'} -> {config.out}",
        file=sys.stderr,
    )
    result = asyncio.run(run_campaign(config))
    doc = write_report(result)
    if args.json:
        print(json.dumps(doc))
    else:
        print(one_screen(doc, config.out))
    return 0 if result.passed else 1


def one_screen(doc: dict[str, object], out: Path) -> str:
    """A few lines: verdict, figures, problems, where the report is."""
    ops = doc["ops"]
    checks = doc["checks"]
    assert isinstance(ops, dict) and isinstance(checks, dict)
    lin = checks["linearizability"] or {}
    total = ops["outcomes"].get("total", {})
    lines = [
        f"{str(doc['verdict']).upper()}: {ops['total']} ops (ok {total.get('ok', 0)}, "
        f"fail {total.get('fail', 0)}, unknown {total.get('unknown', 0)}), "
        f"{len(doc['faults'])} faults",  # type: ignore[arg-type]
        f"  linearizability: {lin.get('verdict')} ({lin.get('steps')} steps, "
        f"{lin.get('seconds')}s); acknowledged writes checked "
        f"{checks['acknowledged_writes']['checked']}, lost "
        f"{len(checks['acknowledged_writes']['lost'])}",
        f"  leader after healing: {checks['leader_after_heal_s']}s; converged: "
        f"{checks['convergence']['converged']}",
    ]
    problems = doc["problems"]
    assert isinstance(problems, list)
    lines += [f"  problem: {p}" for p in problems]
    lines.append(f"  report: {out / 'summary.md'}")
    return "\n".join(lines)


def _range(text: str) -> tuple[float, float]:
    lo_text, sep, hi_text = text.partition(":")
    lo = positive_float(lo_text)
    hi = positive_float(hi_text) if sep else lo
    if hi < lo:
        raise argparse.ArgumentTypeError(f"{text!r}: A must be <= B")
    return lo, hi


def _faults(text: str) -> list[str]:
    try:
        return expand_faults(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
