"""`raftkv serve` settings from flags, RAFTKV_* variables, a TOML file (--config) and defaults:
precedence, --print-config, errors, and the launchers' command lines (nodeconfig)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cmdline.nodes import status, wait_leader
from raftkv import cli
from raftkv.chaos.cluster import ChaosCluster
from raftkv.cli.serve import layers_of
from raftkv.demo.supervisor import make_plan
from raftkv.devcluster.ports import free_ports
from raftkv.devcluster.process import node_config
from raftkv.devcluster.topology import Topology
from raftkv.nodeconfig import OPTIONS, ServeConfig, node_settings, serve_command, serve_env

REQUIRED = 'id = "n1"\ndata_dir = "d"\nlisten = "127.0.0.1:7001"\nhttp = "127.0.0.1:8001"\n'


def print_config(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, dict[str, object], dict[str, str]]:
    """Run `raftkv serve --print-config ARGV`: exit code, the TOML, each setting's source."""
    code = cli.main(["serve", "--print-config", *argv])
    out = capsys.readouterr().out
    sources = {}
    for line in out.splitlines():
        if not line.startswith("#") and " = " in line:
            sources[line.split(" = ", 1)[0]] = line.rsplit("  # ", 1)[1]
    return code, tomllib.loads(out), sources


def test_each_setting_comes_from_the_highest_layer_that_gives_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    node_toml = tmp_path / "node.toml"
    node_toml.write_text(REQUIRED + "tick_ms = 70\nelection_ticks = 12\nsnapshot_entries = 500\n")
    monkeypatch.setenv("RAFTKV_ELECTION_TICKS", "14")
    monkeypatch.setenv("RAFTKV_SNAPSHOT_ENTRIES", "600")
    flags = ["--config", str(node_toml), "--snapshot-entries", "700"]
    code, doc, sources = print_config(capsys, *flags)
    assert code == 0
    assert (doc["tick_ms"], sources["tick_ms"]) == (70.0, f"file {node_toml}")
    assert (doc["election_ticks"], sources["election_ticks"]) == (14, "env RAFTKV_ELECTION_TICKS")
    assert (doc["snapshot_entries"], sources["snapshot_entries"]) == (
        700,
        "flag --snapshot-entries",
    )
    assert (doc["request_timeout"], sources["request_timeout"]) == (5.0, "default")
    assert doc["data_dir"] == str(tmp_path / "d")  # a relative path in the file: from its dir
    assert not (tmp_path / "d").exists()  # --print-config starts nothing
    # ... and the same values are what the node would run with
    args = cli.build_parser().parse_args(["serve", *flags])
    settings = node_settings(layers_of(args).config())
    assert (settings.tick_ms, settings.election_ticks, settings.snapshot_entries) == (70, 14, 700)
    assert settings.request_timeout_s == 5.0 and settings.data_dir == tmp_path / "d"


def test_print_config_is_a_config_file_that_gives_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAFTKV_PEERS", "n1=127.0.0.1:7001@http://127.0.0.1:8001,n2=h:1@http://h:2")
    argv = ["--id", "n1", "--data-dir", "d", "--listen", "127.0.0.1:7001"]
    argv += ["--http", "127.0.0.1:8001", "--allow-fault-injection", "--idle-timeout", "2.5"]
    code = cli.main(["serve", "--print-config", *argv])
    printed = capsys.readouterr().out
    assert code == 0
    monkeypatch.delenv("RAFTKV_PEERS")
    again = tmp_path / "again.toml"
    again.write_text(printed)
    code, doc, sources = print_config(capsys, "--config", str(again))
    assert code == 0 and doc == tomllib.loads(printed)
    assert doc["peers"] == ["n1=127.0.0.1:7001@http://127.0.0.1:8001", "n2=h:1@http://h:2"]
    assert doc["data_dir"] == str(tmp_path / "d")  # paths are shown absolute
    assert set(sources.values()) == {f"file {again}"}


def test_a_node_runs_with_settings_from_the_file_the_environment_and_flags(
    tmp_path: Path,
) -> None:
    raft, file_http, env_http = free_ports(3)
    node_toml = tmp_path / "node.toml"
    node_toml.write_text(
        f'id = "n1"\ndata_dir = "data"\nlisten = "127.0.0.1:{raft}"\n'
        f'http = "127.0.0.1:{file_http}"\nwal_segment_mb = 1\n'
    )
    env = serve_env() | {"RAFTKV_CONFIG": str(node_toml), "RAFTKV_HTTP": f"127.0.0.1:{env_http}"}
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "raftkv.cli", "serve", "--id", "n7", "--no-fsync"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_leader(f"http://127.0.0.1:{env_http}", proc, log)  # HTTP from the environment
        st = status(f"http://127.0.0.1:{env_http}")
        assert st is not None and st["id"] == "n7"  # the flag beats the file's id
        assert (tmp_path / "data" / "raft").is_dir()  # data_dir from the file, beside it
        assert status(f"http://127.0.0.1:{file_http}") is None
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    ("file_text", "env", "message"),
    [
        ("tick = 5\n", {}, "node.toml: unknown key 'tick' (did you mean tick_ms?)"),
        ("data-dir = 'x'\n", {}, "node.toml: unknown key 'data-dir' (did you mean data_dir?)"),
        ("[tls]\nca = 'x'\n", {}, "node.toml: unknown key 'tls'"),
        (
            'election_ticks = "ten"\n',
            {},
            'node.toml: election_ticks: must be an integer, got "ten"',
        ),
        ("request_timeout = -1\n", {}, "node.toml: request_timeout: must be > 0, got -1"),
        ("max_streams = 0\n", {}, "node.toml: max_streams: must be >= 1, got 0"),
        ("peers = 'n1=a:1@http://a:2'\n", {}, "node.toml: peers: must be an array of strings"),
        (
            'listen = "nocolon"\n',
            {},
            "node.toml: listen: address 'nocolon' must look like HOST:PORT",
        ),
        ("id = \n", {}, "node.toml: not valid TOML"),
        ("", {"RAFTKV_TICKMS": "5"}, "unknown environment variable RAFTKV_TICKMS (did you mean "),
        ("", {"RAFTKV_MAX_STREAMS": "many"}, "RAFTKV_MAX_STREAMS='many': 'many' is not an integer"),
        (
            "",
            {"RAFTKV_SNAPSHOT_ENTRIES": "-5"},
            "RAFTKV_SNAPSHOT_ENTRIES='-5': must be >= 0, got -5",
        ),
        ("", {"RAFTKV_SLOW": "0.5"}, "RAFTKV_SLOW='0.5': must be in 1..1000, got 0.5"),
        ("", {"RAFTKV_ALLOW_FAULT_INJECTION": "maybe"}, "'maybe' is not a boolean"),
        ("", {"RAFTKV_FSYNC": "false"}, "unknown environment variable RAFTKV_FSYNC"),
    ],
)
def test_a_bad_setting_is_a_usage_error_naming_it_and_its_source(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    file_text: str,
    env: dict[str, str],
    message: str,
) -> None:
    node_toml = tmp_path / "node.toml"
    node_toml.write_text(file_text)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    argv = ["serve", "--config", str(node_toml), "--id", "n1", "--data-dir", "d"]
    code = cli.main([*argv, "--listen", "127.0.0.1:1", "--http", "127.0.0.1:2"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("raftkv: error: ") and message in err.replace(str(tmp_path) + "/", "")
    assert not (tmp_path / "d").exists()


def test_every_error_is_reported_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    node_toml = tmp_path / "node.toml"
    node_toml.write_text("tick_ms = 0\nbogus = 1\n")
    monkeypatch.setenv("RAFTKV_ELECTION_TICKS", "x")
    assert cli.main(["serve", "--config", str(node_toml)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raftkv: error: bad configuration:\n")
    for part in ("tick_ms: must be > 0", "unknown key 'bogus'", "RAFTKV_ELECTION_TICKS='x'"):
        assert part in err


def test_missing_settings_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--id", "n1"]) == 2
    err = capsys.readouterr().err
    assert "missing required setting(s): data_dir (--data-dir, RAFTKV_DATA_DIR or data_dir" in err
    assert cli.main(["serve", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err
    assert cli.main(["serve", "--id", "n1", "--tick-ms", "-1"]) == 2  # a flag: checked alike
    assert "tick_ms (--tick-ms) must be > 0, got -1" in capsys.readouterr().err


def test_print_config_checks_the_settings_fit_together(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--id", "n1", "--data-dir", "d", "--listen", "127.0.0.1:1", "--http", "127.0.0.1:2"]
    code = cli.main(["serve", "--print-config", *argv, "--peers", "n2=h:1@http://h:2"])
    out, err = capsys.readouterr()
    assert code == 2 and 'id = "n1"' in out  # shown, then refused
    assert "--peers must include this node ('n1')" in err


def test_the_clients_variables_are_not_serve_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("RAFTKV_ENDPOINTS", "RAFTKV_TOKEN", "RAFTKV_CACERT", "RAFTKV_TOKEN_FILE"):
        monkeypatch.setenv(var, "x")
    argv = ["--id", "n1", "--data-dir", "d", "--listen", "127.0.0.1:1", "--http", "127.0.0.1:2"]
    assert print_config(capsys, *argv)[0] == 0


# --- the one command line of launched nodes ---------------------------------------------------


def parse_back(argv: list[str]) -> ServeConfig:
    """The settings a `raftkv serve` command line gives (no environment, no file)."""
    assert argv[:4] == [sys.executable, "-m", "raftkv.cli", "serve"]
    return layers_of(cli.build_parser().parse_args(argv[3:]), env={}).config()


def test_serve_command_gives_the_node_exactly_its_settings(tmp_path: Path) -> None:
    base = ServeConfig(id="n1", data_dir=tmp_path, listen="127.0.0.1:1", http="127.0.0.1:2")
    assert serve_command(base)[4:] == [
        "--id", "n1", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:1",
        "--http", "127.0.0.1:2",
    ]  # fmt: skip
    full = ServeConfig(
        id="n2",
        data_dir=tmp_path / "a b",
        listen="[::1]:7002",
        http="127.0.0.1:8002",
        peers=("n1=127.0.0.1:7001@http://127.0.0.1:8001", "n2=[::1]:7002@http://127.0.0.1:8002"),
        cluster_id="c-1",
        allow_fault_injection=True,
        tick_ms=12.345678901,
        election_ticks=7,
        slow=3.5,
        tls_dir=tmp_path / "certs",
        max_value_size=0,
        fsync=False,
    )
    assert parse_back(serve_command(full)) == full
    assert "--no-fsync" in serve_command(full)
    joining = ServeConfig(
        id="n4", data_dir=tmp_path, listen="127.0.0.1:1", http="127.0.0.1:2",
        join=("http://127.0.0.1:8001", "127.0.0.1:8002"),
    )  # fmt: skip
    assert parse_back(serve_command(joining)) == joining
    # every setting a launcher can set survives the round trip
    assert {o.name for o in OPTIONS} == set(ServeConfig.__dataclass_fields__)


def test_every_launcher_starts_valid_serve_command_lines(tmp_path: Path) -> None:
    topo, joined = Topology.create(3, 7001, True).with_joined()
    for node in topo.nodes:
        cfg = parse_back(serve_command(node_config(tmp_path, topo, node)))
        assert cfg.allow_fault_injection and cfg.cluster_id == topo.cluster_id
        assert (cfg.join != ()) == (node is joined) and (cfg.peers == ()) == (node is joined)
    plan = make_plan(tmp_path / "demo", 3, 4.0)
    demo = parse_back(plan.command(plan.nodes[1]))
    assert (demo.id, demo.slow, demo.allow_fault_injection, len(demo.peers)) == ("n2", 4.0, True, 3)
    chaos = ChaosCluster(3, tmp_path / "chaos", tmp_path / "logs", fsync=False, snapshot_entries=9)
    cfg = parse_back(chaos.command(chaos.nodes["n3"]))
    assert (cfg.id, cfg.fsync, cfg.snapshot_entries, cfg.allow_fault_injection) == (
        "n3",
        False,
        9,
        True,
    )
    assert cfg.cluster_id == chaos.cluster_id and len(cfg.peers) == 3


def test_launched_nodes_get_no_serve_variables_of_the_shell() -> None:
    shell = {
        "PATH": "/bin",
        "RAFTKV_TICK_MS": "999",  # would change the node
        "RAFTKV_DOCS_SCREENSHOT": "1",  # unknown to serve: would stop it
        "RAFTKV_CONFIG": "/etc/raftkv.toml",
        "RAFTKV_ENDPOINTS": "http://a:1",  # a client's: kept (a joining node may need them)
        "RAFTKV_TOKEN": "t",
    }
    assert serve_env(shell) == {
        "PATH": "/bin",
        "RAFTKV_ENDPOINTS": "http://a:1",
        "RAFTKV_TOKEN": "t",
        "PYTHONUNBUFFERED": "1",
    }
