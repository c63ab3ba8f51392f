"""Ray nodes on this machine for the tests, every one on 127.0.0.1, and what their processes listen on.

Ray advertises the machine's network address by default, even for an instance on one machine:
a node's address is resolved "from the perspective" of the network, and 127.0.0.1 is rewritten to
the machine's address (``resolve_ip_for_localhost``), so ``--node-ip-address 127.0.0.1`` alone does
not keep a node there. What does:

- the head (``ray start --head --node-ip-address 127.0.0.1``): Ray's own switch for machines that
  are no cluster nodes, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, turns the rewrite off;
- a worker node (``ray start --address``): that switch also makes ``ray start --address`` refuse to
  start, so a worker node runs Ray's own ``ray start`` command (``ray.scripts.scripts.main``) with the
  rewrite alone turned off (``WORKER_NODE``): the given ``--address`` and ``--node-ip-address
  127.0.0.1`` are used as given;
- a genbatch driver needs nothing: it joins ``--ray-address 127.0.0.1:PORT`` as given, and a local
  instance it starts is on 127.0.0.1 (``genbatch.engine.ray._loopback_as_given``).

Nodes and drivers share one token (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``): Ray 2.60 turns token
authentication on where a token file exists, and a node and a driver that disagree cannot talk.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = Path(sys.executable).parent / "ray"

# `ray start --address` on 127.0.0.1: Ray's command with the rewrite of 127.0.0.1 turned off.
WORKER_NODE = (
    "import sys; import ray._private.services as services; "
    "services.resolve_ip_for_localhost = lambda host: host; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"
)

# A node that is gone is noticed within about 1.5 s: 3 missed health checks 0.5 s apart (Ray's
# own defaults wait several seconds more).
FAST_FAILURE = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


def loopback_env(token: str) -> dict[str, str]:
    """The environment of a worker node or a driver of the cluster (Ray runs its workers at nice
    15; where the tests share the CPU with other work that starves them, so at nice 0)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    }
    return {
        **env,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_worker_niceness": "0",
    }


@dataclass
class Node:
    name: str
    folder: Path  # its --temp-dir: the node's processes are those whose command line names it
    cpus: int

    def processes(self) -> dict[int, list[str]]:
        return with_descendants(processes_naming(self.folder))

    def raylet(self) -> int | None:
        return next(
            (pid for pid, argv in processes_naming(self.folder).items() if Path(argv[0]).name == "raylet"), None
        )


@dataclass
class LocalCluster:
    """A head (no CPU: workers run on the worker nodes only, as on a cluster whose head does not
    generate) and worker nodes, each with its own temp dir under ``folder``."""

    folder: Path
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    nodes: list[Node] = field(default_factory=list)
    address: str = ""
    _count: int = 0

    @property
    def env(self) -> dict[str, str]:
        return loopback_env(self.token)

    def start_head(self, cpus: int = 0) -> Node:
        node = self._node("head", cpus)
        self._ray_start(
            [str(RAY), "start", "--head", "--port", "0", "--dashboard-port", str(free_port()),
             "--include-dashboard", "false", "--disable-usage-stats",
             "--system-config", json.dumps(FAST_FAILURE)],
            [node],
            {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
        )  # fmt: skip
        self.address = (node.folder / "ray_current_cluster").read_text().strip()
        return node

    def add_nodes(self, *cpus: int) -> list[Node]:
        """Worker nodes with these CPUs, started together."""
        nodes = []
        for count in cpus:
            self._count += 1
            nodes.append(self._node(f"n{self._count}", count))
        self._ray_start([sys.executable, "-c", WORKER_NODE, "start", "--address", self.address], nodes, self.env)
        return nodes

    def _node(self, name: str, cpus: int) -> Node:
        folder = self.folder / name
        folder.mkdir()
        return Node(name, folder, cpus)

    def _ray_start(self, command: list[str], nodes: list[Node], env: dict[str, str]) -> None:
        started = []
        for node in nodes:
            options = [
                "--node-ip-address", "127.0.0.1", "--num-cpus", str(node.cpus), "--temp-dir", str(node.folder),
                "--object-store-memory", str(80 * 1024 * 1024), "--min-worker-port", "0", "--max-worker-port", "0",
            ]  # fmt: skip
            process = subprocess.Popen(
                [*command, *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            started.append((node, process))
        for node, process in started:
            output, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                raise RuntimeError(f"ray start for node {node.name}:\n{output}")
            self.nodes.append(node)

    def kill(self, node: Node) -> None:
        """The node goes as a preempted machine does: every process of it at once (SIGKILL)."""
        kill(node.processes())
        self.nodes.remove(node)

    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.name != "head"]

    def stop(self) -> None:
        kill(with_descendants(processes_naming(self.folder)))
        self.nodes.clear()


def start_cluster(prefix: str = "gbc") -> LocalCluster:
    # short: Ray's socket paths have a limit
    return LocalCluster(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")))


def remove(cluster: LocalCluster) -> None:
    cluster.stop()
    shutil.rmtree(cluster.folder, ignore_errors=True)


def kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- processes --


def _table() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, command line) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry.name)] = (parent, argv)
    return table


def processes_naming(folder: Path) -> dict[int, list[str]]:
    """pid -> command line of the processes whose command line names ``folder``."""
    return {pid: argv for pid, (_, argv) in _table().items() if any(str(folder) in arg for arg in argv)}


def with_descendants(pids) -> dict[int, list[str]]:
    """These processes and every process they started (Ray's workers run as children of their raylet)."""
    table = _table()
    found = {pid for pid in pids if pid in table}
    while True:
        more = {pid for pid, (parent, _) in table.items() if parent in found} - found
        if not more:
            return {pid: table[pid][1] for pid in found}
        found |= more


def wait_until(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)


# -- sockets --


def _address(hexaddr: str, v6: bool) -> tuple[str, int]:
    ip, port = hexaddr.split(":")
    raw = bytes.fromhex(ip)
    if v6:  # four 32-bit words, each in the host's byte order
        packed = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        return socket.inet_ntop(socket.AF_INET6, packed), int(port, 16)
    return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)


def listening(pids) -> dict[int, set[tuple[str, int]]]:
    """pid -> the (address, port) its TCP sockets listen on, from /proc/net/tcp and tcp6 (state 0A)
    and the socket inodes in /proc/PID/fd."""
    sockets = {}
    for name, v6 in (("tcp", False), ("tcp6", True)):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                sockets[fields[9]] = _address(fields[1], v6)
    found: dict[int, set[tuple[str, int]]] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in sockets:
                found.setdefault(pid, set()).add(sockets[target[8:-1]])
    return found


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def not_on_loopback(pids) -> dict[int, set[tuple[str, int]]]:
    """The processes that listen on anything but 127.0.0.1 / ::1, and what on."""
    found = {}
    for pid, addresses in listening(pids).items():
        outside = {a for a in addresses if a[0] not in LOOPBACK}
        if outside:
            found[pid] = outside
    return found
