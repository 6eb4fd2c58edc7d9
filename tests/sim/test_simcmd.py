"""`raftkv sim`: one JSON object, exit 1 and a replay command on any violation."""

from __future__ import annotations

import json
import re

import pytest

from raftkv import cli
from raftkv.cli import sim as simcmd
from raftkv.core.messages import RequestVote
from raftkv.core.raft import RaftNode
from raftkv.sim.runner import SeedResult, SimSettings, run_seed


class VotesWithoutLogCheck(RaftNode):
    def _log_ok_for_vote(self, msg: RequestVote) -> bool:
        return True


def test_clean_sweep_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["sim", "--seeds", "0..3", "--nodes", "3", "--json", "--jobs", "2"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["seeds"] == 4 and out["violations"] == 0 and out["linearizable"] == 4
    assert out["ops"] > 0 and out["elections"] > 0 and out["commits"] > 0
    assert out["replay"] == []


def test_violation_exits_1_with_replay_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def mutant(seed: int, settings: SimSettings, trace: bool) -> SeedResult:
        return run_seed(seed, settings, node_factory=VotesWithoutLogCheck, trace=trace)

    monkeypatch.setattr(simcmd, "_run_one", mutant)
    code = cli.main(["sim", "--seeds", "0..1", "--nodes", "5", "--jobs", "1"])
    out = capsys.readouterr().out
    assert code == 1
    failing = re.findall(r"seed (\d+) FAILED", out)
    assert failing, out
    for seed in failing:  # each failing seed comes with the command that replays exactly it
        assert f"replay: raftkv sim --seeds {seed}..{seed} --nodes 5 --faults all" in out


def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sim", "--faults", "nonsense"]) == 2
    assert "unknown fault" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["sim", "--seeds", "9..1"])


def test_an_undecided_history_fails_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    """A search budget too small to decide a history proves nothing: exit 1, say so, and
    print the command that retries with a larger budget."""
    code = cli.main(["sim", "--seeds", "0", "--nodes", "3", "--jobs", "1", "--check-steps", "5"])
    out = capsys.readouterr().out
    assert code == 1
    assert "seed 0 UNDECIDED" in out and "--check-steps 50" in out, out
    assert cli.main(["sim", "--seeds", "0", "--nodes", "3", "--jobs", "1"]) == 0
