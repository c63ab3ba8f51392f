"""--out into a bucket against a local folder, with --engine ray on a cluster of several nodes.

    python benchmarks/object_store.py [--images 2000] [--repeats 2] [--nodes 2] [--batch-size 8]
                                      [--local-engine 1] [--json benchmarks/results/object-store.json]

Everything runs on this machine and on 127.0.0.1 only, and nothing is downloaded:

- a Ray cluster (``tests/ray_nodes.py``): a head with no CPU for workers, and ``--nodes`` worker
  nodes of 1 CPU each, so the run's Ray workers (one per CPU) are on the worker nodes and the
  driver is a client of the cluster, as ``genbatch run --ray-address`` is on a real one;
- an S3 API: moto's server in this process (``tests/s3_server.py``), which counts the requests it
  serves by kind (PUT, GET, HEAD, LIST, DELETE, POST); a fresh bucket for each run;
- the model: ``tiny-random`` at 2 steps (64x64), built once into a temporary ``GENBATCH_HOME``.

The manifest has ``--images`` rows' worth of images (rows of ``num_images`` 10). Each repeat runs
``genbatch run MANIFEST --out TARGET --engine ray --ray-address CLUSTER`` into a fresh local
folder, then into a fresh bucket (``s3://BUCKET/run``), in that order, so the targets alternate.
The driver is a child process of this script; per run it measures

- images/s: ``run.json``'s done / wall_seconds (start-up, model load, the reports included);
- the driver's CPU seconds per image: its user + sys time from ``os.wait4``. With
  ``--ray-address`` the Ray workers are children of their node's raylet, not of the driver, so
  this is the driver alone; the script records every descendant of the driver it sees while the
  run goes (``driver_descendants``, sampled every 0.5 s), which should stay empty;
- the cluster's CPU seconds per image (approximate): the CPU time the processes of the cluster's
  nodes (raylets, GCS, the Ray workers that generate and write the images) gained during the run,
  read from /proc every 0.5 s (a process that ends loses its last half second);
- for a bucket, the requests per image by kind: the server's counter just before the driver
  starts and just after it ends (what the run itself asked; what a bucket bills).

``--local-engine 1`` adds, after the Ray repeats (the cluster stopped), one run of ``--engine local``
into a folder and one into a bucket: the same counts without Ray, where the driver's writer threads
PUT the images. Ratios are bucket / local of the same repeat; medians over the repeats.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from ray_nodes import _table, processes_naming, remove, start_cluster, with_descendants  # noqa: E402
from s3_server import running_s3_server  # noqa: E402

KINDS = ("PUT", "GET", "HEAD", "LIST", "DELETE", "POST")
TICK = os.sysconf("SC_CLK_TCK")
PER_ROW = 10  # num_images of each manifest row
PHASES = ("start", "run", "end")  # before run.json's started_at, until its finished_at, after it


class Timeline:
    """The time of every request the S3 server serves, by kind (wraps its counter)."""

    def __init__(self, s3):
        self.seen: list[tuple[float, str]] = []
        count = s3.count

        def counting(method: str, query: str) -> None:
            count(method, query)
            kind = "LIST" if method == "GET" and ("list-type" in query or query.startswith("prefix")) else method
            self.seen.append((time.time(), kind))

        s3.count = counting

    def phases(self, since: int, until: int, started: float, finished: float) -> dict[str, dict[str, int]]:
        """Requests from ``seen[since:until]`` by phase and kind."""
        found: dict[str, Counter] = {phase: Counter() for phase in PHASES}
        for when, kind in self.seen[since:until]:
            found["start" if when < started else "run" if when <= finished else "end"][kind] += 1
        return {phase: dict(counts) for phase, counts in found.items()}


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def manifest(folder: Path, images: int) -> Path:
    """``images`` images: rows of ``num_images`` 10 (the last row takes the rest)."""
    with open(ROOT / "manifests" / "example.csv", newline="") as handle:
        prompts = [row["prompt"] for row in csv.DictReader(handle)]
    path = folder / "prompts.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prompt", "num_images"])
        row = 0
        while row * PER_ROW < images:
            writer.writerow([f"p{row}", prompts[row % len(prompts)], min(PER_ROW, images - row * PER_ROW)])
            row += 1
    return path


def cpu_seconds(pids) -> dict[int, float]:
    """pid -> user + sys seconds so far, of those still running."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return found


class Watcher(threading.Thread):
    """Every 0.5 s while a driver runs: the driver's descendants and CPU seconds, and the CPU
    seconds of the cluster's processes (``folder``: the cluster's temp dir; None without a cluster)."""

    def __init__(self, driver: int, folder: Path | None):
        super().__init__(daemon=True)
        self.driver, self.folder = driver, folder
        self.stop = threading.Event()
        self.descendants: dict[int, str] = {}
        self.base = self._cluster() if folder else {}
        self.last = dict(self.base)
        self.driver_cpu: list[tuple[float, float]] = []  # (time.time(), the driver's CPU seconds)

    def _cluster(self) -> dict[int, float]:
        return cpu_seconds(with_descendants(processes_naming(self.folder)))

    def run(self) -> None:
        while not self.stop.wait(0.5):
            now, cpu = time.time(), cpu_seconds([self.driver]).get(self.driver)
            if cpu is not None:
                self.driver_cpu.append((now, cpu))
            for pid, argv in with_descendants({self.driver}).items():
                if pid != self.driver:
                    self.descendants.setdefault(pid, " ".join(argv)[:160])
            if self.folder:
                self.last.update(self._cluster())

    def driver_cpu_at(self, moment: float) -> float:
        """The driver's CPU seconds at the last sample before ``moment``."""
        return max((cpu for when, cpu in self.driver_cpu if when <= moment), default=0.0)

    def cluster_cpu(self) -> float:
        return sum(cpu - self.base.get(pid, 0.0) for pid, cpu in self.last.items())


def run_one(
    engine: str,
    target: str,
    prompts: Path,
    args: argparse.Namespace,
    env: dict[str, str],
    logs: Path,
    s3,
    timeline: Timeline,
    cluster,
) -> dict:
    extra = ["--engine", "ray", "--ray-address", cluster.address] if engine == "ray" else ["--engine", "local"]
    command = [
        sys.executable, "-m", "genbatch", "run", str(prompts), "--out", target,
        "--model", "tiny-random", "--steps", "2", "--batch-size", str(args.batch_size), "--quiet", *extra,
    ]  # fmt: skip
    name = f"{len(list(logs.glob('*.out'))):02d}-{engine}-{'bucket' if target.startswith('s3://') else 'folder'}"
    before, since = Counter(s3.requests), len(timeline.seen)
    mine = resource.getrusage(resource.RUSAGE_SELF)
    began, began_at = time.monotonic(), time.time()
    with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        watcher = Watcher(process.pid, cluster.folder if engine == "ray" else None)
        watcher.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed, ended_at = time.monotonic() - began, time.time()
        mine_after = resource.getrusage(resource.RUSAGE_SELF)
        watcher.stop.set()
        watcher.join()
    requests, until = Counter(s3.requests) - before, len(timeline.seen)  # the driver's requests only
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)}: exit {process.returncode}\n{(logs / f'{name}.err').read_text()[-4000:]}"
        )
    if target.startswith("s3://"):
        bucket = target[len("s3://") :].split("/", 1)[0]
        summary = json.loads(s3.read(bucket, "run/run.json"))
        objects = s3.keys(bucket, "run/")
    else:
        summary = json.loads((Path(target) / "run.json").read_text())
        objects = {str(p.relative_to(target)): p.stat().st_size for p in Path(target).rglob("*") if p.is_file()}
    done = summary["counts"]["done"]
    started, finished = stamp(summary["started_at"]), stamp(summary["finished_at"])
    driver_cpu = usage.ru_utime + usage.ru_stime
    figures = {
        "engine": engine,
        "target": "bucket" if target.startswith("s3://") else "folder",
        "done": done,
        "failed": summary["counts"]["failed"],
        "wall_seconds": summary["wall_seconds"],
        "process_seconds": round(elapsed, 2),
        "images_per_second": round(done / summary["wall_seconds"], 3),
        "images_per_process_second": round(done / elapsed, 3),
        "driver_cpu_seconds": round(driver_cpu, 2),
        "driver_user_seconds": round(usage.ru_utime, 2),
        "driver_sys_seconds": round(usage.ru_stime, 2),
        "driver_cpu_ms_per_image": round(1000 * driver_cpu / done, 3),
        "driver_peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "driver_descendants": watcher.descendants,
        # the driver's start (imports, the lock, the listing, planning) and end (reports), outside wall_seconds
        "start_seconds": round(started - began_at, 2),
        "end_seconds": round(ended_at - finished, 2),
        # the driver's CPU seconds after finished_at (the reports; sampled every 0.5 s, so approximate)
        "driver_end_cpu_seconds": round(driver_cpu - watcher.driver_cpu_at(finished), 2),
        # this script's process: the S3 server's threads (and the 0.5 s sampling)
        "script_cpu_seconds": round(mine_after.ru_utime + mine_after.ru_stime - mine.ru_utime - mine.ru_stime, 2),
        "objects": len(objects),
        "images": sum(1 for n in objects if n.endswith(".png") and "/" not in n),
        "thumbnails": sum(1 for n in objects if n.startswith(".genbatch-thumbs/")),
        "thumbnail_bytes": sum(v for n, v in objects.items() if n.startswith(".genbatch-thumbs/")),
        "ray_workers": len(summary.get("workers") or []),
    }
    if engine == "ray":
        figures["cluster_cpu_seconds"] = round(watcher.cluster_cpu(), 1)
        figures["cluster_cpu_ms_per_image"] = round(1000 * watcher.cluster_cpu() / done, 2)
    if target.startswith("s3://"):
        figures["requests"] = {k: requests.get(k, 0) for k in KINDS} | {
            k: v for k, v in requests.items() if k not in KINDS
        }
        figures["requests_per_image"] = {k: round(v / done, 4) for k, v in figures["requests"].items()}
        figures["requests_by_phase"] = timeline.phases(since, until, started, finished)
    print(json.dumps({k: v for k, v in figures.items() if k != "driver_descendants"}), flush=True)
    return figures


def median(values) -> float:
    return round(statistics.median(values), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=4, help="pairs of runs (folder, bucket), alternating")
    parser.add_argument("--nodes", type=int, default=2, help="worker nodes of 1 CPU each (the head has none)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--local-engine", type=int, default=1, help="pairs of --engine local runs afterwards (0: none)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    # SIGTERM as Ctrl-C: the finally blocks stop the cluster and remove the temp folders
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    began = time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="genbatch-objstore-") as tmp, running_s3_server() as s3:
        work = Path(tmp)
        timeline = Timeline(s3)
        logs = work / "logs"
        logs.mkdir()
        os.environ["GENBATCH_HOME"] = str(work / "home")  # the nodes' workers see it too
        os.environ.update(s3.environment())  # and the endpoint and credentials
        subprocess.run(
            [sys.executable, "-c", "from genbatch.pipelines.builtin import ensure_tiny_random; ensure_tiny_random()"],
            cwd=ROOT, check=True,
        )  # fmt: skip
        prompts = manifest(work, args.images)
        runs: list[dict] = []
        cluster = start_cluster("gbo")
        env = cluster.env
        try:
            cluster.start_head()
            cluster.add_nodes(*([1] * args.nodes))
            for repeat in range(args.repeats):
                for target in ("folder", "bucket"):
                    out = f"s3://{s3.new_bucket()}/run" if target == "bucket" else str(work / f"out-{len(runs)}")
                    runs.append(
                        run_one("ray", out, prompts, args, env, logs, s3, timeline, cluster) | {"repeat": repeat}
                    )
        finally:
            remove(cluster)
        for repeat in range(args.local_engine):
            for target in ("folder", "bucket"):
                out = f"s3://{s3.new_bucket()}/run" if target == "bucket" else str(work / f"out-{len(runs)}")
                runs.append(run_one("local", out, prompts, args, env, logs, s3, timeline, cluster) | {"repeat": repeat})
    # nothing of the cluster, the drivers or the temp folders is left
    places = (str(cluster.folder), tmp)
    leftover = [pid for pid, (_, argv) in _table().items() if any(p in a for a in argv for p in places)]
    leftover_folders = [p for p in places if os.path.exists(p)]

    summary = {}
    for engine in ("ray", "local"):
        pairs = {}
        for r in runs:
            if r["engine"] == engine:
                pairs.setdefault(r["repeat"], {})[r["target"]] = r
        pairs = {k: v for k, v in pairs.items() if len(v) == 2}
        if not pairs:
            continue
        rows = {}
        for target in ("folder", "bucket"):
            mine = [p[target] for p in pairs.values()]
            rows[target] = {
                "images_per_second": median(r["images_per_second"] for r in mine),
                "images_per_process_second": median(r["images_per_process_second"] for r in mine),
                "end_seconds": median(r["end_seconds"] for r in mine),
                "driver_end_cpu_seconds": median(r["driver_end_cpu_seconds"] for r in mine),
                "script_cpu_ms_per_image": median(1000 * r["script_cpu_seconds"] / r["done"] for r in mine),
                "driver_cpu_ms_per_image": median(r["driver_cpu_ms_per_image"] for r in mine),
                "runs_images_per_second": [r["images_per_second"] for r in mine],
                "runs_driver_cpu_ms_per_image": [r["driver_cpu_ms_per_image"] for r in mine],
            }
            if engine == "ray":
                rows[target]["cluster_cpu_ms_per_image"] = median(r["cluster_cpu_ms_per_image"] for r in mine)
        per_image = [p["bucket"]["requests_per_image"] for p in pairs.values()]
        rows["bucket"]["requests_per_image"] = {k: median(x.get(k, 0) for x in per_image) for k in per_image[0]}
        rows["bucket"]["runs_requests"] = [p["bucket"]["requests"] for p in pairs.values()]
        rows["bucket"]["runs_requests_by_phase"] = [p["bucket"]["requests_by_phase"] for p in pairs.values()]
        rows["ratios_bucket_over_folder"] = {
            "images_per_second": [
                round(p["bucket"]["images_per_second"] / p["folder"]["images_per_second"], 3) for p in pairs.values()
            ],
            "images_per_process_second": [
                round(p["bucket"]["images_per_process_second"] / p["folder"]["images_per_process_second"], 3)
                for p in pairs.values()
            ],
            "driver_cpu_per_image": [
                round(p["bucket"]["driver_cpu_ms_per_image"] / p["folder"]["driver_cpu_ms_per_image"], 3)
                for p in pairs.values()
            ],
        }
        if engine == "ray":
            rows["ratios_bucket_over_folder"]["cluster_cpu_per_image"] = [
                round(p["bucket"]["cluster_cpu_ms_per_image"] / p["folder"]["cluster_cpu_ms_per_image"], 3)
                for p in pairs.values()
            ]
        for key, values in list(rows["ratios_bucket_over_folder"].items()):
            rows["ratios_bucket_over_folder"][f"{key}_median"] = median(values)
        summary[engine] = rows

    result = {
        "command": " ".join(["python", "benchmarks/object_store.py", *sys.argv[1:]]),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": "tiny-random, 2 steps, 64x64",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "versions": versions(),
            "commit": git("rev-parse", "HEAD"),
            "tree_changed": bool(git("status", "--porcelain", "--untracked-files=no")),
        },
        "total_seconds": round(time.monotonic() - began, 1),
        "leftover_processes": leftover,
        "leftover_folders": leftover_folders,
        "summary": summary,
        "runs": runs,
    }
    print(json.dumps(summary, indent=2))
    print(f"total {result['total_seconds']:.0f} s; left over: {leftover + leftover_folders or 'nothing'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("genbatch", "ray", "moto", "s3fs", "fsspec", "aiobotocore", "torch")}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
