"""Lease reads in the simulator: the scripted stale-lease scenarios pass for the correct core
on several seeds (their planted-bug counterparts are in test_mutations.py), and the vote hold
after a restart delays a whole-cluster restart's election by at most one election timeout."""

from __future__ import annotations

import pytest

from raftkv.sim.runner import SIM_RAFT_CONFIG
from raftkv.sim.scenarios import (
    election_after_whole_cluster_restart,
    stale_lease_after_restart,
    stale_lease_with_mixed_timeouts,
)

from .test_mutations import VotesRightAfterRestart

ELECTION_TIMEOUT_MS = SIM_RAFT_CONFIG.election_ticks * 10.0  # the simulator's tick is 10 ms


@pytest.mark.parametrize("seed", range(1, 6))
def test_no_stale_lease_read_after_a_restart(seed: int) -> None:
    assert stale_lease_after_restart(seed=seed) == []


@pytest.mark.parametrize("seed", range(1, 6))
def test_no_stale_lease_read_with_mixed_election_timeouts(seed: int) -> None:
    assert stale_lease_with_mixed_timeouts(seed=seed) == []


def test_a_whole_cluster_restart_elects_at_most_one_election_timeout_later() -> None:
    """Every node restarts within 100 ms. Without the hold, the first leader comes one to two
    election timeouts after the restart; the hold may cost one more, not more."""
    seeds = range(40)
    with_hold = [election_after_whole_cluster_restart(seed=s, spread_ms=100.0) for s in seeds]
    without = [
        election_after_whole_cluster_restart(VotesRightAfterRestart, seed=s, spread_ms=100.0)
        for s in seeds
    ]
    slack = 1.05 * ELECTION_TIMEOUT_MS + 20.0  # 5% clock drift, a few message delays
    assert max(with_hold) <= max(without) + slack, (max(with_hold), max(without))
    assert sum(with_hold) / len(seeds) <= sum(without) / len(seeds) + ELECTION_TIMEOUT_MS / 2
