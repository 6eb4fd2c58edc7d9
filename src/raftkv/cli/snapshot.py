"""`raftkv snapshot save FILE` (a linearizable backup of the whole store, from any node) and
`raftkv snapshot restore FILE --data-dir D --id ID --peers ...` (seed a new node from it)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from raftkv.cli.common import Subparsers, UsageError, client_parser, with_client
from raftkv.errors import BadRequest


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("snapshot", help="back up the store to a file, or restore a node from one")
    ssub = p.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)
    save = client_parser(
        ssub, "save", "write a backup of the whole store (as of now) to FILE", cmd_save
    )
    save.add_argument("file", type=Path)
    save.add_argument("--json", action="store_true", help="print the result as one JSON object")
    r = ssub.add_parser(
        "restore",
        help="create a new node's data directory from a backup",
        description="Seed --data-dir (new or empty) for node --id from FILE. The node starts "
        "a new configuration: the members in --peers, all voters. Then run `raftkv serve` "
        "with the same --id, --data-dir and --peers.",
    )
    r.add_argument("file", type=Path)
    r.add_argument("--data-dir", required=True, type=Path)
    r.add_argument("--id", required=True)
    r.add_argument(
        "--peers",
        required=True,
        metavar="ID=HOST:PORT@HTTP,...",
        help="the new cluster's members, this node included (as for `raftkv serve`)",
    )
    r.add_argument("--cluster-id", default="raftkv")
    r.add_argument("--json", action="store_true", help="print the result as one JSON object")
    r.set_defaults(func=cmd_restore)


def cmd_save(args: argparse.Namespace) -> int:
    from raftkv.runtime.restore import describe  # noqa: PLC0415

    data = with_client(args, lambda c: c.snapshot())
    path: Path = args.file
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        snap, kv = describe(tmp)  # the checksum and the store decode, before it counts
    except BaseException:
        tmp.unlink()
        raise
    os.replace(tmp, path)
    doc = {
        "file": str(path),
        "bytes": len(data),
        "index": snap.index,
        "term": snap.term,
        "keys": len(kv),
        "revision": kv.revision,
        "voters": list(snap.voters),
        "learners": list(snap.learners),
    }
    if args.json:
        print(json.dumps(doc))
    else:
        print(
            f"saved {path}: {len(data):,} bytes, log index {snap.index} (term {snap.term}), "
            f"{len(kv):,} keys at revision {kv.revision}"
        )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from raftkv.runtime.restore import restore_data_dir  # noqa: PLC0415
    from raftkv.runtime.settings import parse_peers  # noqa: PLC0415

    try:
        peers = parse_peers(args.peers)
    except BadRequest as e:
        raise UsageError(str(e)) from None
    done = restore_data_dir(args.file, args.data_dir, args.id, peers, args.cluster_id)
    if args.json:
        print(json.dumps({"data_dir": str(args.data_dir), **dataclasses.asdict(done)}))
    else:
        print(
            f"restored {args.data_dir} for {args.id}: {done.keys:,} keys at revision "
            f"{done.revision}, log index {done.index} (term {done.term}); members "
            f"{', '.join(sorted(peers))}. Start it with: raftkv serve --id {args.id} "
            f"--data-dir {args.data_dir} --peers {args.peers} ..."
        )
    return 0
