"""Throw-away hosts as Linux namespaces, for tests that need several machines (issue #18).

A `Lab` builds, for one test run, a private Ethernet segment and a few hosts on it. Each host is a
network namespace *and* a UTS namespace (its own hostname, so Celery's `name@%h` shows the host).
The rules that keep every packet on the test's own hosts are code here, not conventions:

- every name carries a per-run token (`nfl<token>-<host>`, interfaces `v<token><n>h|b`, bridge
  `b<token>`), so none can match the machine's own namespaces or interfaces;
- the bridge lives in a namespace of its own, and each veth pair is created from inside that
  namespace with its other end put straight into the host's (`ip -n BR link add ... peer name ...
  netns HOST`): nothing is created, addressed or brought up in the root namespace, and no
  namespace gets a default route (only its /24 on the segment);
- every `ip` command names its namespace (`ip -n NS ...`; `Lab.ip` refuses one that does not);
- the test reaches its hosts only through `ip netns exec NS nsenter --uts=...`; host names go in
  `/etc/netns/NS/hosts` (bind-mounted over /etc/hosts by `ip netns exec`), never /etc/hosts;
- the owner (this process's pid and start time) is recorded in `/run/newsflow-netns/<token>.json`
  before anything is created; `close()` kills the run's processes by pid, then deletes its
  namespaces, mounts and files, and runs from `finally`; `sweep()` removes a leftover run only if
  its recorded owner process is gone.

Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN), `ip` (iproute2), `nsenter` and `unshare` (util-linux).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUN_DIR = Path("/run/newsflow-netns")
ETC_NETNS = Path("/etc/netns")
PREFIX = "nfl"  # every namespace of ours starts with this and the run's token


def _proc_start(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot), or None if there is none: with the
    pid, it names one process even after the pid is reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def available() -> str | None:
    """None if namespaces can be built here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"{PREFIX}probe{secrets.token_hex(3)}"
    try:
        subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True, timeout=10)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {getattr(exc, 'stderr', b'') or exc!r}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


@dataclass
class Host:
    name: str  # the hostname inside, e.g. "worker-a"
    netns: str  # nfl<token>-<name>
    uts: Path  # bind mount holding its UTS namespace
    addresses: list[str]
    veth: str  # its end of the pair, inside netns
    peer: str  # the bridge's end, inside the bridge namespace


@dataclass
class Lab:
    """One run's segment and hosts. Use as a context manager: `close()` always runs."""

    subnet: str = ""  # "10.x.y" (a /24); random when empty
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: dict[str, Host] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _next_ip: int = 2

    def __post_init__(self) -> None:
        if not self.subnet:
            self.subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
        self.bridge_ns = f"{PREFIX}{self.token}-br"
        self.bridge = f"b{self.token}"
        self.dir = RUN_DIR / self.token
        self.record = RUN_DIR / f"{self.token}.json"

    # --- the safety rules ---------------------------------------------------------------------------
    def ours(self, name: str) -> bool:
        return name.startswith(f"{PREFIX}{self.token}-")

    def ip(self, netns: str, *args: str) -> str:
        """`ip -n NETNS ARGS`: only in a namespace of this run."""
        assert self.ours(netns), f"not a namespace of this run: {netns}"
        return _run(["ip", "-n", netns, *args])

    def _write_record(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        record = {
            "owner_pid": os.getpid(),
            "owner_start": _proc_start(os.getpid()),
            "token": self.token,
            "namespaces": [self.bridge_ns, *(h.netns for h in self.hosts.values())],
            "uts": [str(h.uts) for h in self.hosts.values()],
            "pids": [p.pid for p in self.procs],
            "created": time.time(),
        }
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self.record)

    # --- building -------------------------------------------------------------------------------------
    def open(self) -> Lab:
        sweep()
        # Read-only look at the machine's own names: none of ours may match one (the token makes
        # that all but impossible; this makes it certain).
        theirs = set(_run(["ip", "netns", "list"]).split()) | {
            line.split(":")[1].strip().split("@")[0] for line in _run(["ip", "-o", "link", "show"]).splitlines()
        }
        token_names = {self.bridge_ns, self.bridge} | {f"v{self.token}{i}{e}" for i in range(10) for e in "hb"}
        if theirs & token_names or any(n.startswith(f"{PREFIX}{self.token}-") for n in theirs):
            raise RuntimeError(f"names of run {self.token} collide with the machine's: {theirs & token_names}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_record()  # the owner is on record before anything exists
        _run(["ip", "netns", "add", self.bridge_ns])
        self.ip(self.bridge_ns, "link", "add", self.bridge, "type", "bridge")
        self.ip(self.bridge_ns, "link", "set", self.bridge, "up")
        return self

    def add_host(self, name: str, n_addresses: int = 1) -> Host:
        i = len(self.hosts)
        netns = f"{PREFIX}{self.token}-{name}"
        veth, peer = f"v{self.token}{i}h", f"v{self.token}{i}b"
        uts = self.dir / f"{name}.uts"
        addresses = [f"{self.subnet}.{self._next_ip + k}" for k in range(n_addresses)]
        self._next_ip += n_addresses
        host = Host(name, netns, uts, addresses, veth, peer)
        self.hosts[name] = host
        self._write_record()
        _run(["ip", "netns", "add", netns])
        # Created inside the bridge's namespace, its other end put straight into the host's.
        self.ip(self.bridge_ns, "link", "add", peer, "type", "veth", "peer", "name", veth, "netns", netns)
        self.ip(self.bridge_ns, "link", "set", peer, "master", self.bridge, "up")
        for a in addresses:
            self.ip(netns, "addr", "add", f"{a}/24", "dev", veth)
        self.ip(netns, "link", "set", "lo", "up")
        self.ip(netns, "link", "set", veth, "up")
        uts.touch()
        _run(["unshare", f"--uts={uts}", "hostname", name])  # a persistent UTS namespace, bind-mounted on `uts`
        return host

    def write_hosts(self, names: dict[str, str]) -> None:
        """/etc/netns/NS/hosts of every host: `names` (hostname -> address) plus localhost."""
        lines = ["127.0.0.1 localhost", *(f"{addr} {name}" for name, addr in names.items())]
        for host in self.hosts.values():
            d = ETC_NETNS / host.netns
            d.mkdir(parents=True, exist_ok=True)
            (d / "hosts").write_text("\n".join(lines) + "\n")

    # --- using ----------------------------------------------------------------------------------------
    def wrap(self, host: str, cmd: Sequence[str]) -> list[str]:
        h = self.hosts[host]
        return ["ip", "netns", "exec", h.netns, "nsenter", f"--uts={h.uts}", "--", *cmd]

    def run(
        self, host: str, cmd: Sequence[str], timeout: float = 120, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.wrap(host, cmd), capture_output=True, text=True, timeout=timeout, **kwargs)

    def spawn(self, host: str, cmd: Sequence[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        """A long-running process on `host` (its own session, so teardown can kill its group)."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(self.wrap(host, cmd), stdout=out, stderr=out, start_new_session=True, **kwargs)
        self.procs.append(proc)
        self._write_record()
        return proc

    def cut(self, host: str) -> None:
        """Take `host` off the bridge: its veth stays up, its packets vanish silently both ways."""
        self.ip(self.bridge_ns, "link", "set", self.hosts[host].peer, "nomaster")

    def mend(self, host: str) -> None:
        self.ip(self.bridge_ns, "link", "set", self.hosts[host].peer, "master", self.bridge)

    # --- teardown -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Kill this run's processes by pid (their process groups), then remove everything it made."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        _remove(
            self.token,
            [self.bridge_ns, *(h.netns for h in self.hosts.values())],
            [str(h.uts) for h in self.hosts.values()],
        )

    def __enter__(self) -> Lab:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run(cmd: Sequence[str]) -> str:
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _pids_in(netns: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=10)
    return [int(p) for p in done.stdout.split() if p.isdigit()]


def _remove(token: str, namespaces: list[str], uts_mounts: list[str]) -> None:
    """Delete a run's namespaces (after killing whatever still runs inside them), mounts and files."""
    for ns in namespaces:
        assert ns.startswith(f"{PREFIX}{token}-"), ns
        for pid in _pids_in(ns):  # stragglers of this run only: they live in its namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)
    for mount in uts_mounts:
        subprocess.run(["umount", mount], capture_output=True, timeout=30)
    shutil.rmtree(RUN_DIR / token, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (RUN_DIR / f"{token}.json").unlink()


def sweep() -> list[str]:
    """Remove leftover runs whose recorded owner process is gone (a test killed before its teardown);
    a run whose owner still lives is never touched. Returns the tokens removed."""
    removed = []
    if not RUN_DIR.exists():
        return removed
    for record in RUN_DIR.glob("*.json"):
        try:
            data = json.loads(record.read_text())
            pid, start, token = int(data["owner_pid"]), data.get("owner_start"), str(data["token"])
        except (OSError, ValueError, KeyError):
            continue
        if _proc_start(pid) is not None and _proc_start(pid) == start:
            continue  # its owner is alive
        # Its surviving processes are found inside its namespaces (`ip netns pids`), never by a
        # recorded pid that may belong to another process by now.
        _remove(token, [str(n) for n in data.get("namespaces", [])], [str(u) for u in data.get("uts", [])])
        removed.append(token)
    return removed
