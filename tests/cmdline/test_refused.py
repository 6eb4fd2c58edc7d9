"""With every endpoint refusing connections the CLI fails in about a second (it took the whole
10 s timeout), saying "connection refused to URL"; it keeps retrying while some endpoint is
slow or answers (an election), and the library's default policy retries to the deadline."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from client.fake_server import FakeNode, Store, closed_port_url, fake_cluster_in_thread
from cmdline.nodes import InProcess
from raftkv.cli.common import REFUSED_GRACE_S
from raftkv.client import AsyncClient, RetryPolicy, Unavailable


def cli_for(
    endpoints: list[str], capsys: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> InProcess:
    return InProcess(capsys, monkeypatch, ",".join(endpoints))


def test_get_fails_fast_when_every_endpoint_refuses(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = [closed_port_url() for _ in range(3)]
    kv = cli_for(urls, capsysbinary, monkeypatch)
    for argv in (["get", "x"], ["put", "x", "1"]):
        started = time.monotonic()
        code, out, err = kv(*argv)
        elapsed = time.monotonic() - started
        assert (code, out) == (1, b"")
        assert err == (
            f"raftkv: error: {argv[0]} 'x': connection refused to every endpoint: "
            f"{', '.join(urls)}. Is the cluster running? (raftkv cluster up)\n"
        )
        assert REFUSED_GRACE_S <= elapsed < REFUSED_GRACE_S + 2.0  # the timeout is 10 s


def test_status_says_connection_refused_without_aiohttps_words(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = closed_port_url()
    code, out, _ = cli_for([url], capsysbinary, monkeypatch)("status")
    assert code == 1 and f"  {url}: connection refused to {url}\n" in out.decode()
    assert "ssl" not in out.decode() and "Connect call failed" not in out.decode()


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_slow_endpoint_keeps_the_cli_retrying_to_its_timeout(
    silent_port: str, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = cli_for([closed_port_url(), silent_port], capsysbinary, monkeypatch)
    started = time.monotonic()
    code, _, err = kv("--timeout", "3", "get", "x")
    elapsed = time.monotonic() - started
    assert code == 1 and "connection refused to every endpoint" not in err
    assert 2.9 <= elapsed < 6


def test_an_election_in_progress_keeps_the_cli_retrying(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_cluster_in_thread(1) as (node,):
        node.store.data["x"] = (b"42", 1)
        node.faults = ["503"] * 6  # no leader yet: 503 no_leader (about 2 s of backoff)
        kv = cli_for([closed_port_url(), node.url], capsysbinary, monkeypatch)
        started = time.monotonic()
        code, out, err = kv("get", "x")
        assert (code, out, err) == (0, b"42\n", "")
        assert time.monotonic() - started > REFUSED_GRACE_S  # past the grace, still trying


def test_the_library_retries_through_a_restart_unless_told_not_to() -> None:
    async def main() -> None:
        url = closed_port_url()
        node = FakeNode("n1", Store(), role="leader")
        node.store.data["x"] = (b"back", 1)

        async def restart_later() -> None:
            await asyncio.sleep(1.5)
            await node.start(int(url.rpartition(":")[2]))

        starting = asyncio.create_task(restart_later())
        try:
            async with AsyncClient([url], policy=RetryPolicy(timeout=8)) as client:
                got = await client.get("x")  # default policy: retries to the deadline
            assert got is not None and got.value == b"back"
        finally:
            await starting
            await node.stop()
        async with AsyncClient(
            [closed_port_url()], policy=RetryPolicy(timeout=8, refused_grace=0.3)
        ) as client:
            started = time.monotonic()
            with pytest.raises(Unavailable, match="connection refused to http"):
                await client.get("x")
            assert time.monotonic() - started < 2

    asyncio.run(main())
