"""One embedded replica in its own OS process, for test_processes.py.

Appends its own keys to a replicated journal and reports on stdout, one JSON object a line:
{"event": kind, "term": t}, {"ack": key, "pos": p}, {"unknown": key}, {"writes_done": n},
{"final": [...]}. On stdin: "final" asks for a linearizable read of the whole journal; EOF
stops the node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from raftkv.embed import LeadershipEvent, Node, NodeOptions, Replicated, query, replicated
from raftkv.errors import RaftkvError


class Journal(Replicated):
    entries: list[str]

    def __init__(self) -> None:
        self.entries = []

    @replicated
    def append(self, item: str) -> int:
        self.entries.append(item)
        return len(self.entries)

    @query
    def all(self) -> list[str]:
        return list(self.entries)


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    peers = dict(item.split("=", 1) for item in args.peers.split(","))
    journal = Journal()
    # Generous deadlines: on a loaded machine an election can take seconds; every command is
    # retried (exactly once, by its session) until it answers or this deadline passes.
    options = NodeOptions(
        tick_ms=20,
        snapshot_every=args.snapshot_every,
        attempt_timeout_s=2.0,
        apply_timeout_s=60.0,
    )
    node = Node(journal, node_id=args.node, peers=peers, data_dir=args.data_dir, options=options)

    def report(event: LeadershipEvent) -> None:
        say(event=event.kind.value, term=event.term, leader=event.leader)

    node.add_listener(report)
    async with node:
        for k in range(args.writes):
            key = f"{args.node}-{args.gen}-{k}"
            try:
                say(ack=key, pos=await journal.append(key))
            except RaftkvError as e:
                say(unknown=key, error=str(e))
            await asyncio.sleep(args.pause)
        say(writes_done=args.writes)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() == "final":
                say(final=await journal.all())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--node", required=True)
    parser.add_argument("--peers", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--gen", type=int, default=0)
    parser.add_argument("--writes", type=int, default=40)
    parser.add_argument("--pause", type=float, default=0.02)
    parser.add_argument("--snapshot-every", type=int, default=25)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    asyncio.run(main(parser.parse_args()))
