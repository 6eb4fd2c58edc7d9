"""Quorum math against every case of etcd-io/raft's quorum test vectors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftkv.core import quorum

# etcd-io/raft's quorum vectors, kept in the repository (tests/data/README.md: source, license).
DATA = Path(__file__).resolve().parents[1] / "data" / "etcd-raft-quorum"


@dataclass(frozen=True)
class Case:
    file: str
    line: int
    command: str
    args: dict[str, list[str]]
    answer: str


def _parse_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def load_cases(name: str) -> list[Case]:
    lines = (DATA / name).read_text().splitlines()
    cases: list[Case] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            i += 1
            continue
        command, *rest = line.split(" ", 1)
        args = {
            k: ([] if v == "zero" else _parse_list(v.strip("()")))
            for k, v in re.findall(r"(\w+)=(\([^)]*\)|zero)", rest[0] if rest else "")
        }
        assert lines[i + 1] == "----", f"{name}:{i + 2}"
        j = i + 2
        while j < len(lines) and lines[j].strip():
            j += 1
        cases.append(Case(name, i + 1, command, args, lines[j - 1].strip()))
        i = j
    return cases


def _ids_and_values(case: Case, key: str) -> tuple[list[str], list[str], dict[str, str]]:
    cfg, cfgj = case.args.get("cfg", []), case.args.get("cfgj", [])
    order = list(dict.fromkeys(cfg + cfgj))
    values = dict(zip(order, case.args.get(key, []), strict=False))
    return cfg, cfgj, values


def _expected_index(answer: str) -> int:
    return quorum.UNBOUNDED if answer.endswith("∞") else int(answer)


def _commit_cases() -> list[Case]:
    return load_cases("majority_commit.txt") + load_cases("joint_commit.txt")


def _vote_cases() -> list[Case]:
    return load_cases("majority_vote.txt") + load_cases("joint_vote.txt")


def test_all_cases_are_loaded() -> None:
    assert (len(load_cases("majority_commit.txt")), len(load_cases("majority_vote.txt"))) == (
        16,
        22,
    )
    assert (len(load_cases("joint_commit.txt")), len(load_cases("joint_vote.txt"))) == (50, 39)


@pytest.mark.parametrize("case", _commit_cases(), ids=lambda c: f"{c.file}:{c.line}")
def test_committed_index(case: Case) -> None:
    cfg, cfgj, values = _ids_and_values(case, "idx")
    match = {k: (0 if v == "_" else int(v)) for k, v in values.items()}
    if "cfgj" in case.args:
        got = quorum.joint_committed_index(cfg, cfgj, match)
    else:
        got = quorum.committed_index(cfg, match)
    assert got == _expected_index(case.answer)


@pytest.mark.parametrize("case", _vote_cases(), ids=lambda c: f"{c.file}:{c.line}")
def test_vote_result(case: Case) -> None:
    cfg, cfgj, values = _ids_and_values(case, "votes")
    votes = {k: v == "y" for k, v in values.items() if v != "_"}
    if "cfgj" in case.args:
        got = quorum.joint_vote_result(cfg, cfgj, votes)
    else:
        got = quorum.vote_result(cfg, votes)
    assert got.value == case.answer
