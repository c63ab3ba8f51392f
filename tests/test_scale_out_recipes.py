"""The recipes of docs/scale-out.md stay commands that work: every ``genbatch run`` line of the
page (its console examples, the Slurm script's and the KubeRay ``RayJob``'s entrypoint) plans as a
dry run against a small manifest, with its paths moved under a temporary folder; the Slurm script
is valid bash; every option the recipes give ``ray start`` (on its command line, or as a RayJob's
``rayStartParams``) is one the installed Ray takes; every pod of the RayJob mounts the shared
volume at the same path with the same genbatch settings. What needs a real Slurm or Kubernetes
(``srun``, ``scontrol``, the KubeRay operator) is not run."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import genbatch

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "scale-out.md"

# What the Slurm script's variables hold on a made-up allocation of 4 nodes.
SLURM = {
    "SHARED": "/shared/genbatch",
    "BUCKET": "my-bucket",
    "head": "node1",
    "head_ip": "10.0.0.1",
    "RAY_ADDRESS": "10.0.0.1:6379",
    "SLURM_CPUS_PER_TASK": "64",
    "SLURM_GPUS_PER_TASK": "8",
    "SLURM_JOB_NUM_NODES": "4",
}


def blocks(language: str) -> list[str]:
    text = PAGE.read_text(encoding="utf-8")
    return [body for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M) if lang == language]


def logical_lines(script: str) -> list[str]:
    """Lines with their backslash continuations joined, and the variables of ``SLURM`` filled in."""
    joined = re.sub(r"\\\n\s*", " ", script)
    expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: SLURM.get(m[1], m[0]), joined)
    return [line.strip() for line in expanded.splitlines()]


def command(line: str) -> list[str]:
    """The words of the command a line starts with (up to a comment, ``&``, ``;`` or a pipe)."""
    words = shlex.split(line, comments=True)
    ends = [i for i, word in enumerate(words) if word in ("&", "&&", ";", "|", "||")]
    return words[: ends[0]] if ends else words


def slurm_script() -> str:
    (script,) = [body for body in blocks("bash") if "#SBATCH" in body]
    return script


def ray_job() -> dict:
    (job,) = [doc for doc in map(yaml.safe_load, blocks("yaml")) if doc.get("kind") == "RayJob"]
    return job


def genbatch_commands() -> list[list[str]]:
    """Every ``genbatch run`` command of the page, as words."""
    lines = [line for body in blocks("console") for line in logical_lines(body)]
    lines += logical_lines(slurm_script())
    lines.append(ray_job()["spec"]["entrypoint"])
    found = [command(line[line.index("genbatch run") :]) for line in lines if "genbatch run" in line]
    return [words for words in found if words[:2] == ["genbatch", "run"]]


def test_the_page_has_both_recipes():
    commands = genbatch_commands()
    recipes = [c for c in commands if "--ray-address" in c and c[c.index("--ray-address") + 1] == "auto"]
    assert len(recipes) >= 3  # the page's console line, the Slurm script's, the RayJob's
    assert all(c[c.index("--engine") + 1] == "ray" for c in recipes)
    assert all(c[c.index("--out") + 1].startswith("s3://my-bucket/") for c in recipes[-2:]), "--out in a bucket"


@pytest.mark.parametrize("words", genbatch_commands(), ids=" ".join)
def test_each_genbatch_command_plans(words, tmp_path, monkeypatch, request):
    """The command as written, its absolute paths moved under tmp_path and its bucket made on the
    tests' S3 server, plans with --dry-run (which starts no Ray and loads no model) and writes nothing."""
    monkeypatch.chdir(tmp_path)
    args = [str(tmp_path / w.lstrip("/")) if w.startswith("/") else w for w in words[2:]]
    manifest = Path(args[0])
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("prompt\na red circle\na blue square\n")
    out = args[args.index("--out") + 1]
    if out.startswith("s3://"):
        s3 = request.getfixturevalue("s3")
        bucket = out[len("s3://") :].split("/")[0]
        if bucket not in s3.buckets():
            s3.client().create_bucket(Bucket=bucket)
    result = genbatch("run", *args, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "plan: 2 images" in result.output
    if out.startswith("s3://"):
        assert not s3.keys(bucket, out.split("/", 3)[3])
    else:
        assert not Path(out).exists()


def test_the_slurm_script_is_valid_bash():
    result = subprocess.run(["bash", "-n"], input=slurm_script(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def ray_start_options() -> list[list[str]]:
    """The options of every ``ray start`` of the page's console examples and of the Slurm script,
    and of each RayJob group's ``rayStartParams`` (KubeRay passes them to ``ray start`` as
    ``--key=value``)."""
    lines = [line for body in [*blocks("console"), slurm_script()] for line in logical_lines(body)]
    found = [command(line[line.index("ray start") :])[2:] for line in lines if "ray start" in line]
    spec = ray_job()["spec"]["rayClusterSpec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        found.append([f"--{key}={value}" for key, value in group.get("rayStartParams", {}).items()])
    return found


def test_every_ray_start_option_is_one_ray_takes():
    pytest.importorskip("ray")
    from ray.scripts.scripts import start

    options = ray_start_options()
    assert sum("--head" in o for o in options) == 2 and sum("--address" in o for o in options) == 2
    for words in options:
        start.make_context("ray start", list(words))  # click refuses an unknown option or a bad value


def test_every_pod_of_the_ray_job_mounts_the_shared_volume_alike():
    spec = ray_job()["spec"]
    assert ray_job()["apiVersion"] == "ray.io/v1"
    groups = [spec["rayClusterSpec"]["headGroupSpec"], *spec["rayClusterSpec"]["workerGroupSpecs"]]
    pods = [group["template"]["spec"] for group in groups]
    claims = [{v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]} for pod in pods]
    containers = [container for pod in pods for container in pod["containers"]]
    mounts = [{m["name"]: m["mountPath"] for m in c["volumeMounts"]} for c in containers]
    env = [{e["name"]: e["value"] for e in c["env"]} for c in containers]
    assert all(c == claims[0] for c in claims) and all(m == mounts[0] for m in mounts) and all(e == env[0] for e in env)
    shared = next(iter(mounts[0].values()))
    assert all(value.startswith(shared) for value in env[0].values())
    entrypoint = shlex.split(spec["entrypoint"])
    assert entrypoint[2].startswith(shared) and entrypoint[entrypoint.index("--out") + 1].startswith("s3://")
    assert all(c["resources"]["limits"].get("nvidia.com/gpu") for c in containers), (
        "the head too: the plan is made there"
    )
