"""The per-run report directory:

report.json    everything below as one JSON object (verdict, problems, config, faults,
               outcome counts, latency, checks)
summary.md     the same for humans
history.jsonl  every operation, one JSON object a line, in invocation order
latency.png    latency over time with the fault windows shaded (when matplotlib exists)
logs/nX.log    each node's log, across its restarts
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from raftkv.chaos.history import FINAL_CLIENT, OpRecord, outcome_counts
from raftkv.chaos.nemesis import FaultEvent
from raftkv.chaos.plot import plot_latency
from raftkv.chaos.runner import ChaosResult
from raftkv.check import OpOutcome

RECOVERY_S = 2.0  # how long after a heal still counts towards the fault's outage


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency_summary(records: Sequence[OpRecord]) -> dict[str, dict[str, float]]:
    """Per kind, of OK operations: p50 / p99 / max latency in ms and the count."""
    by_kind: dict[str, list[float]] = {}
    for r in records:
        if r.outcome is OpOutcome.OK and r.ret is not None and r.client != FINAL_CLIENT:
            by_kind.setdefault(r.kind, []).append(1000.0 * (r.ret - r.call))
    return {
        kind: {
            "count": len(v),
            "p50": round(percentile(v, 0.5), 2),
            "p99": round(percentile(v, 0.99), 2),
            "max": round(max(v), 2),
        }
        for kind, v in sorted(by_kind.items())
    }


def longest_gap(records: Sequence[OpRecord], duration: float, start: float = 0.0) -> float:
    """The longest stretch (s) within [start, duration] in which no operation completed OK."""
    times = sorted(
        r.ret
        for r in records
        if r.outcome is OpOutcome.OK
        and r.ret is not None
        and r.client != FINAL_CLIENT
        and start <= r.ret <= duration
    )
    edges = [start, *times, duration]
    return max((b - a for a, b in itertools.pairwise(edges)), default=duration - start)


def fault_outages(
    records: Sequence[OpRecord], events: Sequence[FaultEvent], end: float
) -> dict[str, dict[str, float]]:
    """Per fault name: how many times, and the mean / max outage, an outage being the longest
    stretch without a successful operation from the fault's start until RECOVERY_S after its
    heal (or the next fault)."""
    outages: dict[str, list[float]] = {}
    for i, ev in enumerate(events):
        stop = (ev.end if ev.end is not None else end) + RECOVERY_S
        if i + 1 < len(events):
            stop = min(stop, events[i + 1].start)
        outages.setdefault(ev.name, []).append(longest_gap(records, min(stop, end), ev.start))
    return {
        name: {"count": len(v), "mean_s": round(sum(v) / len(v), 2), "max_s": round(max(v), 2)}
        for name, v in sorted(outages.items())
    }


def leader_after_heal(events: Sequence[FaultEvent]) -> dict[str, float | None]:
    """Per fault name: the longest time from a heal until a leader (None: one never came)."""
    worst: dict[str, float | None] = {}
    for ev in events:
        if ev.name in worst and worst[ev.name] is None:
            continue
        t = ev.leader_after_s
        worst[ev.name] = None if t is None else round(max(t, worst.get(ev.name) or 0.0), 3)
    return dict(sorted(worst.items()))


def report_json(result: ChaosResult) -> dict[str, Any]:
    cfg = result.config
    records = [r for r in result.records if r.client != FINAL_CLIENT]
    errors = Counter(r.error.split(":")[0] for r in records if r.error)
    lin = result.linearizability
    return {
        "verdict": "pass" if result.passed else "fail",
        "problems": result.problems,
        "config": {
            "nodes": cfg.nodes,
            "duration_s": cfg.duration,
            "faults": list(cfg.faults),
            "seed": cfg.seed,
            "fsync": cfg.fsync,
            "workload": asdict(cfg.workload),
            "fault_s": list(cfg.fault_s),
            "quiet_s": list(cfg.quiet_s),
            "timing": asdict(cfg.timing),
            "check_steps": cfg.check_steps,
            "leader_bound_s": cfg.leader_bound_s,
        },
        "cluster_id": result.cluster_id,
        "wall_s": round(result.wall_s, 2),
        "faults": [ev.to_json() for ev in result.events],
        "fault_counts": dict(Counter(ev.name for ev in result.events)),
        "ops": {
            "total": len(records),
            "per_second": round(len(records) / result.duration, 1) if result.duration else 0,
            "outcomes": outcome_counts(records),
            "errors": dict(errors.most_common()),
            "keys": len({r.key for r in records}),
        },
        "latency_ms": latency_summary(records),
        "longest_gap_without_ok_s": round(longest_gap(records, result.duration), 2),
        "outage_by_fault": fault_outages(records, result.events, result.duration),
        "leader_after_heal_by_fault": leader_after_heal(result.events),
        "checks": {
            "linearizability": None if lin is None else lin.to_json(),
            "acknowledged_writes": {
                "checked": result.acked_checked,
                "lost": [w.to_json() for w in result.lost],
            },
            "final_reads": len(result.finals),
            "leader_after_heal_s": None
            if result.leader_after_heal_s is None
            else round(result.leader_after_heal_s, 3),
            "convergence": result.convergence.to_json(),
            "crashed_nodes": result.crashed,
            "node_exits": [e.to_json() for e in result.exits],
        },
        "disks": result.disks,
    }


def summary_markdown(doc: dict[str, Any]) -> str:
    cfg, ops, checks = doc["config"], doc["ops"], doc["checks"]
    lin = checks["linearizability"] or {}
    conv = checks["convergence"]
    lines = [
        f"# raftkv chaos run: {doc['verdict'].upper()}",
        "",
        f"{cfg['nodes']} nodes, {cfg['duration_s']:g} s, seed {cfg['seed']}, "
        f"faults: {', '.join(cfg['faults']) or 'none'}; wall time {doc['wall_s']:g} s.",
        "",
    ]
    if doc["problems"]:
        lines += ["## Problems", "", *(f"- {p}" for p in doc["problems"]), ""]
    lines += [
        "## Checks",
        "",
        f"- linearizability: **{lin.get('verdict')}** ({lin.get('operations')} operations, "
        f"{lin.get('partitions')} keys, {lin.get('steps')} search steps, "
        f"{lin.get('seconds')} s)",
        f"- acknowledged writes checked after healing: {checks['acknowledged_writes']['checked']}"
        f", lost: {len(checks['acknowledged_writes']['lost'])}",
        f"- leader after healing: {checks['leader_after_heal_s']} s",
        f"- replicas converged: {conv['converged']} (applied index {conv['applied_index']}, "
        f"after {conv['seconds']} s)",
        f"- nodes that crashed on their own: {len(checks['crashed_nodes'])}",
        *(
            f"- {e['node']} exited ({e['kind']}, status {e['code']}): {e['message']}"
            for e in checks["node_exits"]
        ),
        *(
            f"- {node}'s disk (faultfs): {d['power_cuts']} power cuts, {d['torn']} torn writes, "
            f"{d['fsync_failures']} fsync errors, {d['enospc']} ENOSPC, {d['fsyncs']} fsyncs"
            for node, d in doc["disks"].items()
        ),
        "",
        "## Operations",
        "",
        f"{ops['total']} operations ({ops['per_second']}/s) on {ops['keys']} keys; longest "
        f"stretch without a successful operation: {doc['longest_gap_without_ok_s']} s.",
        "",
        "| kind | ok | fail | unknown | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, c in ops["outcomes"].items():
        lat = doc["latency_ms"].get(kind, {})
        lines.append(
            f"| {kind} | {c['ok']} | {c['fail']} | {c['unknown']} | {lat.get('p50', '')} | "
            f"{lat.get('p99', '')} | {lat.get('max', '')} |"
        )
    if ops["errors"]:
        lines += ["", "Errors: " + ", ".join(f"{k} {v}" for k, v in ops["errors"].items())]
    lines += [
        "",
        "## Outage by fault",
        "",
        "The longest stretch without a successful operation, from the fault's start until "
        f"{RECOVERY_S:g} s after its heal.",
        "",
        "| fault | times | mean s | max s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {o['count']} | {o['mean_s']} | {o['max_s']} |"
        for name, o in doc["outage_by_fault"].items()
    ]
    lines += [
        "",
        "## Faults",
        "",
        "| start s | end s | fault | what | leader after heal s |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {ev['start']:.1f} | {ev['end'] if ev['end'] is None else format(ev['end'], '.1f')} "
        f"| {ev['name']} | {ev['detail']} | {ev['leader_after_s']} |"
        for ev in doc["faults"]
    ]
    lines += ["", "![latency over time](latency.png)", ""]
    return "\n".join(lines)


def write_report(result: ChaosResult) -> dict[str, Any]:
    """Write the report directory; returns the report.json document."""
    out = result.config.out
    out.mkdir(parents=True, exist_ok=True)
    doc = report_json(result)
    with (out / "history.jsonl").open("w") as f:
        for r in sorted(result.records, key=lambda r: r.call):
            f.write(json.dumps(r.to_json()) + "\n")
    cfg = result.config
    title = (
        f"raftkv chaos: {cfg.nodes} nodes, seed {cfg.seed}, {doc['ops']['total']} ops, "
        f"{len(result.events)} faults: {doc['verdict'].upper()}"
    )
    plotted = plot_latency(
        out / "latency.png", result.records, result.events, title, result.duration
    )
    doc["files"] = {
        "history": "history.jsonl",
        "summary": "summary.md",
        "plot": "latency.png" if plotted else None,
        "logs": "logs/",
    }
    (out / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(doc))
    return doc
