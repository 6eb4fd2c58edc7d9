"""A short campaign of each fault family on 3 real node processes (real fsync): the history
is linearizable, no acknowledged write is lost, the replicas converge and a leader is back
within the bound. Each fault of the family is injected at least once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from raftkv.chaos import FAMILIES, ChaosConfig, WorkloadConfig, run_campaign, write_report
from raftkv.check import OpOutcome

pytestmark = pytest.mark.timeout(120)


def campaign(tmp_path: Path, family: str, duration: float, seed: int) -> dict[str, Any]:
    config = ChaosConfig(
        out=tmp_path / "report",
        nodes=3,
        duration=duration,
        faults=FAMILIES[family],
        seed=seed,
        workload=WorkloadConfig(clients=4, think_s=0.02),
        check_steps=2_000_000,
        fault_s=(1.5, 2.5),
        quiet_s=(0.7, 1.2),
    )
    result = asyncio.run(run_campaign(config))
    doc = write_report(result)
    assert result.passed, "\n".join(result.problems) + f"\nreport: {config.out}"
    assert {ev.name for ev in result.events} == set(FAMILIES[family]), "a fault was not injected"
    assert all(ev.end is not None for ev in result.events)
    assert any(r.outcome is OpOutcome.OK for r in result.records)
    assert json.loads((config.out / "report.json").read_text())["verdict"] == "pass"
    return doc


def test_partitions(tmp_path: Path) -> None:
    doc = campaign(tmp_path, "partition", duration=25.0, seed=11)
    assert doc["checks"]["acknowledged_writes"]["checked"] > 0


def test_kill_and_restart(tmp_path: Path) -> None:
    campaign(tmp_path, "kill", duration=14.0, seed=12)


def test_pause(tmp_path: Path) -> None:
    campaign(tmp_path, "pause", duration=10.0, seed=13)


def test_delay(tmp_path: Path) -> None:
    campaign(tmp_path, "delay", duration=10.0, seed=14)


def test_lossy_links(tmp_path: Path) -> None:
    campaign(tmp_path, "lossy", duration=10.0, seed=15)
