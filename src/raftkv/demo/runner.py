"""The demo: a real cluster of N node processes plus the web page that shows it
(`raftkv demo`, whose options are in raftkv.cli.demo).

Startup order: bind the web port first (so "port in use" fails before any node starts), start
the nodes, wait until every node's event stream is open, print the URL, open a browser.
Ctrl-C or SIGTERM stops the nodes (SIGTERM, then SIGKILL) and removes a temporary data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import shutil
import signal
import tempfile
import threading
import time
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import aiohttp
from aiohttp import web

from raftkv.demo.broker import EventBroker
from raftkv.demo.control import ClusterControl, Timing
from raftkv.demo.streams import NodeStreams
from raftkv.demo.supervisor import DemoError, Supervisor, make_plan
from raftkv.demo.webapp import build_app

HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_NODES = 3
DEFAULT_SLOW = 6.0
MAX_NODES = 7
STARTUP_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    nodes: int = DEFAULT_NODES
    port: int = DEFAULT_PORT
    data_dir: Path | None = None
    slow: float = DEFAULT_SLOW
    open_browser: bool = True
    extra_node_args: tuple[str, ...] = ()


async def serve_demo(opts: DemoOptions, out: TextIO, stop: asyncio.Event | None = None) -> None:
    """Run the demo until SIGINT/SIGTERM (or until stop is set, when given)."""
    stop_event = stop if stop is not None else asyncio.Event()
    temp = opts.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="raftkv-demo-")) if temp else opts.data_dir
    assert data_dir is not None
    try:
        async with contextlib.AsyncExitStack() as stack:
            if stop is None:
                _install_signals(stop_event, stack)
            await _run(opts, data_dir, out, stop_event, stack)
    finally:
        if temp:
            shutil.rmtree(data_dir, ignore_errors=True)


async def _run(
    opts: DemoOptions,
    data_dir: Path,
    out: TextIO,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
) -> None:
    plan = make_plan(data_dir.resolve(), opts.nodes, opts.slow, opts.extra_node_args)
    broker = EventBroker()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=False)
    stack.push_async_callback(session.close)
    control_box: list[ClusterControl] = []

    def on_exit(node_id: str, code: int, expected: bool) -> None:
        if control_box:
            control_box[0].process_exited(node_id, code, expected)

    sup = Supervisor(plan, on_exit)
    timing = Timing(plan.slow, plan.tick_ms, plan.election_ticks)
    control = ClusterControl(sup, broker, session, timing)
    control_box.append(control)
    broker.cluster = control.cluster_json

    runner = web.AppRunner(build_app(control, broker), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    stack.callback(broker.close)  # runs before runner.cleanup: browser streams end first
    port = await _bind(runner, opts.port)

    print(
        f"raftkv demo: starting {opts.nodes} nodes (slow motion x{opts.slow:g}) in {plan.data_dir}",
        file=out,
        flush=True,
    )
    stack.push_async_callback(sup.stop_all)
    await sup.start_all()
    streams = NodeStreams(broker, lambda: {n.id: n.http_url for n in plan.nodes}, session)
    streams.start()
    stack.push_async_callback(streams.close)
    await _wait_started(sup, broker, stop)
    if stop.is_set():
        return
    for n in plan.nodes:
        print(
            f"  {n.id}  {n.http_url}  pid {sup.pid(n.id)}  log {sup.log_path(n.id)}",
            file=out,
            flush=True,
        )
    url = f"http://{HOST}:{port}"
    print(f"\n  open {url}\n\nCtrl-C stops the demo and its nodes.", file=out, flush=True)
    if opts.open_browser:
        _open_browser(url)
    await stop.wait()
    print("raftkv demo: stopping the nodes", file=out, flush=True)


async def _bind(runner: web.AppRunner, port: int) -> int:
    site = web.TCPSite(runner, HOST, port)
    try:
        await site.start()
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise DemoError(
                f"port {port} on {HOST} is in use (another demo?): stop it, or pass "
                "--port N (or --port 0 for any free port)"
            ) from None
        raise DemoError(f"cannot listen on {HOST}:{port}: {e.strerror or e}") from None
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return port


async def _wait_started(sup: Supervisor, broker: EventBroker, stop: asyncio.Event) -> None:
    """Until every node's event stream is open; DemoError if a node dies or it takes too long."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not stop.is_set():
        for node_id in sup.node_ids():
            if not sup.is_running(node_id):
                raise DemoError(
                    f"node {node_id} exited during startup; the end of {sup.log_path(node_id)}:"
                    f"\n{sup.log_tail(node_id)}"
                )
        if all(broker.connected.get(n) for n in sup.node_ids()):
            return
        if time.monotonic() > deadline:
            late = [n for n in sup.node_ids() if not broker.connected.get(n)]
            raise DemoError(
                f"{', '.join(late)} did not start within {STARTUP_TIMEOUT_S:g}s; see "
                + ", ".join(str(sup.log_path(n)) for n in late)
            )
        await asyncio.sleep(0.1)


def _open_browser(url: str) -> None:
    """Best effort, in a thread (some browsers block until they exit)."""

    def go() -> None:
        with contextlib.suppress(Exception):
            webbrowser.open(url, new=2)

    threading.Thread(target=go, name="open-browser", daemon=True).start()


def _install_signals(stop: asyncio.Event, stack: contextlib.AsyncExitStack) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        stack.callback(loop.remove_signal_handler, sig)
