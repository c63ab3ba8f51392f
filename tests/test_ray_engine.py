"""--engine ray on a local Ray instance with 2 CPU workers: the same images as the local
engine, one ledger whoever wrote the images, resume across engines, a lost worker, a signal,
workers that cannot be placed and a node that is gone (--worker-wait). Every instance is on
127.0.0.1 only, as the one genbatch starts itself (tests/ray_nodes.py says how)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import FAST, genbatch, genbatch_process, images, ledger, pixels
from ray_nodes import listening, not_on_loopback, with_descendants

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]

# Ray runs workers at nice 15; where the tests share the CPU with other work that starves
# them, so the tests run them at the driver's priority.
NICE = {"RAY_worker_niceness": "0"}


@pytest.fixture(scope="module")
def ray_address(genbatch_home):
    """One Ray instance for the module (it takes seconds to start); runs in this process join it,
    subprocesses get its address. Its workers see the tests' GENBATCH_HOME."""
    from genbatch.engine.ray import _loopback_as_given

    os.environ.update(NICE, GENBATCH_HOME=str(genbatch_home))
    with _loopback_as_given():  # as genbatch starts one: on 127.0.0.1 only
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        os.environ.pop("RAY_worker_niceness", None)  # GENBATCH_HOME is reset by conftest's fixture


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("".join(f"a shape number {i}\n" for i in range(10)))
    return path


def run_json(out):
    return json.loads((out / "run.json").read_text())


def assert_exactly_planned(out, count):
    records = ledger(out)
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == count, "one ledger line per job"
    assert all(r["status"] == "done" and (out / r["file"]).is_file() for r in records)
    assert len(images(out)) == count


def test_same_images_as_the_local_engine(tmp_path, manifest, ray_address):
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert genbatch("run", manifest, "--out", local, *FAST, "-b", "3").exit_code == 0
    result = genbatch("run", manifest, "--out", remote, *FAST, "-b", "3", "--engine", "ray", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["engine"] == "ray" and summary["counts"]["done"] == 10

    assert [p.name for p in images(remote)] == [p.name for p in images(local)]
    for a, b in zip(images(remote), images(local)):
        assert np.array_equal(pixels(a), pixels(b)), a.name
    assert {r["key"] for r in ledger(remote)} == {r["key"] for r in ledger(local)}
    assert_exactly_planned(remote, 10)
    workers = run_json(remote)["workers"]
    assert len(workers) == 2 and sum(w["images"] for w in workers) == 10
    assert all(w["device"] == "cpu" and w["seconds"] > 0 and w["pids"] for w in workers)
    assert (remote / "report.html").is_file()


def test_rows_with_images_make_the_local_engines_images(tmp_path, ray_address):
    """Image-to-image rows on Ray workers: each worker reads the row's input again (checked
    against its sha256) and makes the local engine's pixels; the report shows each input."""
    manifest = tmp_path / "edits.csv"
    shutil.copytree(REPO / "manifests" / "images", tmp_path / "images")
    manifest.write_text((REPO / "manifests" / "edits.csv").read_text(encoding="utf-8"), encoding="utf-8")
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert genbatch("run", manifest, "--out", local, "--steps", "4", "--quiet").exit_code == 0
    result = genbatch("run", manifest, "--out", remote, "--steps", "4", "--quiet", "--engine", "ray")
    assert result.exit_code == 0, result.output
    made = {r["key"]: r for r in ledger(remote)}
    assert made.keys() == {r["key"] for r in ledger(local)} and len(made) >= 3
    for record in ledger(local):
        assert record["image"] == made[record["key"]]["image"]  # path, sha256 and size of the input
        assert np.array_equal(pixels(local / record["file"]), pixels(remote / made[record["key"]]["file"]))
    inputs = {r["image"]["sha256"][:20] for r in made.values()}
    assert {f"input-{sha}.webp" for sha in inputs} <= {p.name for p in (remote / ".genbatch-thumbs").iterdir()}


def test_resume_across_engines_both_ways(tmp_path, manifest, ray_address):
    out = tmp_path / "out"
    assert genbatch("run", manifest, "--out", out, *FAST, "-b", "2", "--limit", "3").exit_code == 0
    steps = [("ray", ["--limit", "6"], 3, 3), ("local", [], 6, 4)]  # local -> ray, then ray -> local
    for engine, limit, already_done, done in steps:
        result = genbatch("run", manifest, "--out", out, *FAST, "-b", "2", "--engine", engine, *limit, "--json")
        assert result.exit_code == 0, result.output
        counts = json.loads(result.stdout)["counts"]
        assert (counts["already_done"], counts["done"]) == (already_done, done), engine
    assert_exactly_planned(out, 10)


def read_lines(stream, lines: list[str]) -> threading.Thread:
    thread = threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")), daemon=True)
    thread.start()
    return thread


def wait_until(condition, timeout: float = 120.0, driver: subprocess.Popen | None = None, stderr=()) -> None:
    """Until ``condition()``; a ``driver`` that ends before fails at once, with its ``stderr`` lines."""
    deadline = time.monotonic() + timeout
    while not condition():
        if driver is not None and driver.poll() is not None:
            time.sleep(0.5)  # the reader thread takes the last lines
            pytest.fail(f"the driver ended ({driver.returncode}) before it was expected to:\n{''.join(stderr)[-3000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def ledger_lines(out) -> int:
    path = out / "genbatch.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


SLOWER = ["--model", "tiny-random", "--steps", "8", "-b", "2"]


def kill_a_worker_mid_run(tmp_path, ray_address, count: int, *options: str):
    """Start a run of ``count`` jobs, SIGKILL worker 1 once two images are done; the run's
    exit code, its stderr and the killed pid."""
    manifest = tmp_path / "p.txt"
    manifest.write_text("".join(f"a shape number {i}\n" for i in range(count)))
    out = tmp_path / "out"
    driver = genbatch_process(
        "run", manifest, "--out", out, *SLOWER, "--engine", "ray", "--ray-address", ray_address, *options
    )
    stderr: list[str] = []
    reader = read_lines(driver.stderr, stderr)
    wait_until(
        lambda: sum("ready: pid" in line for line in stderr) == 2 and ledger_lines(out) >= 2, 120, driver, stderr
    )
    assert ledger_lines(out) < count - 4, "the run must still have work in flight"
    pid = int(next(line for line in stderr if "worker 1 ready: pid" in line).split("pid ")[1].split()[0])
    os.kill(pid, signal.SIGKILL)
    code = driver.wait(timeout=180)
    reader.join(5)
    assert any("worker 1" in line and "was lost" in line for line in stderr), "".join(stderr)
    return code, "".join(stderr), pid


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_nothing(tmp_path, ray_address):
    code, stderr, pid = kill_a_worker_mid_run(tmp_path, ray_address, 24)
    assert code == 0, stderr
    out = tmp_path / "out"
    assert_exactly_planned(out, 24)
    worker = next(w for w in run_json(out)["workers"] if w["worker"] == 1)
    assert worker["replaced"] == 1 and worker["pids"][0] == pid


@pytest.mark.slow
def test_past_max_retries_a_lost_job_is_recorded_failed_with_its_reason(tmp_path, ray_address):
    code, stderr, _ = kill_a_worker_mid_run(tmp_path, ray_address, 16, "--max-retries", "0")
    assert code == 1, stderr
    records = ledger(tmp_path / "out")
    assert len(records) == len({r["key"] for r in records}) == 16
    failed = [r for r in records if r["status"] == "failed"]
    assert 1 <= len(failed) <= 4  # the batches in flight on the killed worker: 2 of 2 images at most
    assert all("lost with its Ray worker 1 times (--max-retries 0)" in r["error"] for r in failed)


@pytest.mark.slow
def test_sigterm_on_the_driver_stops_flushes_and_resumes(tmp_path, ray_address):
    """This driver starts its own local Ray instance, as on a machine without a cluster."""
    manifest = tmp_path / "p.txt"
    manifest.write_text("".join(f"a shape number {i}\n" for i in range(48)))  # room to stop before the end
    out = tmp_path / "out"
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **NICE}
    driver = genbatch_process("run", manifest, "--out", out, *SLOWER, "--engine", "ray", env=env)
    stderr: list[str] = []
    reader = read_lines(driver.stderr, stderr)
    wait_until(lambda: ledger_lines(out) >= 2, 120, driver, stderr)
    ray_processes = with_descendants([driver.pid])  # the instance's GCS, raylet and workers, and the driver
    listeners = listening(ray_processes)
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=120) == 143, "".join(stderr)
    reader.join(5)
    assert any("started a local Ray instance at 127.0.0.1:" in line for line in stderr), "".join(stderr)
    assert not not_on_loopback(ray_processes), listeners
    assert {"gcs_server", "raylet"} <= {Path(ray_processes[pid][0]).name for pid in listeners}
    records = ledger(out)
    assert 2 <= len(records) < 48
    assert len({r["key"] for r in records}) == len(records)
    assert all((out / r["file"]).is_file() for r in records)
    assert run_json(out)["interrupted"] and run_json(out)["exit_code"] == 143

    result = genbatch("run", manifest, "--out", out, *SLOWER, "--quiet", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["already_done"] == len(records)
    assert_exactly_planned(out, 48)


def finish(driver: subprocess.Popen, timeout: float) -> tuple[int, str]:
    """The driver's exit code and stderr; a driver still running after ``timeout`` has hung."""
    try:
        _, stderr = driver.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        driver.kill()
        _, stderr = driver.communicate()
        pytest.fail(f"the driver hung for {timeout:g} s:\n{stderr[-3000:]}")
    return driver.returncode, stderr


def assert_recorded_images_intact(out) -> list[dict]:
    records = ledger(out)
    assert len(records) == len({r["key"] for r in records}), "one ledger line per job"
    for record in records:
        assert record["status"] == "done"
        data = (out / record["file"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (record["bytes"], record["sha256"]), record["file"]
    return records


def test_workers_that_cannot_be_placed_stop_the_run_after_worker_wait(tmp_path, manifest, ray_address):
    """A placement group holds every CPU of the instance: no worker can be placed. The driver
    says what it waits for and stops after --worker-wait with exit 1, having written nothing."""
    from ray.util.placement_group import placement_group, remove_placement_group

    held = placement_group([{"CPU": 2}])
    ray.get(held.ready(), timeout=60)
    out = tmp_path / "out"
    try:
        driver = genbatch_process(
            "run", manifest, "--out", out, *FAST[:4], "--engine", "ray", "--ray-address", ray_address,
            "--worker-wait", "4",
        )  # fmt: skip
        code, stderr = finish(driver, timeout=90)
    finally:
        remove_placement_group(held)
    assert code == 1, stderr
    waiting = "ray: waiting for a worker: no node has 1 CPU free (1 alive node offers it); 0 of 2 workers ready"
    assert waiting in stderr, stderr
    assert re.search(r"error: --engine ray gave up waiting for a worker after [45] s \(--worker-wait 4 s\)", stderr)
    assert not images(out) and ledger_lines(out) == 0
    summary = run_json(out)
    assert summary["exit_code"] == 1 and summary["counts"]["not_run"] == 10
    assert summary["error"]["type"] == "WorkersUnavailable"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_of(folder: Path) -> dict[int, list[str]]:
    """pid -> command line of the processes whose command line names ``folder`` (a Ray instance's
    own temp dir: the processes of that instance, and only those)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and any(str(folder) in arg for arg in argv):
            found[int(entry.name)] = argv
    return found


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@pytest.fixture
def own_ray_instance():
    """A Ray instance of this test's own (``ray start --head`` on 127.0.0.1, in a temp dir of its
    own), to kill parts of; its address and temp dir. Its processes are ended at the end.
    ``--node-ip-address 127.0.0.1`` alone is rewritten to the machine's address: Ray's switch for
    machines that are no cluster nodes keeps it."""
    folder = Path(tempfile.mkdtemp(prefix="gbray", dir="/tmp"))  # short: Ray's socket paths have a limit
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        **NICE,
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    try:
        subprocess.run(
            [Path(sys.executable).parent / "ray", "start", "--head", "--node-ip-address", "127.0.0.1",
             "--port", "0", "--dashboard-port", str(free_port()), "--num-cpus", "2", "--temp-dir", folder,
             "--include-dashboard", "false", "--disable-usage-stats"],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        yield (folder / "ray_current_cluster").read_text().strip(), folder, env
    finally:
        for pid in processes_of(folder):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_the_raylet_killed_mid_run_stops_the_run_and_a_rerun_finishes(tmp_path, own_ray_instance):
    """The node's raylet is killed (SIGKILL) once images are in the ledger, and the processes it
    started with it, as when a node goes (alone, its workers notice within a second or so, time
    enough for the tiny model to finish the run): no worker can be placed again. The driver
    stops within --worker-wait and a margin, exit 1; the recorded images are intact and the
    local engine makes the rest, none twice."""
    address, folder, env = own_ray_instance
    manifest = tmp_path / "p.txt"
    manifest.write_text("".join(f"a shape number {i}\n" for i in range(24)))
    out = tmp_path / "out"
    wait = 5
    driver = genbatch_process(
        "run", manifest, "--out", out, *SLOWER, "--engine", "ray", "--ray-address", address,
        "--worker-wait", str(wait), env=env,
    )  # fmt: skip
    try:
        wait_until(lambda: ledger_lines(out) >= 2 or driver.poll() is not None)
        raylets = [pid for pid, argv in processes_of(folder).items() if Path(argv[0]).name == "raylet"]
        assert len(raylets) == 1 and driver.poll() is None
        assert ledger_lines(out) < 24 - 4, "the run must still have work in flight"
        workers = children_of(raylets[0])
        assert workers
        for pid in [raylets[0], *workers]:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        code, stderr = finish(driver, timeout=wait + 60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert code == 1, stderr
    assert time.monotonic() - killed < wait + 30, stderr
    assert "ray: waiting for a worker:" in stderr, stderr
    assert re.search(
        rf"error: --engine ray gave up waiting for a worker after \d+ s \(--worker-wait {wait} s\)", stderr
    )
    records = assert_recorded_images_intact(out)
    assert 2 <= len(records) < 24
    assert run_json(out)["exit_code"] == 1

    result = genbatch("run", manifest, "--out", out, *SLOWER, "--quiet", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]
    assert (counts["already_done"], counts["done"]) == (len(records), 24 - len(records))
    assert_exactly_planned(out, 24)


def test_without_ray_installed_it_says_how_to_install(tmp_path, manifest, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    monkeypatch.delitem(sys.modules, "genbatch.engine.ray", raising=False)
    result = genbatch("run", manifest, "--out", tmp_path / "out", *FAST, "--engine", "ray")
    assert result.exit_code == 2
    assert "pip install 'genbatch[ray]'" in result.output
    assert not (tmp_path / "out").exists()


def test_ray_options_need_the_ray_engine(tmp_path, manifest):
    result = genbatch("run", manifest, "--out", tmp_path / "out", *FAST, "--ray-workers", "2")
    assert result.exit_code == 2 and "--ray-workers is an option of --engine ray" in result.output


def test_worker_wait_is_checked_and_needs_the_ray_engine(tmp_path, manifest):
    result = genbatch("run", manifest, "--out", tmp_path / "out", *FAST, "--worker-wait", "5")
    assert result.exit_code == 2 and "--worker-wait is an option of --engine ray" in result.output
    result = genbatch("run", manifest, "--out", tmp_path / "out", *FAST, "--engine", "ray", "--worker-wait", "0")
    assert result.exit_code == 2 and "--worker-wait 0: expected seconds above 0" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("nodes", "free", "placed", "says"),
    [
        (None, {}, {}, "the Ray cluster has not answered"),
        ([], {}, {}, "no Ray node is alive"),
        ([{"CPU": 8.0}], {"CPU": 8.0}, {}, "no node offers 1 CPU/1 GPU (alive: 1 node, 8 CPU, 0 GPU)"),
        ([{"CPU": 8.0, "GPU": 1.0}] * 2, {"CPU": 8.0}, {}, "no node has 1 CPU/1 GPU free (2 alive nodes offer it)"),
        ([{"CPU": 8.0, "GPU": 1.0}], {"CPU": 7.0}, {"a": "10.0.0.5"}, "1 starting on 10.0.0.5"),
    ],
)
def test_what_the_driver_says_it_waits_for(nodes, free, placed, says):
    from types import SimpleNamespace

    from genbatch.engine.ray import RayEngine

    look = SimpleNamespace(
        nodes=None if nodes is None else [{"Alive": True, "Resources": n} for n in nodes],
        free=free,
        placed=placed,
        states_known=True,
    )
    run = SimpleNamespace(look=look, need={"CPU": 1.0, "GPU": 1.0})
    starting = [SimpleNamespace(actor="a"), SimpleNamespace(actor="b")]
    assert RayEngine._why_no_worker(run, starting) == says
