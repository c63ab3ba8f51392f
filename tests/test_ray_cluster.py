"""--engine ray on a Ray cluster of several nodes on this machine, every Ray process and connection
on 127.0.0.1 (``ray_nodes``): a node lost mid-run and one that joins, the driver killed with kill -9
and restarted, every node gone, and what the processes listen on. The drivers are ``genbatch run
--ray-address`` processes, as users run them against a cluster started with ``ray start``.

One cluster serves the module: a head that runs no worker, and worker nodes of 1 or 2 CPUs that
the tests add and kill. Ray notices a node that is gone within about 1.5 s here (``FAST_FAILURE``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers import genbatch, genbatch_process, images, ledger
from ray_nodes import (
    LocalCluster,
    Node,
    listening,
    not_on_loopback,
    processes_naming,
    remove,
    start_cluster,
    with_descendants,
)

pytest.importorskip("ray")

TINY = ["--model", "tiny-random", "-b", "2"]


@pytest.fixture(scope="module")
def cluster(genbatch_home):
    """A head on 127.0.0.1 with no CPU for workers, for the module; the tests add worker nodes."""
    os.environ["GENBATCH_HOME"] = str(genbatch_home)  # the nodes' workers see the tests' home
    made = start_cluster()
    try:
        made.start_head()
        yield made
    finally:
        remove(made)


def worker_nodes(cluster: LocalCluster, *cpus: int) -> list[Node]:
    """Worker nodes with these CPUs, in this order: those alive that fit are kept, the others end."""
    kept: list[Node] = []
    for node in list(cluster.workers()):
        if len(kept) < len(cpus) and node.cpus == cpus[len(kept)]:
            kept.append(node)
        else:
            cluster.kill(node)
    return kept + cluster.add_nodes(*cpus[len(kept) :])


class Driver:
    """``genbatch run ... --engine ray --ray-address`` as a process of its own, its stderr read as it
    comes (each line with the time it came)."""

    def __init__(self, cluster: LocalCluster, manifest: Path, out: Path, *options: str):
        self.out = out
        self.args = [
            "run",
            manifest,
            "--out",
            out,
            *TINY,
            "--engine",
            "ray",
            "--ray-address",
            cluster.address,
            *options,
        ]
        self.process = genbatch_process(*self.args, env=cluster.env)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in iter(self.process.stderr.readline, ""):
            self.lines.append((time.monotonic(), line))

    @property
    def stderr(self) -> str:
        return "".join(line for _, line in self.lines)

    def said(self, pattern: str) -> list[re.Match]:
        return [m for _, line in self.lines if (m := re.search(pattern, line))]

    def when(self, pattern: str) -> float:
        return next(t for t, line in self.lines if re.search(pattern, line))

    def wait_for(self, condition, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"the driver ended ({self.process.returncode}) before it was expected to:\n{self.stderr}")
            assert time.monotonic() < deadline, f"timed out:\n{self.stderr}"
            time.sleep(0.05)

    def ready(self) -> dict[int, int]:
        """worker number -> the pid of its latest process that answered ready."""
        return {int(m[1]): int(m[2]) for m in self.said(r"ray: worker (\d+) ready: pid (\d+)")}

    def finish(self, timeout: float = 120.0) -> int:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the driver hung for {timeout:g} s:\n{self.stderr[-3000:]}")
        self._reader.join(5)
        return self.process.returncode


def prompts(folder: Path, count: int) -> Path:
    path = folder / "p.txt"
    path.write_text("".join(f"a shape number {i}\n" for i in range(count)))
    return path


def ledger_lines(out: Path) -> int:
    path = out / "genbatch.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def assert_recorded_images_intact(out: Path) -> list[dict]:
    records = ledger(out)
    assert len(records) == len({r["key"] for r in records}), "one ledger line per job"
    for record in records:
        assert record["status"] == "done"
        data = (out / record["file"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (record["bytes"], record["sha256"]), record["file"]
    return records


def assert_all_made(out: Path, count: int) -> None:
    records = assert_recorded_images_intact(out)
    assert len(records) == count and len(images(out)) == count


def run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def figures(**values) -> None:
    """Figures for a person reading the test's output (pytest -s)."""
    print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()))


def test_nodes_lost_and_joining_the_driver_killed_and_every_node_gone_lose_nothing(tmp_path, cluster):
    """A cluster's life in one run of 32 images, each step starting where the last left it (a Ray
    driver costs this machine ~15 s to start and load the model, so the steps share them):

    1. two nodes of 1 CPU, a worker on each; every Ray process and the driver listen on 127.0.0.1;
    2. node b goes (every process of it killed at once, as a preempted machine) while its worker
       holds batches: they go back to the queue and the worker is started again, pending;
    3. node c (2 CPUs) joins: the replacement starts there and a third worker for the room it
       adds, and they make images (the worker on node a is held stopped meanwhile, so the images
       made are theirs);
    4. kill -9 on the driver; the same command resumes, on nodes that come and go again;
    5. every node that can hold a worker goes at once (the driver held stopped meanwhile, so that
       the run is mid-way whatever the speed): the driver says what it waits for and stops after
       --worker-wait, exit 1, what it recorded intact; the same command with --engine local makes
       the rest. One ledger line per job throughout, each with its image."""
    # 1. two nodes, a worker on each, and what every process listens on
    a, b = worker_nodes(cluster, 1, 1)
    out = tmp_path / "out"
    command = (prompts(tmp_path, 32), out, "--steps", "4", "--worker-wait", "6")
    driver = Driver(cluster, *command)
    driver.wait_for(lambda: len(driver.ready()) == 2)
    ready = driver.ready()
    on_b = [n for n, pid in ready.items() if pid in b.processes()]
    assert len(on_b) == 1 and ready[3 - on_b[0]] in a.processes(), (ready, driver.stderr)
    lost, kept = on_b[0], 3 - on_b[0]

    ray_processes = with_descendants(processes_naming(cluster.folder))  # every node's, workers with their raylet
    everyone = {**ray_processes, **with_descendants([driver.process.pid])}
    listeners = listening(everyone)
    outside = not_on_loopback(everyone)
    assert not outside, {pid: (everyone[pid][0], where) for pid, where in outside.items()}
    assert {"gcs_server", "raylet"} <= {Path(everyone[pid][0]).name for pid in listeners}
    assert set(ready.values()) <= set(listeners) and driver.process.pid in listeners
    addresses = sorted({host for found in listeners.values() for host, _ in found})

    os.kill(ready[kept], signal.SIGSTOP)  # until the driver is killed: what is made is made on node c
    try:
        # 2. node b goes
        killed = time.monotonic()
        cluster.kill(b)
        lost_line = rf"worker {lost} \(pid {ready[lost]}\) was lost: .*; its batches go to other workers"
        driver.wait_for(lambda: driver.said(lost_line))
        noticed = driver.when(lost_line) - killed

        # 3. node c joins and gets work
        (c,) = cluster.add_nodes(2)
        joined = time.monotonic()
        driver.wait_for(lambda: len(driver.ready()) == 3 and driver.ready()[lost] != ready[lost])
        assert driver.said(
            r"ray: the cluster has room for 3 workers \(3 nodes, 3 CPU, 0 GPU\): 1 more starting, 3 in all"
        )
        on_c = driver.ready()
        assert on_c[lost] in c.processes() and on_c[3] in c.processes()
        driver.wait_for(lambda: ledger_lines(out) >= 1)
        made_on_c, working = ledger_lines(out), time.monotonic() - joined
    finally:
        os.kill(ready[kept], signal.SIGCONT)

    # 4. kill -9 on the driver, and the same command again (on node a alone)
    driver.process.kill()
    driver.finish()
    at_kill = ledger_lines(out)
    assert 1 <= at_kill < 32
    assert_recorded_images_intact(out)
    cluster.kill(c)
    began = time.monotonic()
    again = Driver(cluster, *command)
    again.wait_for(lambda: ledger_lines(out) >= at_kill + 2)
    resumed = time.monotonic() - began

    # 5. every node goes
    again.process.send_signal(signal.SIGSTOP)
    try:
        for node in cluster.workers():
            cluster.kill(node)
        gone = time.monotonic()
    finally:
        again.process.send_signal(signal.SIGCONT)
    assert again.finish(timeout=60) == 1, again.stderr
    stopped = time.monotonic() - gone
    # what the driver waits for: the nodes gone, or (until Ray has noticed their deaths, which takes
    # it a few seconds on a busy machine) a node that is still counted alive but holds no free CPU
    gone_or_busy = r"offers 1 CPU \(alive: 1 node, 0 CPU, 0 GPU\)|has 1 CPU free \(1 alive node offers it\)"
    why = rf"no node ({gone_or_busy}); 0 of 1 workers ready"
    assert again.said(rf"ray: waiting for a worker: {why}"), again.stderr
    assert again.said(rf"error: --engine ray gave up waiting for a worker after \d+ s \(--worker-wait 6 s\): {why}")
    records = assert_recorded_images_intact(out)
    assert at_kill + 2 <= len(records) < 32
    summary = run_json(out)
    assert summary["exit_code"] == 1 and summary["error"]["type"] == "WorkersUnavailable"
    assert summary["counts"]["already_done"] == at_kill

    result = genbatch("run", command[0], "--out", out, *TINY, "--steps", "4", "--quiet", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]
    assert (counts["already_done"], counts["done"]) == (len(records), 32 - len(records))
    assert_all_made(out, 32)
    figures(
        listening_processes=len(listeners), of_processes=len(everyone), addresses=addresses,
        lost_noticed_s=noticed, join_to_images_s=working, made_on_joined_node=made_on_c, at_kill_9=at_kill,
        restart_to_new_images_s=resumed, before_all_gone=len(records), stopped_after_s=stopped,
        rerun_made=counts["done"], ledger_lines=ledger_lines(out), images=len(images(out)),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("workers", "nodes", "slots", "queued", "more"),
    [
        (None, [{"CPU": 1}, {"CPU": 2}], ["ready", "starting"], 10, 1),  # room for 3: one more
        (None, [{"CPU": 1}, {"CPU": 2}], ["ready", "starting"], 1, 0),  # no batch for another
        (None, [{"CPU": 8}], ["ready", "ready", "retired"], 10, 6),  # a retired one counts for nothing
        (None, [{"CPU": 1}], ["ready", "starting"], 10, 0),  # a node gone: no fewer, no more
        (2, [{"CPU": 4}], ["ready", "ready"], 10, 0),  # --ray-workers 2: two, whatever joins
    ],
)
def test_how_many_workers_the_pool_adds_when_nodes_join(workers, nodes, slots, queued, more):
    from collections import deque
    from types import SimpleNamespace

    from genbatch.engine.ray import RayEngine, _Slot

    started = []
    run = SimpleNamespace(
        grow=workers is None,
        looked=0,
        look=SimpleNamespace(nodes=[{"Alive": True, "Resources": n} for n in nodes], count=1),
        need={"CPU": 1.0},
        slots=[
            _Slot(i + 1, f"actor{i}", ready_ref="ref" if s == "starting" else None, retired=s == "retired")
            for i, s in enumerate(slots)
        ],
        queue=deque(range(queued)),
        start=lambda number: started.append(number) or SimpleNamespace(ready=SimpleNamespace(remote=lambda: "ref")),
        say=lambda text: None,
    )
    RayEngine._grow(run)
    assert len(started) == more and started == list(range(len(slots) + 1, len(slots) + 1 + more))
    RayEngine._grow(run)  # the same look again: nothing more
    assert len(started) == more


def test_ray_is_left_as_it_was_after_joining_on_loopback(monkeypatch):
    from ray._private import ray_constants

    from genbatch.engine.ray import _loopback_as_given

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")
    with _loopback_as_given():
        assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and ray_constants.ENABLE_RAY_CLUSTER is False
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1" and ray_constants.ENABLE_RAY_CLUSTER is True
