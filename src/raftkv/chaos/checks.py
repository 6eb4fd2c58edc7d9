"""The verdicts of one run: linearizability, no lost acknowledged write, convergence.

Linearizability is raftkv.check's search over the recorded history (per key), with a step
budget so it always finishes: a budget exhausted is UNKNOWN, never a pass.

Lost writes: for every key, the value a linearizable read returns after healing must not be
older than any acknowledged write. Values are unique, so the read names the write W that
produced it; an acknowledged write A is lost if W definitely completed before A was invoked
(A then had to overwrite it), or if the key reads as absent although A was acknowledged.

Convergence: once every node has applied the same index (and commit == applied), every node's
stale read of every key agrees, and agrees with the final linearizable reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from raftkv.chaos.cluster import ChaosCluster
from raftkv.chaos.history import FINAL_CLIENT, OpRecord, to_operations
from raftkv.chaos.workload import ChaosWorkload
from raftkv.check import OpOutcome, check
from raftkv.check.models import KvRegisterModel
from raftkv.client import AsyncClient, RetryPolicy, ServerStatus


@dataclass(frozen=True, slots=True)
class LinearizabilityResult:
    verdict: str  # "linearizable" | "not-linearizable" | "unknown"
    operations: int
    partitions: int
    steps: int
    seconds: float
    explanation: str

    @property
    def ok(self) -> bool:
        return self.verdict == "linearizable"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "operations": self.operations,
            "partitions": self.partitions,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "explanation": self.explanation,
        }


def check_linearizable(records: Sequence[OpRecord], max_steps: int) -> LinearizabilityResult:
    ops = to_operations(records)
    started = time.perf_counter()
    result = check(ops, KvRegisterModel(), max_steps=max_steps)
    return LinearizabilityResult(
        result.verdict.value,
        len(ops),
        result.partitions,
        result.steps,
        time.perf_counter() - started,
        result.explanation,
    )


@dataclass(frozen=True, slots=True)
class LostWrite:
    key: str
    value: str
    acked_at: float  # when the client got the acknowledgement
    final: str | None  # what the key read after healing

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "acked_at": round(self.acked_at, 3),
            "final": self.final,
        }


@dataclass(slots=True)
class FinalReads:
    values: dict[str, str | None]  # key -> the value read (None: absent)
    failed: dict[str, str]  # key -> why its read failed
    applied: int | None  # the leader's applied index just after, None if unknown


async def final_reads(
    cluster: ChaosCluster, workload: ChaosWorkload, timeout_s: float
) -> FinalReads:
    """Read every key the workload used, linearizably, once the faults have healed; the reads
    join the workload's history (as FINAL_CLIENT)."""
    out = FinalReads({}, {}, None)
    policy = RetryPolicy(timeout=timeout_s, attempt_timeout=2.0)
    async with AsyncClient(cluster.endpoints, policy=policy) as kv:
        for key in workload.keys.used:
            rec = OpRecord(len(workload.records), FINAL_CLIENT, "get", key)
            rec.consistency = "linearizable"
            workload.records.append(rec)
            await workload.execute(kv, rec)
            if rec.outcome is OpOutcome.OK:
                out.values[key] = rec.output if isinstance(rec.output, str) else None
            else:
                out.failed[key] = rec.error
    leader = await cluster.any_leader()
    status = None if leader is None else await cluster.status(leader)
    out.applied = None if status is None else status.applied_index
    return out


def find_lost_writes(
    records: Sequence[OpRecord], finals: dict[str, str | None]
) -> tuple[int, list[LostWrite]]:
    """(acknowledged writes checked, the ones lost). finals: key -> value read after healing."""
    writer_of: dict[tuple[str, str], OpRecord] = {}
    for r in records:
        if r.is_write and r.value is not None and r.client != FINAL_CLIENT:
            writer_of[(r.key, r.value)] = r
    checked = 0
    lost: list[LostWrite] = []
    for a in records:
        if not a.acknowledged or a.key not in finals or a.value is None:
            continue
        checked += 1
        final = finals[a.key]
        w = None if final is None else writer_of.get((a.key, final))
        if w is a:
            continue
        # The final value is older than A if A was invoked after its writer W surely ended.
        older = final is None or (
            w is not None and w.outcome is OpOutcome.OK and w.ret is not None and w.ret < a.call
        )
        if older:
            lost.append(LostWrite(a.key, a.value, a.ret or a.call, final))
    return checked, lost


@dataclass(slots=True)
class Convergence:
    converged: bool = False
    seconds: float = 0.0  # from the start of the check until the nodes agreed
    applied_index: int | None = None
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "converged": self.converged,
            "seconds": round(self.seconds, 3),
            "applied_index": self.applied_index,
            "statuses": self.statuses,
            "problems": self.problems,
        }


async def check_convergence(
    cluster: ChaosCluster,
    keys: Sequence[str],
    finals: dict[str, str | None],
    final_applied: int | None,
    bound_s: float,
) -> Convergence:
    """Wait (up to bound_s) for every node to apply the same index, then compare stale reads.

    final_applied: the leader's applied index right after the final reads; the stale reads
    must equal the final reads when the nodes still stand at that index (a late write from
    a request that was in flight when the clients stopped may legally land after them)."""
    out = Convergence()
    started = time.monotonic()
    deadline = started + bound_s
    last: dict[str, ServerStatus] = {}
    while True:
        # A node that refused to start with a clear message (disk faults) is not waited for;
        # one restarted at the final heal may refuse again only a few seconds later.
        expected = cluster.size - len(cluster.refusing())
        last = await cluster.statuses()
        applied = {s.applied_index for s in last.values()}
        settled = all(s.applied_index == s.commit_index for s in last.values())
        if len(last) == expected and len(applied) == 1 and settled:
            values = await _stale_values(cluster, sorted(last), keys)
            again = await cluster.statuses()
            if values is not None and _marks(again) == _marks(last):
                out.converged = True
                out.seconds = time.monotonic() - started
                out.applied_index = applied.pop()
                out.problems = _compare(values, finals, out.applied_index == final_applied)
                break
        if time.monotonic() >= deadline:
            shown = {i: (s.commit_index, s.applied_index) for i, s in sorted(last.items())}
            out.problems.append(
                f"nodes did not converge within {bound_s:g}s: (commit, applied) = {shown}, "
                f"{expected - len(last)} node(s) did not answer"
            )
            break
        await asyncio.sleep(0.1)
    out.statuses = {
        i: {"role": s.role, "term": s.term, "commit": s.commit_index, "applied": s.applied_index}
        for i, s in sorted(last.items())
    }
    return out


def _marks(statuses: dict[str, ServerStatus]) -> dict[str, tuple[Any, ...]]:
    """What must not move while the stale reads run: each node's role, term, leader, commit
    and applied index (not its view of its peers' links)."""
    return {
        i: (s.role, s.term, s.leader, s.commit_index, s.applied_index) for i, s in statuses.items()
    }


async def _stale_values(
    cluster: ChaosCluster, nodes: Sequence[str], keys: Sequence[str]
) -> dict[str, dict[str, str | None]] | None:
    """node -> key -> value, by stale reads; None if some read went unanswered."""
    values: dict[str, dict[str, str | None]] = {}
    for node_id in nodes:
        got = await asyncio.gather(*(cluster.stale_get(node_id, k) for k in keys))
        if not all(answered for answered, _ in got):
            return None
        values[node_id] = {k: v for k, (_, v) in zip(keys, got, strict=True)}
    return values


def _compare(
    values: dict[str, dict[str, str | None]],
    finals: dict[str, str | None],
    same_index: bool,
) -> list[str]:
    problems: list[str] = []
    nodes = sorted(values)
    for key in sorted({k for v in values.values() for k in v}):
        seen = {n: values[n][key] for n in nodes}
        if len(set(seen.values())) > 1:
            problems.append(f"replicas disagree on {key!r}: {seen}")
        elif same_index and key in finals and seen[nodes[0]] != finals[key]:
            problems.append(
                f"{key!r}: replicas hold {seen[nodes[0]]!r} but the final linearizable "
                f"read returned {finals[key]!r}"
            )
    return problems
