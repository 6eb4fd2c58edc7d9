"""Pointed at an HTTP server that is not raftkv (`python -m http.server`), every command says
so, naming the URL, at once: no "key not found", no HTML page dumped, no retries."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmdline.nodes import InProcess, one_node
from raftkv.devcluster.ports import free_ports


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A static file server whose directory has v1/kv/present (a 200 answer)."""
    root = tmp_path_factory.mktemp("www")
    (root / "v1" / "kv").mkdir(parents=True)
    (root / "v1" / "kv" / "present").write_text("a static file\n")
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url + "/v1/kv/present", timeout=1) as resp:
                assert resp.status == 200
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def kv(
    web: str, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> InProcess:
    return InProcess(capsysbinary, monkeypatch, web)


@pytest.mark.parametrize(
    ("argv", "request_line", "answer"),
    [
        (["get", "missing"], "GET /v1/kv/missing", "404 (text/html, title 'Error response')"),
        (
            ["get", "present"],
            "GET /v1/kv/present",
            "200 (application/octet-stream, starting "
            "'a static file') without the X-Raftkv-Revision header",
        ),
        (["put", "k", "v"], "POST /v1/sessions", "501 (text/html"),
        (["delete", "k"], "POST /v1/sessions", "501 (text/html"),
        (["txn", "--then", "get k"], "POST /v1/sessions", "501 (text/html"),
        (["member", "list"], "GET /v1/members", "404 (text/html"),
        (["watch", "--count", "1"], "GET /v1/watch", "404 (text/html"),
        (["snapshot", "save", "snap"], "GET /v1/snapshot", "404 (text/html"),
    ],
)
def test_each_command_reports_a_wrong_endpoint_naming_it(
    kv: InProcess, web: str, argv: list[str], request_line: str, answer: str
) -> None:
    started = time.monotonic()
    code, out, err = kv(*argv)
    assert (code, out) == (1, b"")
    assert err.startswith("raftkv: error: ") and err.count("\n") == 1
    assert f"{web} is not a raftkv node: {request_line} answered HTTP {answer}" in err
    assert "<" not in err and "not found" not in err  # no page, no "key not found"
    assert time.monotonic() - started < 5  # final at once (the CLI's timeout is 10 s)


def test_status_marks_the_endpoint_and_says_why(kv: InProcess, web: str) -> None:
    code, out, err = kv("status")
    lines = out.decode().splitlines()
    assert code == 1 and lines[1].split() == [web, "-", "not", "raftkv"]
    assert f"{web} is not a raftkv node: GET /v1/status answered HTTP 404" in lines[2]
    assert "<" not in out.decode() and err == "raftkv: error: no node answered\n"
    code, out, _ = kv("status", "--json")
    (node,) = json.loads(out)["nodes"]
    assert code == 1 and node["endpoint"] == web and "is not a raftkv node" in node["error"]


def test_a_real_node_among_the_endpoints_is_still_used(
    web: str,
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with one_node(tmp_path) as node:
        kv = InProcess(capsysbinary, monkeypatch, f"{web},{node}")
        assert kv("put", "x", "1")[0] == 0  # discovery finds the leader; the web server idles
        assert kv("get", "x")[1] == b"1\n"
