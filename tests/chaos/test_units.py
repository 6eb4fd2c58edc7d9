"""The harness's pure parts, without processes: partition shapes, the fault list, the key
space, op records, the lost-write and linearizability verdicts, the report and the CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
from pathlib import Path

import pytest

from raftkv.chaos import ALL_FAULTS, FAMILIES, expand_faults
from raftkv.chaos import partitions as shapes
from raftkv.chaos.checks import check_linearizable, find_lost_writes
from raftkv.chaos.history import FINAL_CLIENT, OpRecord, outcome_counts, to_operations
from raftkv.chaos.host import NodeClock, classify_exit
from raftkv.chaos.nemesis import FaultEvent
from raftkv.chaos.proxy import LinkProxy
from raftkv.chaos.report import (
    fault_outages,
    latency_summary,
    longest_gap,
    percentile,
    write_report,
)
from raftkv.chaos.runner import ChaosConfig, ChaosResult
from raftkv.chaos.workload import KeySpace
from raftkv.check import OpOutcome
from raftkv.cli.chaos import add_parser

IDS3 = ["n1", "n2", "n3"]
IDS5 = ["n1", "n2", "n3", "n4", "n5"]


# --- partition shapes -----------------------------------------------------------------------


@pytest.mark.parametrize("ids", [IDS3, IDS5])
@pytest.mark.parametrize("seed", range(5))
def test_every_shape_is_symmetric_and_covers_every_node(ids: list[str], seed: int) -> None:
    rng = random.Random(seed)
    for reach in (
        shapes.isolate(ids, ids[0]),
        shapes.random_split(ids, rng)[0],
        shapes.bridge(ids, rng)[0],
        shapes.ring(ids, rng)[0],
    ):
        assert set(reach) == set(ids)
        assert all(n in reach[n] for n in ids)
        assert shapes.is_symmetric(reach)


def test_split_leaves_exactly_one_majority() -> None:
    reach, minority = shapes.random_split(IDS5, random.Random(1))
    assert len(minority) == 2
    sides = {frozenset(r) for r in reach.values()}
    assert sorted(len(s) for s in sides) == [2, 3]


def test_bridge_talks_to_both_halves_that_cannot_talk() -> None:
    reach, middle = shapes.bridge(IDS5, random.Random(2))
    assert reach[middle] == set(IDS5)
    others = [n for n in IDS5 if n != middle]
    halves = {frozenset(reach[n]) for n in others}
    assert len(halves) == 2 and all(len(h) == 3 for h in halves)  # 2 + the bridge: a majority


def test_ring_gives_every_node_a_different_majority() -> None:
    reach, _ = shapes.ring(IDS5, random.Random(3))
    assert all(len(r) == 3 for r in reach.values())
    assert len({frozenset(r) for r in reach.values()}) == 5


def test_drop_lists_are_the_complement_of_reach() -> None:
    drops = shapes.drop_lists(shapes.isolate(IDS3, "n2"))
    assert drops == {"n1": ["n2"], "n2": ["n1", "n3"], "n3": ["n2"]}


# --- fault names ------------------------------------------------------------------------------


def test_expand_faults_accepts_families_names_all_and_none() -> None:
    assert expand_faults("all") == list(ALL_FAULTS)
    assert expand_faults("none") == []
    assert expand_faults("kill,pause-leader,kill-all") == [*FAMILIES["kill"], "pause-leader"]
    with pytest.raises(ValueError, match="unknown fault 'flood'"):
        expand_faults("partition,flood")


# --- workload pieces ---------------------------------------------------------------------------


def test_keys_retire_after_their_quota() -> None:
    keys = KeySpace(2, ops_per_key=3)
    rng = random.Random(0)
    taken = [keys.take(rng) for _ in range(30)]
    counts = {k: taken.count(k) for k in set(taken)}
    assert max(counts.values()) <= 3
    assert len(keys.used) >= 10 and len(keys.active) == 2


def test_a_read_with_no_answer_leaves_the_history_and_a_write_stays_open() -> None:
    get = OpRecord(0, 1, "get", "k", consistency="linearizable", call=1.0)
    get.finish(OpOutcome.UNKNOWN, 2.0, error="Timeout")
    put = OpRecord(1, 1, "put", "k", value="1.1", call=1.5)
    put.finish(OpOutcome.UNKNOWN, 3.0, error="Timeout")
    assert get.outcome is OpOutcome.FAIL
    ops = to_operations([get, put])
    assert len(ops) == 1 and ops[0].is_open
    assert outcome_counts([get, put])["total"] == {"ok": 0, "fail": 1, "unknown": 1}


def _op(
    i: int,
    kind: str,
    value: str | None,
    call: float,
    ret: float,
    output: object = None,
    outcome: OpOutcome = OpOutcome.OK,
    client: int = 0,
) -> OpRecord:
    rec = OpRecord(i, client, kind, "k", value=value, call=call)
    if kind == "get":
        rec.consistency = "linearizable"
    rec.finish(outcome, ret, output)  # type: ignore[arg-type]
    return rec


def test_lost_write_is_found_and_a_concurrent_overwrite_is_not_a_loss() -> None:
    w1 = _op(0, "put", "a", 0.0, 1.0)
    w2 = _op(1, "put", "b", 2.0, 3.0)
    checked, lost = find_lost_writes([w1, w2], {"k": "a"})
    assert checked == 2 and [w.value for w in lost] == ["b"]  # b was acked after a ended
    assert find_lost_writes([w1, w2], {"k": None})[1][0].final is None
    w3 = _op(2, "put", "c", 2.5, 4.0, outcome=OpOutcome.UNKNOWN)
    assert find_lost_writes([w1, w2, w3], {"k": "c"})[1] == []  # c may follow b
    concurrent = _op(3, "put", "d", 0.5, 2.5)  # overlaps b: d may be last
    assert find_lost_writes([w1, w2, concurrent], {"k": "d"})[1] == []


def test_checker_flags_a_stale_read() -> None:
    ok = [_op(0, "put", "a", 0.0, 1.0), _op(1, "put", "b", 2.0, 3.0)]
    stale = _op(2, "get", None, 4.0, 5.0, output="a", client=1)
    assert check_linearizable(ok, 10_000).ok
    bad = check_linearizable([*ok, stale], 10_000)
    assert bad.verdict == "not-linearizable", bad.explanation


# --- report -----------------------------------------------------------------------------------


def test_figures() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    recs = [_op(0, "put", "a", 0.0, 0.5), _op(1, "put", "b", 3.0, 3.5)]
    assert longest_gap(recs, 4.0) == 3.0
    assert latency_summary(recs)["put"]["count"] == 2
    events = [FaultEvent("kill-leader", "", 0.6, 1.0), FaultEvent("pause-node", "", 3.6, 3.8)]
    outages = fault_outages(recs, events, 4.0)
    assert outages["kill-leader"] == {"count": 1, "mean_s": 2.4, "max_s": 2.4}  # 0.6 .. 3.0
    assert outages["pause-node"]["max_s"] == 0.4  # nothing completes from 3.6 to the end


def test_report_directory_is_complete(tmp_path: Path) -> None:
    records = [
        _op(0, "put", "a", 0.1, 0.2),
        _op(1, "get", None, 0.3, 1.9, output="a", client=1),
        _op(2, "cas", "b", 0.5, 2.0, outcome=OpOutcome.UNKNOWN, client=2),
        _op(3, "get", None, 5.0, 5.1, output="b", client=FINAL_CLIENT),
    ]
    result = ChaosResult(ChaosConfig(out=tmp_path, duration=5.0, faults=("kill-leader",)))
    result.records, result.duration = records, 5.0
    result.events = [FaultEvent("kill-leader", "kill -9 n1", 1.0, 2.5, ["n1"])]
    result.linearizability = check_linearizable(records, 10_000)
    result.acked_checked, result.lost = find_lost_writes(records, {"k": "b"})
    doc = write_report(result)
    assert doc["verdict"] == "pass"
    assert doc["ops"]["outcomes"]["total"] == {"ok": 2, "fail": 0, "unknown": 1}
    assert json.loads((tmp_path / "report.json").read_text())["faults"][0]["family"] == "kill"
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 4
    assert "kill-leader" in (tmp_path / "summary.md").read_text()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_parses_a_campaign(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="raftkv")
    add_parser(parser.add_subparsers(dest="command"))
    argv = ["chaos", "--nodes", "5", "--duration", "9", "--faults", "partition,kill-all"]
    argv += ["--seed", "7", "--out", str(tmp_path), "--json", "--fault-s", "1:2"]
    args = parser.parse_args(argv)
    assert args.faults == [*FAMILIES["partition"], "kill-all"]
    assert (args.nodes, args.duration, args.seed, args.json) == (5, 9.0, 7, True)
    assert args.fault_s == (1.0, 2.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["chaos", "--faults", "meteor"])


# --- one-way relays ---------------------------------------------------------------------------


async def relay_roundtrip() -> list[bytes]:
    """What dst receives from src through the relay: before a cut, during it, after heal."""
    got: list[bytes] = []

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    proxy = LinkProxy({"src": 1, "dst": server.sockets[0].getsockname()[1]})
    await proxy.start()

    async def send(data: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port("src", "dst"))
        with contextlib.suppress(ConnectionError):  # a cut relay may reset the connection
            writer.write(data)
            await writer.drain()
            await asyncio.wait_for(reader.read(100), 2.0)  # EOF: the sink or the relay closed
        writer.close()

    try:
        await send(b"before")
        proxy.cut([("src", "dst")])
        await send(b"during")
        proxy.heal()
        await send(b"after")
    finally:
        await proxy.close()
        server.close()
    return got


def test_a_cut_relay_drops_one_direction_until_healed() -> None:
    assert asyncio.run(relay_roundtrip()) == [b"before", b"after"]


def test_every_fault_family_has_a_plot_colour() -> None:
    from raftkv.chaos.plot import FAMILY_COLORS  # noqa: PLC0415

    assert set(FAMILY_COLORS) == set(FAMILIES)


# --- machine-level faults: exit judgement and the fake clock's arithmetic ---------------------


def test_a_disk_failure_exit_after_a_disk_fault_is_a_fail_stop() -> None:
    log = (
        "2026-01-01 00:00:00,000 CRITICAL raftkv.node: n2: DISK FAILURE, node stops "
        "acknowledging and shuts down: save failed: [Errno 5] Input/output error\n"
        "2026-01-01 00:00:00,100 CRITICAL raftkv.server: n2: save failed: [Errno 5] "
        "Input/output error\n"
    )
    e = classify_exit("n2", 1, log, disk_fault=True, served=True)
    assert (e.kind, e.accepted) == ("fail-stop", True)
    assert "Input/output error" in e.message
    # The same exit with no disk fault injected is a finding.
    assert classify_exit("n2", 1, log, disk_fault=False, served=True).kind == "crash"


def test_a_clear_refusal_to_start_is_accepted_and_a_traceback_is_not() -> None:
    refusal = (
        "2026-01-01 00:00:00,000 CRITICAL raftkv.server: n1: wal-0000000001.log: bad "
        "checksum at offset 4096 (CorruptionError)\n"
    )
    e = classify_exit("n1", 1, refusal, disk_fault=False, served=False)
    assert (e.kind, e.accepted) == ("refused-start", True)
    crash = "Traceback (most recent call last):\n  ...\nValueError: boom\n"
    assert classify_exit("n1", 1, crash, disk_fault=True, served=False).kind == "crash"
    assert classify_exit("n1", 1, "", disk_fault=True, served=False).kind == "crash"
    assert classify_exit("n1", -11, refusal, disk_fault=True, served=False).kind == "crash"


def test_a_fake_clock_rate_change_keeps_the_clock_continuous(tmp_path: Path) -> None:
    clock = NodeClock(tmp_path / "faketime")
    clock.reset()
    clock.spawned_at -= 10.0  # the process started 10 s ago
    clock.set_rate(2.0)  # libfaketime would put it at 20 s: the offset takes 10 s back
    assert clock.offset_s == pytest.approx(-10.0, abs=0.01)
    assert (tmp_path / "faketime").read_text().startswith("-10.0")
    assert (tmp_path / "faketime").read_text().strip().endswith("x2.000000")
    clock.jump(5.0)
    assert clock.offset_s == pytest.approx(-5.0, abs=0.01)
