"""Delay the packets a network namespace receives, in the kernel's path, without netem.

The kernels these tests run on have no netem qdisc (nor prio, fq, etf...; only htb, tbf and
the fifos), so `tc qdisc ... netem delay` fails. They do have netfilter's packet queue
(nfnetlink_queue) and iptables' NFQUEUE target: a rule hands each packet to a userspace
program, and the packet stays in the kernel until that program gives its verdict. This
program holds every packet for a fixed delay, then accepts it: the packet goes on through the
kernel's stack to its socket, so TCP sees the longer round trip as it would on a WAN.
(HostLab queues packets on arrival, in PREROUTING: see netns.py for why not on departure.)

    python nfq_delay.py --delay-ms 25 --queue 7 NETNS...   # one socket per namespace

It speaks the nfnetlink_queue protocol with the standard library alone (socket + struct: no
C library to build). Invariants: packets go on in the order they were queued (ids grow,
and one batch verdict accepts every id up to the last packet that is due); a packet is never
released before its delay has passed. It prints "ready" once every queue is bound (start the
NFQUEUE rules after that: without a listener the rule drops packets), and exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import errno
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_GSO = 4  # hand over GSO packets whole instead of segmenting them first
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1  # the packet's metadata only: the payload stays in the kernel
NF_ACCEPT = 1
CLONE_NEWNET = 0x40000000
QUEUE_MAXLEN = 16384
RCVBUF = 16 * 1024 * 1024
REPORT_S = 1.0

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host order)
_NFGEN = struct.Struct("=BBH")  # family, version, res_id (res_id is big-endian: packed apart)
_NLA = struct.Struct("=HH")  # len, type


def _attr(kind: int, payload: bytes) -> bytes:
    data = _NLA.pack(_NLA.size + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _message(msg_type: int, flags: int, queue: int, attrs: bytes, seq: int = 0) -> bytes:
    body = _NFGEN.pack(socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return _NLMSG.pack(_NLMSG.size + len(body), kind, flags, seq, 0) + body


def _packet_ids(data: bytes) -> tuple[list[int], list[str]]:
    """The packet ids of the PACKET messages in one datagram, and any netlink errors."""
    ids: list[int] = []
    errors: list[str] = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length, kind, _, _, _ = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size:
            break
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, off + _NLMSG.size)
            if code != 0:
                errors.append(os.strerror(-code))
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            pos = off + _NLMSG.size + _NFGEN.size
            end = off + length
            while pos + _NLA.size <= end:
                alen, atype = _NLA.unpack_from(data, pos)
                if alen < _NLA.size:
                    break
                if atype & 0x3FFF == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from(">I", data, pos + _NLA.size)[0])
                pos += (alen + 3) & ~3
        off += (length + 3) & ~3
    return ids, errors


@dataclass
class Queue:
    """One bound nfqueue (in one namespace) and the packets it holds, oldest first."""

    netns: str
    number: int
    sock: socket.socket
    held: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    released: int = 0
    overruns: int = 0  # ENOBUFS: packets the kernel dropped because this socket was full
    late_max: float = 0.0  # the longest a due packet waited for its release, since the report

    def report(self) -> str:
        line = (
            f"{self.netns}: holding {len(self.held)}, released {self.released}, "
            f"overruns {self.overruns}, released up to {self.late_max * 1000:.1f} ms late"
        )
        self.late_max = 0.0
        return line

    def receive(self, delay_s: float) -> None:
        now = time.monotonic()
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # the kernel dropped what did not fit: TCP resends
                    self.overruns += 1
                    continue
                raise
            ids, errors = _packet_ids(data)
            # ENOENT answers a verdict for packets the kernel no longer holds: it flushes a
            # namespace's queues whenever a netfilter hook there goes away.
            errors = [e for e in errors if e != os.strerror(errno.ENOENT)]
            if errors:
                raise OSError(f"nfqueue {self.number} in {self.netns}: {'; '.join(errors)}")
            self.held.extend((now + delay_s, i) for i in ids)

    def release_due(self, now: float) -> None:
        last = None
        while self.held and self.held[0][0] <= now:
            due, last = self.held.popleft()
            self.late_max = max(self.late_max, now - due)
            self.released += 1
        if last is not None:
            verdict = _attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, last))
            self.sock.send(_message(NFQNL_MSG_VERDICT_BATCH, NLM_F_REQUEST, self.number, verdict))


def _setns(libc: ctypes.CDLL, fd: int, what: str) -> None:
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns({what}): {os.strerror(err)}")


def bind_queue(netns: str, number: int) -> Queue:
    """A netlink socket bound to queue `number` inside netns (this thread returns to its own
    namespace before the function returns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(libc, target, netns)
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        finally:
            _setns(libc, home, "the original namespace")
    finally:
        os.close(target)
        os.close(home)
    sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE (root)
    sock.bind((0, 0))
    attrs = (
        _attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0))
        + _attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META))
        + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", QUEUE_MAXLEN))
        + _attr(NFQA_CFG_MASK, struct.pack(">I", NFQA_CFG_F_GSO))
        + _attr(NFQA_CFG_FLAGS, struct.pack(">I", NFQA_CFG_F_GSO))
    )
    sock.send(_message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, number, attrs, seq=1))
    _, errors = _packet_ids(sock.recv(65536))
    if errors:
        sock.close()
        raise OSError(f"binding nfqueue {number} in {netns}: {'; '.join(errors)}")
    sock.setblocking(False)
    return Queue(netns, number, sock)


def run(queues: list[Queue], delay_s: float) -> None:
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    sel = selectors.DefaultSelector()
    for q in queues:
        sel.register(q.sock, selectors.EVENT_READ, q)
    next_report = time.monotonic() + REPORT_S
    while not stop:
        if time.monotonic() >= next_report:  # to stderr: the lab keeps it in a log file
            print("; ".join(q.report() for q in queues), file=sys.stderr, flush=True)
            next_report += REPORT_S
        due = [q.held[0][0] for q in queues if q.held]
        timeout = max(0.0, min([*due, next_report]) - time.monotonic())
        for key, _ in sel.select(timeout):
            queue: Queue = key.data
            queue.receive(delay_s)
        now = time.monotonic()
        for q in queues:
            q.release_due(now)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--queue", type=int, default=0, help="the NFQUEUE number in each namespace")
    ap.add_argument("netns", nargs="+", help="namespaces (names under /run/netns)")
    args = ap.parse_args(argv)
    queues = [bind_queue(ns, args.queue) for ns in args.netns]
    print("ready", flush=True)
    run(queues, args.delay_ms / 1000.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
