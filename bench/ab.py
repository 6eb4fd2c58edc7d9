"""A/B verdicts from interleaved rounds: raftkv (this tree) against `baseline` (--baseline-src).

One round runs both systems close together in time, so the round's ratio cancels most of the
machine's drift, which moves absolute figures by 2x between rounds here. The verdict is the
median of those paired ratios, with a bootstrap interval (resampling rounds) that says how far
the median could move: `--pool` pools the rounds of several runs' results.json files.

Ratios are oriented so that above 1 is better for raftkv: ops/s of raftkv / baseline for the
throughput loads, p50 of baseline / raftkv for single-client put.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

A, B = "raftkv", "baseline"
BOOTSTRAP_RESAMPLES = 4000
CONFIDENCE = 0.90
MIN_ROUNDS = 3  # fewer give no interval worth the name (one round: median = both ends)
LATENCY_LOADS = frozenset({"put1"})  # judged by p50 (lower is better), the rest by ops/s


@dataclass(frozen=True)
class Verdict:
    load: str
    ratios: tuple[float, ...]  # one per paired round, > 1: raftkv better
    median: float
    low: float  # the bootstrap interval of the median
    high: float

    @property
    def text(self) -> str:
        if len(self.ratios) < MIN_ROUNDS:
            return f"too few rounds (at least {MIN_ROUNDS})"
        if self.median >= 1.0:
            return "not worse" if self.low < 1.0 else "better"
        return "worse" if self.high < 1.0 else "worse, within the noise"


def paired_ratios(samples: Iterable[Mapping[str, Any]]) -> dict[str, list[float]]:
    """load -> raftkv/baseline ratio of each round that ran both (samples as results.json
    stores them: system, load, round, doc; `run` tells apart rounds of different files)."""
    rounds: dict[tuple[Any, str, int], dict[str, Mapping[str, Any]]] = {}
    for s in samples:
        key = (s.get("run", 0), str(s["load"]), int(s["round"]))
        rounds.setdefault(key, {})[str(s["system"])] = s["doc"]
    out: dict[str, list[float]] = {}
    for (_, load, _), docs in rounds.items():  # (in the order the rounds ran)
        if A not in docs or B not in docs:
            continue
        field = "p50_ms" if load in LATENCY_LOADS else "ops_per_s"
        a, b = docs[A].get(field), docs[B].get(field)
        if not a or not b:
            continue
        ratio = float(b) / float(a) if load in LATENCY_LOADS else float(a) / float(b)
        out.setdefault(load, []).append(ratio)
    return out


def verdict(load: str, ratios: Sequence[float], seed: int = 1) -> Verdict:
    """The median paired ratio and its bootstrap interval (fixed seed: the same rounds give
    the same verdict)."""
    if not ratios:
        raise ValueError(f"no paired rounds for {load}")
    rng = random.Random(seed)
    n = len(ratios)
    medians = sorted(
        statistics.median(rng.choices(ratios, k=n)) for _ in range(BOOTSTRAP_RESAMPLES)
    )
    tail = (1.0 - CONFIDENCE) / 2
    low = medians[int(tail * (BOOTSTRAP_RESAMPLES - 1))]
    high = medians[int((1.0 - tail) * (BOOTSTRAP_RESAMPLES - 1))]
    return Verdict(load, tuple(ratios), statistics.median(ratios), low, high)


def report_lines(samples: Iterable[Mapping[str, Any]], titles: Mapping[str, str]) -> list[str]:
    """The markdown section: one row per load, every round's ratio shown."""
    pairs = paired_ratios(samples)
    if not pairs:
        return []
    pct = round(CONFIDENCE * 100)
    lines = [
        "## A/B against the baseline",
        "",
        "Per round, raftkv relative to the baseline run in the same round (above 1: raftkv "
        "better; ops/s for throughput, p50 for single-client put, baseline / raftkv). "
        f"The verdict is the median of these paired ratios; the {pct}% interval comes from "
        f"resampling the rounds ({BOOTSTRAP_RESAMPLES} bootstrap resamples, fixed seed). "
        "`not worse`: median >= 1 (`better`: the whole interval above 1); `worse, within "
        "the noise`: median < 1 but the interval reaches 1.",
        "",
        f"| load | rounds | median ratio | {pct}% interval | verdict | each round |",
        "|---|---:|---:|---|---|---|",
    ]
    order = [load for load in titles if load in pairs] + sorted(set(pairs) - set(titles))
    for load in order:
        ratios = pairs[load]
        v = verdict(load, ratios)
        each = " ".join(f"{r:.2f}" for r in v.ratios)
        lines.append(
            f"| {titles.get(load, load)} | {len(ratios)} | {v.median:.3f} | "
            f"{v.low:.3f}-{v.high:.3f} | {v.text} | {each} |"
        )
    lines.append("")
    return lines


def pooled(docs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The samples of several results.json documents, each tagged with its run."""
    out: list[dict[str, Any]] = []
    for run, doc in enumerate(docs):
        for s in doc.get("samples", []):
            out.append({**s, "run": run})
    return out
