"""A slice of the simulator sweep runs in `make test`; `make sim-long` runs thousands of seeds."""

from __future__ import annotations

import pytest

from raftkv.sim.faults import parse_faults
from raftkv.sim.runner import SimSettings, run_seed

FIVE = SimSettings(nodes=5)
THREE = SimSettings(nodes=3)


def _assert_clean(seed: int, settings: SimSettings) -> None:
    result = run_seed(seed, settings)
    assert result.violations == [], f"seed {seed}: replay with raftkv sim --seeds {seed}..{seed}"
    assert result.linearizable == "linearizable"
    # The run did real work: the checks below guard against a vacuous pass.
    assert result.ok > 100 and result.commits > 100 and result.elections >= 1


@pytest.mark.parametrize("block", range(8))
def test_five_nodes_all_faults(block: int) -> None:
    for seed in range(block * 6, block * 6 + 6):
        _assert_clean(seed, FIVE)


@pytest.mark.parametrize("block", range(4))
def test_three_nodes_all_faults(block: int) -> None:
    for seed in range(1000 + block * 6, 1000 + block * 6 + 6):
        _assert_clean(seed, THREE)


def test_a_seed_replays_exactly() -> None:
    first = run_seed(11, FIVE, trace=True)
    second = run_seed(11, FIVE, trace=True)
    assert first.trace and first.trace == second.trace
    assert (first.ops, first.commits, first.events) == (second.ops, second.commits, second.events)


def test_different_seeds_differ() -> None:
    assert run_seed(1, FIVE).events != run_seed(2, FIVE).events


def test_membership_churn_under_faults() -> None:
    settings = SimSettings(nodes=5, faults=parse_faults("membership,crash,partition,loss"))
    changes = 0
    for seed in range(2000, 2006):
        result = run_seed(seed, settings, trace=True)
        assert result.violations == [], f"seed {seed}"
        assert result.trace is not None
        changes += sum("membership_changed" in line for line in result.trace)
        assert any("membership remove" in line for line in result.trace), f"seed {seed}"
    assert changes > 20, "the schedule must really change the configuration"


def test_lost_synced_data_and_failed_fsyncs_under_faults() -> None:
    """Issue 18 item 4: nodes lose synced data (a minority at a time) and recover it from
    their peers; fsyncs fail, nodes stop and restart on their page cache and lose power."""
    settings = SimSettings(nodes=5, faults=parse_faults("corrupt,fsync-error,crash,partition"))
    damaged = recovered = exits = 0
    for seed in range(3000, 3006):
        result = run_seed(seed, settings, trace=True)
        assert result.violations == [], f"seed {seed}"
        assert result.trace is not None and result.ok > 100
        damaged += sum(" DAMAGED " in line for line in result.trace)
        recovered += sum(" recovered " in line for line in result.trace)
        exits += sum(" EXIT after a disk error" in line for line in result.trace)
    assert damaged >= 6 and recovered >= damaged // 2 and exits >= 3, (damaged, recovered, exits)
