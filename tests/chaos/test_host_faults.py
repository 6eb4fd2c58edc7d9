"""A short campaign of each machine-level fault family (power, torn, disk, clock) on 3 real
node processes whose data directories are faultfs mounts (and, for clock faults, under
libfaketime): the history is linearizable, no acknowledged write is lost, every node restarts
(a fail-stop after a disk fault is accepted) and each fault was injected at least once.

And the proof that these checks can fail: the same power cut of every node against nodes that
never fsync (--no-fsync) loses acknowledged writes, and the checks say so."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftkv.chaos import FAMILIES, ChaosConfig, ChaosResult, WorkloadConfig, run_campaign
from raftkv.chaos.host import NodeClock, find_libfaketime
from raftkv.check import OpOutcome

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse on this kernel"),
]


def campaign(
    tmp_path: Path,
    faults: tuple[str, ...],
    duration: float,
    seed: int,
    *,
    fsync: bool = True,
    quiet_s: tuple[float, float] = (0.7, 1.2),
    ops_per_key: int = 150,
) -> ChaosResult:
    config = ChaosConfig(
        out=tmp_path / "report",
        nodes=3,
        duration=duration,
        faults=faults,
        seed=seed,
        workload=WorkloadConfig(clients=4, think_s=0.02, ops_per_key=ops_per_key),
        check_steps=2_000_000,
        fault_s=(1.5, 2.5),
        quiet_s=quiet_s,
        fsync=fsync,
    )
    return asyncio.run(run_campaign(config))


def passed(result: ChaosResult, faults: tuple[str, ...]) -> None:
    assert result.passed, "\n".join(result.problems) + f"\nreport: {result.config.out}"
    assert {ev.name for ev in result.events} == set(faults), "a fault was not injected"
    assert result.acked_checked > 0
    assert any(r.outcome is OpOutcome.OK for r in result.records)


def test_power_cuts(tmp_path: Path) -> None:
    result = campaign(tmp_path, FAMILIES["power"], duration=12.0, seed=21)
    passed(result, FAMILIES["power"])
    assert all(d["power_cuts"] >= 1 for d in result.disks.values())


def test_torn_writes(tmp_path: Path) -> None:
    result = campaign(tmp_path, FAMILIES["torn"], duration=9.0, seed=22)
    passed(result, FAMILIES["torn"])
    assert sum(d["torn"] for d in result.disks.values()) >= 1, [e.detail for e in result.events]


def test_fsync_errors_and_a_full_disk(tmp_path: Path) -> None:
    result = campaign(tmp_path, FAMILIES["disk"], duration=12.0, seed=4)
    passed(result, FAMILIES["disk"])
    assert sum(d["fsync_failures"] for d in result.disks.values()) >= 1
    stops = [e for e in result.exits if e.kind == "fail-stop"]
    assert stops, "an fsync error must stop the node (fail-stop)"
    assert all("Input/output error" in e.message or "No space" in e.message for e in stops)


@pytest.mark.skipif(find_libfaketime() is None, reason="needs libfaketime (apt install faketime)")
def test_clock_faults(tmp_path: Path) -> None:
    passed(campaign(tmp_path, FAMILIES["clock"], duration=10.0, seed=5), FAMILIES["clock"])


def test_power_cut_of_every_node_loses_acknowledged_writes_without_fsync(
    tmp_path: Path,
) -> None:
    """The can-fail proof: nodes that never fsync lose what they acknowledged. Keys retire
    after 40 operations and the power goes after 3 s of writes, so several keys are never
    written again after the cut: their acknowledged last values must be found lost."""
    faults = ("power-cut-all",)

    def run(out: Path, fsync: bool) -> ChaosResult:
        return campaign(out, faults, 8.0, seed=31, fsync=fsync, quiet_s=(3.0, 3.5), ops_per_key=40)

    unsynced = run(tmp_path / "nosync", fsync=False)
    assert unsynced.lost, "a power cut of nodes that never fsync must lose acknowledged writes"
    assert any("acknowledged write(s) lost" in p for p in unsynced.problems)
    synced = run(tmp_path / "sync", fsync=True)
    passed(synced, faults)
    assert not synced.lost


PROBE = """
import asyncio, sys, time
import uvloop
async def main():
    loop = asyncio.get_running_loop()
    for line in sys.stdin:
        print(time.monotonic(), loop.time(), flush=True)
uvloop.run(main())
"""


@pytest.mark.skipif(find_libfaketime() is None, reason="needs libfaketime (apt install faketime)")
def test_libfaketime_moves_the_monotonic_and_event_loop_clocks_continuously(
    tmp_path: Path,
) -> None:
    """What a clock fault changes: time.monotonic() and uvloop's loop.time() (the clock of
    raftkv's ticks) run at the set rate, without a jump when the rate changes."""
    lib = find_libfaketime()
    assert lib is not None
    clock = NodeClock(tmp_path / "faketime")
    clock.reset()
    proc = subprocess.Popen(
        [sys.executable, "-c", PROBE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ, **clock.env(lib)),
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def probe() -> tuple[float, float, float]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        mono, loop = map(float, proc.stdout.readline().split())
        return time.monotonic(), mono, loop

    try:
        probe()  # started
        r0, m0, l0 = probe()
        time.sleep(0.5)
        r1, m1, l1 = probe()
        assert (m1 - m0) == pytest.approx(r1 - r0, abs=0.05)
        assert (l1 - l0) == pytest.approx(m1 - m0, abs=0.01)
        clock.set_rate(2.0)
        r2, m2, l2 = probe()
        assert (m2 - m1) == pytest.approx(r2 - r1, abs=0.05), "no jump at the rate change"
        time.sleep(0.5)
        r3, m3, l3 = probe()
        assert (m3 - m2) == pytest.approx(2 * (r3 - r2), abs=0.05)
        assert (l3 - l2) == pytest.approx(m3 - m2, abs=0.01), "the event loop's clock follows"
        clock.set_rate(1.0)
        r5, m5, _ = probe()  # measured from here, the jump is all that differs from real time
        clock.jump(30.0)
        r4, m4, _ = probe()
        assert (m4 - m5) == pytest.approx(30.0 + (r4 - r5), abs=0.05)
    finally:
        proc.kill()
        proc.wait()
