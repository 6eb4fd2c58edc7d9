"""A leader-elected job scheduler across 3 processes, surviving the loss of its leader.

    python examples/job_scheduler.py

Three processes replicate a JobBoard. Only the Raft leader schedules: when a process becomes
leader it runs the pending jobs one by one, recording in the replicated board that it started
and finished each. Midway, this script kills the leader with SIGKILL; the survivors elect a
new leader, which picks up where the old one stopped (re-running a job the dead leader had
started but not finished: execution is at-least-once, completion is recorded exactly once).

The leader's term fences stale leaders: a job started under a newer term cannot be taken over
or finished by a leader of an older term, even if a deposed leader does not know yet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec

from raftkv import EventKind, Node, NodeOptions, RaftkvError, Replicated, query, replicated

NODES = ("n1", "n2", "n3")
JOBS = [f"job-{i:02d}" for i in range(1, 13)]
WORK_S = 0.15  # how long each job "runs"
KILL_AFTER = 4  # the first leader is killed once it has finished this many jobs
TIMEOUT_S = 60.0


class Job(msgspec.Struct):
    state: str = "pending"  # pending | running | done
    runner: str = ""
    term: int = 0
    attempts: int = 0


class JobBoard(Replicated):
    jobs: dict[str, Job]

    def __init__(self) -> None:
        self.jobs = {}

    @replicated
    def add_jobs(self, names: list[str]) -> int:
        for name in names:
            self.jobs.setdefault(name, Job())
        return len(self.jobs)

    @replicated
    def start(self, job: str, runner: str, term: int) -> int:
        """Claim job for runner, leader in term; the attempt number, or 0 if it may not."""
        j = self.jobs[job]
        if j.state == "done" or (j.state == "running" and j.term >= term):
            return 0
        j.state, j.runner, j.term = "running", runner, term
        j.attempts += 1
        return j.attempts

    @replicated
    def finish(self, job: str, runner: str, term: int) -> bool:
        j = self.jobs[job]
        if j.state != "running" or j.runner != runner or j.term != term:
            return False  # another leader took it over meanwhile
        j.state = "done"
        return True

    @query
    def todo(self) -> list[str] | None:
        """The jobs not done yet; None before any job was added (one read: asking twice, the
        jobs could be added in between)."""
        if not self.jobs:
            return None
        return sorted(name for name, j in self.jobs.items() if j.state != "done")

    @query
    def report(self) -> list[tuple[str, str, int]]:
        return [(name, j.runner, j.attempts) for name, j in sorted(self.jobs.items())]


def leads(node: Node[JobBoard], term: int) -> bool:
    return node.is_leader and node.status().term == term


async def schedule(node: Node[JobBoard], board: JobBoard, term: int) -> None:
    """Run while leader in term: every job not done yet, one at a time."""
    print(f"[{node.id}] became leader in term {term}: scheduling", flush=True)
    while leads(node, term):
        try:
            await node.barrier()  # apply everything earlier leaders committed before deciding
            todo = await board.todo()
            if todo is None:
                await asyncio.sleep(0.1)  # none added yet: the leader may be elected first
                continue
            if not todo:
                return  # every job is done
            for job in todo:
                if not leads(node, term):
                    return
                attempt = await board.start(job, node.id, term)
                if not attempt:
                    continue
                again = f" (attempt {attempt})" if attempt > 1 else ""
                print(f"[{node.id}] running {job}{again}", flush=True)
                await asyncio.sleep(WORK_S)  # the job's work
                if await board.finish(job, node.id, term):
                    print(f"[{node.id}] finished {job}", flush=True)
        except RaftkvError as e:  # e.g. a Timeout while the cluster re-elects: try again
            print(f"[{node.id}] scheduling paused: {type(e).__name__}", flush=True)
            await asyncio.sleep(0.5)


async def replica(node_id: str, peers: dict[str, str], data_dir: str) -> None:
    board = JobBoard()
    node = Node(
        board, node_id=node_id, peers=peers, data_dir=data_dir, options=NodeOptions(tick_ms=20)
    )
    events = node.events()  # subscribed before start: no leadership change is missed
    scheduler: asyncio.Task[None] | None = None

    async def follow_leadership() -> None:
        nonlocal scheduler
        async for event in events:
            if event.kind is EventKind.BECAME_LEADER:
                scheduler = asyncio.create_task(schedule(node, board, event.term))
            elif event.kind is EventKind.LOST_LEADERSHIP and scheduler is not None:
                scheduler.cancel()
                print(f"[{node_id}] lost leadership: stopped scheduling", flush=True)

    async with node:
        watcher = asyncio.create_task(follow_leadership())
        added = False
        while True:  # a Timeout while the leader is being replaced: just ask again
            try:
                if not added:  # every process may add them: add_jobs is idempotent
                    added = bool(await board.add_jobs(JOBS))
                if await board.todo() == []:
                    break
            except RaftkvError:
                pass
            await asyncio.sleep(0.1)
        done = ", ".join(
            f"{job} by {runner}" + ("*" * (n - 1)) for job, runner, n in await board.report()
        )
        print(f"[{node_id}] all {len(JOBS)} jobs done: {done}", flush=True)
        print("DONE", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # stay up (quorum) until the parent says so
        watcher.cancel()
        if scheduler is not None:
            scheduler.cancel()


# --- the parent: start 3 processes, kill the leader midway, wait for the jobs ------------------


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def relay(
    nid: str, proc: subprocess.Popen[str], lines: queue.Queue[tuple[str, str | None]]
) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put((nid, line.rstrip("\n")))
    lines.put((nid, None))


def main() -> int:
    ports = free_ports(2 * len(NODES))
    spec = ",".join(
        f"{nid}=127.0.0.1:{ports[2 * i]}@http://127.0.0.1:{ports[2 * i + 1]}"
        for i, nid in enumerate(NODES)
    )
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    ok = False
    with tempfile.TemporaryDirectory(prefix="raftkv-jobs-") as tmp:
        procs: dict[str, subprocess.Popen[str]] = {}
        for nid in NODES:
            procs[nid] = subprocess.Popen(
                [sys.executable, __file__, "--node", nid, "--peers", spec, "--data-dir", tmp],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            threading.Thread(target=relay, args=(nid, procs[nid], lines), daemon=True).start()
        finished: dict[str, int] = {}
        done: set[str] = set()
        killed: str | None = None
        deadline = time.monotonic() + TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                try:
                    nid, line = lines.get(timeout=0.5)
                except queue.Empty:
                    continue
                if line is None:
                    if nid != killed:
                        print(f"{nid} exited unexpectedly")
                        break
                    continue
                if line == "DONE":  # stop once every survivor has seen all jobs done
                    done.add(nid)
                    if killed is not None and done >= set(NODES) - {killed}:
                        ok = True
                        break
                    continue
                if " all " in line and done:
                    continue  # one survivor's report is enough
                print(line, flush=True)
                if " finished " in line:
                    finished[nid] = finished.get(nid, 0) + 1
                    if killed is None and finished[nid] == KILL_AFTER:
                        killed = nid
                        print(f"*** killing the leader {nid} (SIGKILL) ***", flush=True)
                        os.kill(procs[nid].pid, signal.SIGKILL)
        finally:
            for proc in procs.values():
                if proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
            for proc in procs.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    print(
        "the jobs survived the leader's death (* = run again after it)" if ok else "FAILED",
        flush=True,
    )
    return 0 if ok and killed is not None else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node")
    parser.add_argument("--peers")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    if args.node is None:
        sys.exit(main())
    logging.basicConfig(level=logging.CRITICAL)  # connection noise around the kill is expected
    peers = dict(item.split("=", 1) for item in args.peers.split(","))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(replica(args.node, peers, str(Path(args.data_dir) / args.node)))
