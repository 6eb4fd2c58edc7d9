"""The `raftkv` command: parsing, exit codes, output, against fake nodes (no real cluster)."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.fake_server import FakeNode, closed_port_url, fake_cluster_in_thread
from raftkv import cli
from raftkv.devcluster.process import is_node_process, log_tail, node_config, pid_alive, stop
from raftkv.devcluster.topology import Topology, load_topology, save_topology
from raftkv.errors import BadRequest
from raftkv.nodeconfig import serve_command


@pytest.fixture
def nodes() -> Iterator[list[FakeNode]]:
    with fake_cluster_in_thread(2) as started:
        yield started


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No endpoints from the environment or a ./raftkv-data of the developer."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAFTKV_ENDPOINTS", raising=False)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def eps(nodes: list[FakeNode]) -> str:
    return ",".join(n.url for n in nodes)


# --- parsing and exit codes ----------------------------------------------------------------


def test_every_registered_command_builds_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    text = parser.format_help()
    for name in (
        "serve",
        "cluster",
        "put",
        "get",
        "delete",
        "cas",
        "watch",
        "status",
        "member",
        "leader",
        "bench",
    ):
        assert name in text
    with pytest.raises(SystemExit) as e:
        cli.main(["cluster", "up", "--help"])
    assert e.value.code == 0
    assert "P+1000+I-1" in capsys.readouterr().out.replace("\n", " ")


def test_registry_takes_functions_and_module_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    def add_hello(sub: cli.Subparsers) -> None:
        sub.add_parser("hello").set_defaults(func=lambda _a: 7)

    monkeypatch.setattr(cli, "commands", lambda: [add_hello, "raftkv.cli.cluster:add_parser"])
    assert cli.main(["hello"]) == 7
    assert "cluster" in cli.build_parser().format_help()


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["put"],
        ["put", "k"],
        ["get", "k", "--consistency", "bogus"],
        ["bench", "--clients", "0"],
        ["cluster", "up", "--nodes", "0"],
        ["member"],
        ["nope"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_missing_endpoints_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "get", "x")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "RAFTKV_ENDPOINTS" in err


def test_bad_endpoint_and_bad_serve_flags_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "--endpoints", "ftp://x", "get", "x")
    assert code == 2 and "not an http:// URL" in err
    code, _, err = run_cli(
        capsys,
        "serve",
        "--id",
        "n1",
        "--data-dir",
        str(tmp_path),
        "--listen",
        "127.0.0.1:1",
        "--http",
        "127.0.0.1:2",
        "--peers",
        "n2=127.0.0.1:3@http://127.0.0.1:4",
    )
    assert code == 2 and "--peers must include this node" in err


def test_unreachable_cluster_fails_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = closed_port_url()
    code, out, err = run_cli(capsys, "--timeout", "0.5", "--endpoints", url, "put", "x", "1")
    assert code == 1 and out == ""
    assert err.startswith("raftkv: error: put 'x': cannot reach any endpoint")
    assert err.count("\n") == 1 and "Traceback" not in err


# --- commands against fake nodes -------------------------------------------------------------


def test_put_get_delete(nodes: list[FakeNode], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "--endpoints", eps(nodes), "put", "x", "99") == (
        0,
        "OK (revision 1)\n",
        "",
    )
    # options after the subcommand work too
    assert run_cli(capsys, "get", "x", "--endpoints", eps(nodes)) == (0, "99\n", "")
    code, out, _ = run_cli(capsys, "get", "x", "--revision", "--endpoints", eps(nodes))
    assert out == "99\nrevision 1\n"
    code, out, err = run_cli(capsys, "get", "nope", "--endpoints", eps(nodes))
    assert (code, out) == (1, "") and "not found" in err
    code, out, err = run_cli(
        capsys, "put", "x", "1", "--prev-revision", "0", "--endpoints", eps(nodes)
    )
    assert code == 1 and "is at revision 1" in err
    assert (
        run_cli(capsys, "delete", "x", "--endpoints", eps(nodes))[1] == "deleted 'x' (revision 2)\n"
    )
    assert run_cli(capsys, "delete", "x", "--endpoints", eps(nodes))[1] == "'x' did not exist\n"


def test_endpoints_from_the_environment(
    nodes: list[FakeNode], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAFTKV_ENDPOINTS", eps(nodes))
    assert run_cli(capsys, "put", "x", "1")[0] == 0
    assert nodes[0].store.data["x"][0] == b"1"


def test_endpoints_from_the_default_cluster_dir(
    nodes: list[FakeNode], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    topo = Topology.create(1, 20001, False)
    port = int(nodes[0].url.rpartition(":")[2])
    topo = Topology(topo.cluster_id, topo.base_port, (topo.nodes[0].__class__("n1", 1, port),))
    (tmp_path / "raftkv-data").mkdir()
    save_topology(tmp_path / "raftkv-data", topo)
    assert run_cli(capsys, "put", "x", "1")[0] == 0


def test_cas(nodes: list[FakeNode], capsys: pytest.CaptureFixture[str]) -> None:
    e = ("--endpoints", eps(nodes))
    run_cli(capsys, *e, "put", "k", "a")
    assert run_cli(capsys, *e, "cas", "k", "a", "b") == (0, "OK (revision 2)\n", "")
    code, out, err = run_cli(capsys, *e, "cas", "k", "a", "c")
    assert code == 1 and out == ""
    assert err == "raftkv: cas failed: 'k' is 'b', not 'a'; nothing changed\n"


def test_status_table_and_json(nodes: list[FakeNode], capsys: pytest.CaptureFixture[str]) -> None:
    dead = closed_port_url()
    code, out, _ = run_cli(capsys, "--endpoints", f"{eps(nodes)},{dead}", "status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "ENDPOINT",
        "ID",
        "ROLE",
        "TERM",
        "LEADER",
        "COMMIT",
        "APPLIED",
        "LAST",
    ]
    assert lines[1].split()[:3] == [nodes[0].url, "n1", "leader"]
    assert lines[3].split() == [dead, "-", "unreachable"]
    assert "members, as the leader n1 sees them:" in out
    # --json: the same data as the table, every endpoint in order, one JSON object
    code, out, _ = run_cli(capsys, "--endpoints", f"{eps(nodes)},{dead}", "status", "--json")
    doc = json.loads(out)
    assert code == 0 and out.count("\n") == 1
    assert doc["leader"] == "n1"
    assert [n["endpoint"] for n in doc["nodes"]] == [nodes[0].url, nodes[1].url, dead]
    assert [n["status"]["id"] for n in doc["nodes"][:2]] == ["n1", "n2"]
    for node in doc["nodes"][:2]:
        for field in (
            "id",
            "role",
            "term",
            "leader",
            "commit_index",
            "applied_index",
            "last_index",
            "members",
        ):
            assert field in node["status"]
    assert doc["nodes"][2] == {"endpoint": dead, "error": f"connection refused to {dead}"}


def test_member_and_leader_commands(
    nodes: list[FakeNode], capsys: pytest.CaptureFixture[str]
) -> None:
    e = ("--endpoints", eps(nodes))
    code, out, _ = run_cli(capsys, *e, "member", "list")
    header = out.splitlines()[0].split()
    assert code == 0 and header == ["ID", "ROLE", "RAFT", "HTTP", "MATCH", "CAUGHT-UP"]
    code, out, err = run_cli(capsys, *e, "member", "add", "n9", "127.0.0.1:1", "http://127.0.0.1:2")
    assert code == 1 and err.count("\n") == 1
    assert "add member n9: not supported by the server" in err
    code, _, err = run_cli(capsys, *e, "member", "promote", "n9")
    assert code == 1 and "promote member n9" in err
    assert run_cli(capsys, *e, "leader", "transfer", "n2") == (0, "leader is now n2\n", "")


def test_watch_prints_events(nodes: list[FakeNode], capsys: pytest.CaptureFixture[str]) -> None:
    nodes[0].store.events = [
        {"type": "put", "key": "p/a", "value": "1"},
        {"type": "put", "key": "q", "value": "x"},
        {"type": "delete", "key": "p/a", "value": ""},
    ]
    e = ("--endpoints", nodes[0].url)
    code, out, _ = run_cli(capsys, *e, "watch", "p/", "--from-revision", "1", "--count", "2")
    assert (code, out) == (0, "[1] put p/a = 1\n[3] delete p/a\n")
    code, out, _ = run_cli(capsys, *e, "watch", "--from-revision", "1", "--count", "1", "--json")
    assert json.loads(out)["kv"]["key"] == "p/a"


def test_bench_json(nodes: list[FakeNode], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys,
        "--endpoints",
        nodes[0].url,
        "bench",
        "--clients",
        "2",
        "--duration",
        "1.1",
        "--value-size",
        "16",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["op"] == "put" and doc["ops"] > 0 and doc["clients"] == 2
    assert set(doc["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max"}
    assert "ops/s" in err  # the progress line


# --- cluster management pieces (no real nodes) ----------------------------------------------


def test_topology_ports_and_file(tmp_path: Path) -> None:
    topo = Topology.create(3, 7001, True)
    assert [(n.id, n.raft_port, n.http_port) for n in topo.nodes] == [
        ("n1", 7001, 8001),
        ("n2", 7002, 8002),
        ("n3", 7003, 8003),
    ]
    assert topo.endpoints[0] == "http://127.0.0.1:8001"
    assert topo.peers_spec.startswith("n1=127.0.0.1:7001@http://127.0.0.1:8001,n2=")
    assert load_topology(tmp_path) is None
    save_topology(tmp_path, topo)
    assert load_topology(tmp_path) == topo
    (tmp_path / "cluster.json").write_text("{")
    with pytest.raises(BadRequest, match="not valid JSON"):
        load_topology(tmp_path)
    with pytest.raises(BadRequest, match="out of range"):
        Topology.create(3, 65000, False)


def test_topology_join_and_remove_never_reuse_an_id(tmp_path: Path) -> None:
    topo, n4 = Topology.create(3, 7001, False).with_joined()
    assert (n4.id, n4.raft_port, n4.http_port, n4.joined) == ("n4", 7004, 8004, True)
    assert "n4=" not in topo.peers_spec  # a joined node starts with --join, not as a founder
    topo = topo.without("n4")
    assert [n.id for n in topo.nodes] == ["n1", "n2", "n3"] and topo.retired == ("n4",)
    topo, n5 = topo.with_joined()
    assert n5.id == "n5"
    save_topology(tmp_path, topo)
    assert load_topology(tmp_path) == topo
    serve = serve_command(node_config(tmp_path, topo, n5))
    assert serve[serve.index("--join") + 1].split(",") == topo.endpoints[:3]
    assert "--peers" not in serve
    with pytest.raises(BadRequest, match="not a node"):
        topo.without("n9")


def test_cluster_down_without_a_cluster(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "cluster", "down", "--data-dir", str(tmp_path / "none"))
    assert code == 1 and "no cluster in" in err


def test_cluster_up_refuses_a_busy_port(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = run_cli(
            capsys,
            "cluster",
            "up",
            "--nodes",
            "1",
            "--data-dir",
            str(tmp_path / "c"),
            "--base-port",
            str(port),
        )
    assert code == 1 and f"port {port} (n1 raft)" in err and "in use" in err


def test_stale_pid_files_are_never_trusted(tmp_path: Path) -> None:
    import os  # noqa: PLC0415

    assert pid_alive(os.getpid())
    assert not is_node_process(os.getpid(), tmp_path)  # alive, but not a node of tmp_path
    assert stop({}, 0.1) == {}
    (tmp_path / "log").write_text("a\nb\nc\n")
    assert log_tail(tmp_path / "log", lines=2) == "    b\n    c"


def test_handler_signature_is_namespace_to_int() -> None:
    args = cli.build_parser().parse_args(["put", "k", "v"])
    assert isinstance(args, argparse.Namespace) and callable(args.func)
