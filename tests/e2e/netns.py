"""Real hosts on one machine: each node in its own network namespace with its own IP address on
a bridge, WAN delay between the hosts, and partitions made by the firewall inside the hosts.

    with HostLab(3, delay_ms=25) as lab:        # hosts n1..n3 at 10.77.S.1..3, 50 ms RTT
        lab.partition([{"n1"}, {"n2", "n3"}])   # nftables drops, inside the namespaces
        lab.heal()

Layout (every name carries this run's prefix rkv-<pid>-<token>, so parallel runs never clash):

    root namespace: veth rkv<token>, 10.77.S.254/24 (the tests' clients) --+
    namespace <prefix>-sw: bridge br0 -------------------------------------+-- veth -- eth0 of
    namespace <prefix>-n1: eth0 10.77.S.1/24                                   each host
    ...

S is a subnet octet no other lab in the root namespace uses (chosen under a file lock).

Delay: netem is not built into the kernels these tests run on (see nfq_delay.py), so an
iptables NFQUEUE rule in each host's PREROUTING chain hands every packet arriving from another
host to nfq_delay.py, which releases it after delay_ms: the round trip between two hosts is
2 x delay_ms. Packets are held on arrival, not on departure: a packet held before it leaves
still counts against its socket's TCP Small Queues budget, which then caps a connection at a
few packets per delay (about 230 KB/s at 25 ms; netem orphans its packets to avoid exactly
this). Traffic to and from the root namespace (the clients) is not delayed: clients sit next
to every node, and what a request costs is the nodes' round trips.

Partitions: an nftables table in each host drops input from the hosts on the other side. The
packets still leave (TCP sees silence, as on a real network), and connects time out rather
than fail at once.

Invariants: close() removes everything setup made (the namespaces take their veths, rules and
the root-side veth with them) and runs even when setup failed halfway; a lab whose owner died
without closing is removed by the next lab's setup (its pid is in its names).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from raftkv.devcluster.process import pid_alive

SUBNET = "10.77"
CLIENT_HOST = 254  # the root namespace's address in the lab subnet
NFQUEUE_NUM = 7
PARTITION_TABLE = "raftkv_partition"
DELAYER = Path(__file__).with_name("nfq_delay.py")
_NAME = re.compile(r"^rkv-(\d+)-([0-9a-f]{6})-")
_LOCK = Path(tempfile.gettempdir()) / "raftkv-hostlab.lock"
PR_SET_PDEATHSIG = 1


class LabError(RuntimeError):
    """A lab command failed; the message holds the command and its output."""


def run(*cmd: str, stdin: str | None = None, check: bool = True) -> str:
    """Run one command (ip, nft, iptables) and return its stdout; LabError on failure."""
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def missing_tools() -> list[str]:
    """What a lab needs and this machine lacks (root, ip, nft, iptables, /run/netns)."""
    problems = [] if os.geteuid() == 0 else ["root (network namespaces)"]
    problems += [tool for tool in ("ip", "nft", "iptables") if shutil.which(tool) is None]
    return problems


@dataclass(frozen=True, slots=True)
class Host:
    name: str  # the node id: n1, n2, ...
    netns: str
    ip: str


class HostLab:
    """`hosts` namespaces on a bridge, delay_ms each way between them (0: no delay)."""

    def __init__(self, hosts: int, delay_ms: float = 0.0, log_dir: Path | None = None) -> None:
        if not 1 <= hosts <= 200:
            raise ValueError(f"hosts must be in 1..200, got {hosts}")
        self.token = secrets.token_hex(3)
        self.prefix = f"rkv-{os.getpid()}-{self.token}"
        self.delay_ms = delay_ms
        self.octet = -1  # the S of 10.77.S.0/24, chosen by setup()
        self.hosts: dict[str, Host] = {}
        self._size = hosts
        self._namespaces: list[str] = []  # created so far, in order
        self._root_links: list[str] = []  # veths made in the root namespace
        self._delayer: subprocess.Popen[str] | None = None
        self._partitioned: set[str] = set()
        logs = log_dir or Path(tempfile.gettempdir())
        self.delayer_log = logs / f"{self.prefix}-nfq_delay.log"

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> HostLab:
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    @property
    def client_ip(self) -> str:
        return f"{SUBNET}.{self.octet}.{CLIENT_HOST}"

    def setup(self) -> None:
        sweep_stale_labs()
        self._add_netns(self.switch)
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")
        with _locked():
            self.octet = _free_octet()
            self._attach(f"rkv{self.token}", None, f"{self.client_ip}/24")
        for i in range(1, self._size + 1):
            host = Host(f"n{i}", f"{self.prefix}-n{i}", f"{SUBNET}.{self.octet}.{i}")
            self._add_netns(host.netns)
            run("ip", "-n", host.netns, "link", "set", "lo", "up")
            self._attach(f"rkv{self.token}h{i}", host.netns, f"{host.ip}/24")
            self.hosts[host.name] = host
            self._add_partition_table(host.name)
        if self.delay_ms > 0:
            self._start_delay()

    def close(self) -> None:
        """Stop the delayer, end whatever still runs in the namespaces, delete them."""
        errors: list[str] = []
        if self._delayer is not None:
            _stop(self._delayer)
            self._delayer = None
        for ns in reversed(self._namespaces):
            try:
                _delete_netns(ns)
            except LabError as e:
                errors.append(str(e))
        self._namespaces.clear()
        for link in self._root_links:  # gone with the switch, unless setup failed just after
            run("ip", "link", "delete", link, check=False)
        self._root_links.clear()
        if errors:
            raise LabError("; ".join(errors))

    def _add_netns(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self._namespaces.append(name)

    def _attach(self, name: str, netns: str | None, address: str) -> None:
        """A veth pair: one end on the switch's bridge, the other named eth0 in netns (or
        named `name` in the root namespace) with the address."""
        peer = f"{name}s"
        run("ip", "link", "add", name, "type", "veth", "peer", "name", peer)
        self._root_links.append(name)
        run("ip", "link", "set", peer, "netns", self.switch)
        run("ip", "-n", self.switch, "link", "set", peer, "master", "br0", "up")
        if netns is None:
            run("ip", "addr", "add", address, "dev", name)
            run("ip", "link", "set", name, "up")
            return
        run("ip", "link", "set", name, "netns", netns)
        run("ip", "-n", netns, "link", "set", name, "name", "eth0")
        run("ip", "-n", netns, "addr", "add", address, "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")

    # --- delay --------------------------------------------------------------------------------

    def _start_delay(self) -> None:
        netns = [h.netns for h in self.hosts.values()]
        with self.delayer_log.open("ab") as log:
            self._delayer = subprocess.Popen(
                [
                    sys.executable,
                    str(DELAYER),
                    *("--delay-ms", str(self.delay_ms), "--queue", str(NFQUEUE_NUM)),
                    *netns,
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (prctl only)
            )
        assert self._delayer.stdout is not None
        line = self._delayer.stdout.readline()  # "ready" once every queue is bound
        if line.strip() != "ready":
            _stop(self._delayer)
            raise LabError(f"nfq_delay.py did not start: {line!r} {self.delayer_problem()}")
        for host in self.hosts.values():
            rule = self.exec_in(host.name, "iptables", "-w", "-t", "mangle", "-A", "PREROUTING")
            run(*rule, "-s", self.client_ip, "-j", "RETURN")  # the clients: no delay
            run(*rule, "-i", "eth0", "-j", "NFQUEUE", "--queue-num", str(NFQUEUE_NUM))

    def delayer_problem(self) -> str:
        """Why the delayer stopped ("" while it runs, or when there is none)."""
        if self._delayer is None or self._delayer.poll() is None:
            return ""
        tail = self.delayer_log.read_text(errors="replace")[-2000:]
        return f"nfq_delay.py exited {self._delayer.returncode}: {tail}"

    # --- partitions ---------------------------------------------------------------------------

    def partition(self, groups: Sequence[Iterable[str]]) -> None:
        """Each host drops every packet from the hosts outside its group (hosts in no group
        are cut off from all). Replaces the previous partition."""
        sides = [set(g) for g in groups]
        self.heal()
        for host in self.hosts.values():
            side = next((s for s in sides if host.name in s), {host.name})
            cut = sorted(self.hosts[n].ip for n in self.hosts if n not in side)
            if cut:
                self._nft(host.name, f"add element ip {PARTITION_TABLE} cut {{ {', '.join(cut)} }}")
                self._partitioned.add(host.name)

    def heal(self) -> None:
        for name in sorted(self._partitioned):
            self._nft(name, f"flush set ip {PARTITION_TABLE} cut")
        self._partitioned.clear()

    def _nft(self, name: str, script: str) -> None:
        run(*self.exec_in(name, "nft", "-f", "-"), stdin=script + "\n")

    def _add_partition_table(self, name: str) -> None:
        """The firewall that partitions use: an input chain dropping packets from the
        addresses in set `cut`, empty until partition(). Partitions change only the set:
        adding or removing a chain would make the kernel drop the packets nfq_delay holds."""
        self._nft(
            name,
            f"table ip {PARTITION_TABLE} {{\n"
            "  set cut { type ipv4_addr; }\n"
            "  chain input {\n"
            "    type filter hook input priority -10; policy accept;\n"
            "    ip saddr @cut drop\n"
            "  }\n"
            "}",
        )

    # --- running things in a host -------------------------------------------------------------

    def exec_in(self, name: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[name].netns, *cmd]

    def rtt_ms(self, src: str, dst: str, samples: int = 5) -> float:
        """The median round trip from host src to host dst, measured by a TCP connect to a
        closed port of dst (SYN out, RST back: both cross the delayed path)."""
        code = (
            "import socket, statistics, time\n"
            "out = []\n"
            f"for _ in range({samples}):\n"
            "    s = socket.socket(); s.settimeout(5); t = time.monotonic()\n"
            "    try:\n"
            f"        s.connect(({self.hosts[dst].ip!r}, 9))\n"
            "    except ConnectionRefusedError:\n"
            "        out.append(time.monotonic() - t)\n"
            "    s.close()\n"
            "print(statistics.median(out) * 1000)\n"
        )
        return float(run(*self.exec_in(src, sys.executable, "-c", code)).strip())


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with _LOCK.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _free_octet() -> int:
    """An S in 1..250 such that no address of 10.77.S.0/24 is in the root namespace."""
    used = set(re.findall(rf"inet {re.escape(SUBNET)}\.(\d+)\.", run("ip", "-4", "-o", "addr")))
    start = secrets.randbelow(250)
    for k in range(250):
        octet = 1 + (start + k) % 250
        if str(octet) not in used:
            return octet
    raise LabError(f"every {SUBNET}.S.0/24 subnet is in use")


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _delete_netns(name: str) -> None:
    """Kill what still runs inside (only processes in our own namespace), then delete it."""
    for pid in run("ip", "netns", "pids", name, check=False).split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while run("ip", "netns", "pids", name, check=False).split():
        if time.monotonic() > deadline:
            raise LabError(f"processes in {name} did not exit")
        time.sleep(0.02)
    run("ip", "netns", "delete", name)


def sweep_stale_labs() -> list[str]:
    """Delete the namespaces of labs whose owner process is gone; returns their names."""
    swept = []
    for line in run("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NAME.match(name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(LabError):
            _delete_netns(name)
            swept.append(name)
    return swept
