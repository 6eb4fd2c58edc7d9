"""Flags with one meaning each: --wait's three meanings got three names (the old spelling
stays where scripts used it, with a warning); an empty --endpoints is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.fake_server import fake_cluster_in_thread
from raftkv import cli
from raftkv.devcluster.topology import DEFAULT_DATA_DIR, Topology, save_topology


def parse(*argv: str) -> dict[str, object]:
    return vars(cli.build_parser().parse_args(list(argv)))


def test_each_wait_has_its_own_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse("member", "promote", "n4", "--wait-caught-up", "30")["wait_caught_up"] == 30.0
    assert parse("member", "promote", "n4")["wait_caught_up"] == 0.0
    assert parse("cluster", "up", "--leader-timeout", "20")["leader_timeout"] == 20.0
    assert parse("cluster", "join")["leader_timeout"] == 30.0
    args = parse("cluster", "remove", "n3", "--timeout", "4", "--kill-after", "2")
    assert (args["timeout"], args["kill_after"]) == (4.0, 2.0)
    assert parse("cluster", "down", "--kill-after", "0")["kill_after"] == 0.0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("argv", "dest", "new"),
    [
        (["member", "promote", "n4", "--wait", "30"], "wait_caught_up", "--wait-caught-up"),
        (["cluster", "up", "--wait", "20"], "leader_timeout", "--leader-timeout"),
        (["cluster", "down", "--wait", "5"], "kill_after", "--kill-after"),
    ],
)
def test_the_old_wait_still_works_with_a_warning(
    argv: list[str], dest: str, new: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert parse(*argv)[dest] == float(argv[-1])
    assert capsys.readouterr().err == f"raftkv: warning: --wait is deprecated here, use {new}\n"
    with pytest.raises(SystemExit):  # not in --help
        cli.main([*argv[:-2], "--help"])
    assert "--wait " not in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["cluster", "join", "--wait", "1"], ["cluster", "remove", "n1", "--wait", "1"]]
)
def test_wait_is_gone_where_nothing_used_it(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2


def test_an_empty_endpoints_flag_is_an_error_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_cluster_in_thread(1) as (node,):
        monkeypatch.setenv("RAFTKV_ENDPOINTS", node.url)  # both fallbacks would work
        (tmp_path / DEFAULT_DATA_DIR).mkdir()
        save_topology(tmp_path / DEFAULT_DATA_DIR, Topology.create(1, 20001, False))
        for empty in ("", " ", ","):
            code = cli.main(["--endpoints", empty, "put", "x", "1"])
            err = capsys.readouterr().err
            assert code == 2 and node.store.data == {}
            assert err.startswith("raftkv: error: ") and "empty" in err
        assert cli.main(["put", "x", "1"]) == 0  # without the flag: $RAFTKV_ENDPOINTS
        assert node.store.data["x"][0] == b"1"
