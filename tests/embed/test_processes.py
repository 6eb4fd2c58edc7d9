"""Three embedded replicas in three OS processes (real TCP, real fsync, temp dirs): kill -9
the leader mid-traffic; no acknowledged result may be lost, none applied twice."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .harness import make_peers

WORKER = Path(__file__).with_name("proc_worker.py")
WRITES = 60  # per worker; the leader is killed after 30 acknowledgements in all
DEADLINE_S = 240.0  # a bound for a stuck run, not a timing assertion


class Worker:
    def __init__(self, node: str, spec: str, root: Path, out: queue.Queue[Any], **kw: Any):
        extra = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
        self.node = node
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                "--node",
                node,
                "--peers",
                spec,
                "--data-dir",
                str(root / node),
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._relay, args=(out,), daemon=True).start()

    def _relay(self, out: queue.Queue[Any]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            out.put((self, json.loads(line)))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_leader_kill_loses_no_acknowledged_result(tmp_path: Path) -> None:
    ids = ["n1", "n2", "n3"]
    spec = ",".join(f"{k}={v}" for k, v in make_peers(ids).items())
    out: queue.Queue[tuple[Worker, dict[str, Any]]] = queue.Queue()
    workers = {nid: Worker(nid, spec, tmp_path, out, writes=WRITES) for nid in ids}
    acks: dict[str, int] = {}
    unknown: set[str] = set()
    leading: dict[str, int] = {}  # node -> term, while its latest event says it leads
    new_leader_terms: list[int] = []  # terms won by survivors after the kill
    killed: Worker | None = None
    done: set[str] = set()
    finals: dict[str, list[str]] = {}
    deadline = time.monotonic() + DEADLINE_S

    def pump(until: Any) -> None:
        while not until():
            assert time.monotonic() < deadline, f"stuck: acks={len(acks)} done={done}"
            try:
                w, msg = out.get(timeout=0.5)
            except queue.Empty:
                continue
            if "ack" in msg:
                assert msg["ack"] not in acks
                acks[msg["ack"]] = msg["pos"]
            elif "unknown" in msg:
                unknown.add(msg["unknown"])
            elif msg.get("event") == "became_leader":
                leading[w.node] = msg["term"]
                if killed is not None and w is not killed:
                    new_leader_terms.append(msg["term"])
            elif msg.get("event") == "lost_leadership":
                leading.pop(w.node, None)
            elif "writes_done" in msg:
                done.add(w.node)
            elif "final" in msg:
                finals[w.node] = msg["final"]

    try:
        # The leader: the one node whose latest event is became_leader, in the highest term.
        pump(lambda: len(leading) == 1 and len(acks) >= 30)
        [(leader, killed_term)] = leading.items()
        killed = workers[leader]
        os.kill(killed.proc.pid, signal.SIGKILL)
        killed.proc.wait()
        assert killed.proc.returncode == -signal.SIGKILL
        acked_before_kill = dict(acks)
        survivors = [w for w in workers.values() if w is not killed]
        pump(lambda: {w.node for w in survivors} <= done)
        # it was the leader: a survivor had to win an election in a later term
        assert new_leader_terms and max(new_leader_terms) > killed_term
        # the killed replica restarts from its own disk and catches up
        workers[killed.node] = Worker(killed.node, spec, tmp_path, out, gen=1, writes=3)
        pump(lambda: killed.node in done and len(done) == 3)
        for w in workers.values():
            w.send("final")
        pump(lambda: len(finals) == 3)
    finally:
        for w in workers.values():
            w.close()

    journal = finals["n1"]
    assert finals["n2"] == journal and finals["n3"] == journal  # one history everywhere
    assert len(journal) == len(set(journal)), "a command was applied twice"
    for key, pos in acks.items():  # every acknowledged append is there, at its position
        assert journal[pos - 1] == key, f"acknowledged {key} at {pos} is lost or moved"
    assert set(acked_before_kill) <= set(journal)
    # beyond answered writes, only what the killed process had in flight when it died
    unanswered = set(journal) - set(acks) - unknown
    assert all(k.startswith(f"{killed.node}-0-") for k in unanswered), unanswered
    for w in survivors:  # the survivors kept writing through the kill, every write answered
        mine = {k for k in acks if k.startswith(f"{w.node}-0-")}
        missing = WRITES - len(mine)
        assert not missing, f"{w.node}: {missing} writes without a result: {unknown}"
        assert any(k not in acked_before_kill for k in mine)  # some went through after it
    assert {f"{killed.node}-1-{k}" for k in range(3)} <= set(acks)
