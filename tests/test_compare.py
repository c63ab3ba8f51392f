"""`genbatch compare REF FAST`: two runs of the same jobs, paired image by image and measured.

The runs are of the tiny noise model. Until a speed option exists, "the fast run" is a second
run of the same jobs, one of whose images is then given other pixels (noise, as a lossy fast
path would add): its ledger line is rewritten as the run would have written it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import FAST, genbatch, ledger, pixels
from PIL import Image

from genbatch.errors import GenbatchError
from genbatch.evaluate.compare import CompareOptions, compare_runs, psnr, ssim
from genbatch.jobs import job_key
from genbatch.manifest.fields import SPEED_FIELDS, key_values, pairing_values

PROMPTS = "a red cube\na blue sphere\n"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, genbatch_home: Path) -> Path:
    """``exact/`` and ``again/``: the same manifest (2 prompts x 2 images) run twice, once per module."""
    folder = tmp_path_factory.mktemp("compare")
    (folder / "p.txt").write_text(PROMPTS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENBATCH_HOME", str(genbatch_home))
        for name in ("exact", "again"):
            run = genbatch("run", folder / "p.txt", "--out", folder / name, *FAST, "--num-images", "2")
            assert run.exit_code == 0, run.output
    return folder


@pytest.fixture
def runs(tmp_path: Path, two_runs: Path) -> tuple[Path, Path]:
    """Copies of the two runs, for a test to change."""
    for name in ("exact", "again"):
        shutil.copytree(two_runs / name, tmp_path / name)
    shutil.copy(two_runs / "p.txt", tmp_path / "p.txt")
    return tmp_path / "exact", tmp_path / "again"


def remake(out: Path, file: str, change) -> None:
    """Give one image of OUT other pixels, as if the run had made them: the file is rewritten and
    its ledger line records the new size and sha256."""
    path = out / file
    Image.fromarray(np.clip(change(pixels(path)), 0, 255).astype(np.uint8)).save(path)
    data = path.read_bytes()
    records = ledger(out)
    for record in records:
        if record.get("file") == file:
            record.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (out / "genbatch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def compare_json(out: Path) -> dict:
    return json.loads((out / "compare.json").read_text(encoding="utf-8"))


def test_two_runs_of_the_same_jobs_pair_every_image_and_are_identical(runs):
    exact, again = runs
    result = genbatch("compare", exact, again, "--min-psnr", "60", "--min-ssim", "1")
    assert result.exit_code == 0, result.output
    assert "paired: 4 (4 identical)" in result.stdout
    assert "PSNR: inf dB over all pairs, worst pair inf dB" in result.stdout
    assert "unpaired in REF: 0" in result.stdout and "unpaired in FAST: 0" in result.stdout
    assert "bounds: met" in result.stdout

    report = compare_json(again)
    summary = report["summary"]
    assert summary["paired"] == summary["identical"] == 4
    assert summary["psnr"] == summary["psnr_min"] == "inf"  # identical images: infinite PSNR, written as "inf"
    assert summary["ssim_min"] == 1.0 and summary["max_abs"] == 0 and summary["mean_abs"] == 0
    assert {p["file"] for p in report["pairs"]} == {r["file"] for r in ledger(again)}
    assert all(p["key"] == p["ref_key"] and p["file"] == p["ref_file"] for p in report["pairs"])
    assert report["differs"] == [] and report["unpaired"] == {"ref": [], "fast": []}


def test_an_image_made_otherwise_lowers_psnr_and_ssim_and_fails_the_bounds(runs):
    exact, again = runs
    changed = ledger(again)[1]["file"]
    noise = np.random.default_rng(0).integers(-12, 13, size=(64, 64, 3))
    remake(again, changed, lambda p: p + noise)

    result = genbatch("compare", exact, again, "--json")
    assert result.exit_code == 0  # no bounds asked
    report = json.loads(result.stdout)
    worst = report["pairs"][0]  # worst first
    assert worst["file"] == changed
    a, b = pixels(exact / changed), pixels(again / changed)
    mse = np.mean((a - b).astype(float) ** 2)
    assert worst["psnr"] == pytest.approx(10 * math.log10(255**2 / mse))
    assert 25 < worst["psnr"] < 60 and 0 < worst["ssim"] < 0.999
    assert worst["max_abs"] == np.abs(a - b).max() <= 12 and worst["mean_abs"] == pytest.approx(np.abs(a - b).mean())
    assert [p["psnr"] for p in report["pairs"][1:]] == ["inf"] * 3
    summary = report["summary"]
    assert summary["paired"] == 4 and summary["identical"] == 3
    assert summary["psnr_min"] == worst["psnr"] and summary["psnr"] == pytest.approx(worst["psnr"] + 10 * math.log10(4))
    assert summary["ssim_min"] == worst["ssim"] and summary["ssim_mean"] == pytest.approx((3 + worst["ssim"]) / 4)

    below = genbatch("compare", exact, again, "--min-psnr", f"{worst['psnr'] + 1:.2f}")
    assert below.exit_code == 1
    assert "bounds: NOT met: --min-psnr" in below.stdout and "the worst pair has" in below.stdout
    assert genbatch("compare", exact, again, "--min-ssim", "0.9999").exit_code == 1
    assert genbatch("compare", exact, again, "--min-psnr", "20", "--min-ssim", "0.5").exit_code == 0


def test_a_run_in_bf16_pairs_with_the_fp32_run_and_differs_by_a_little(runs, tmp_path):
    exact, _ = runs
    bf16 = tmp_path / "bf16"
    assert (
        genbatch("run", tmp_path / "p.txt", "--out", bf16, *FAST, "--num-images", "2", "--dtype", "bf16").exit_code == 0
    )

    result = genbatch("compare", exact, bf16)
    assert result.exit_code == 0
    assert "  dtype: fp32 (REF) vs bf16 (FAST)" in result.stdout  # how the runs differ
    report = compare_json(bf16)
    summary = report["summary"]
    assert summary["paired"] == 4 and summary["unpaired_ref"] == summary["unpaired_fast"] == 0
    assert all(p["key"] != p["ref_key"] for p in report["pairs"])  # other jobs (dtype is in the key), paired
    assert 30 < summary["psnr_min"] < math.inf and 0.9 < summary["ssim_min"] < 1 and 0 < summary["max_abs"] < 64
    assert genbatch("compare", exact, bf16, "--min-psnr", "70").exit_code == 1


def test_a_folder_that_holds_a_job_made_two_ways_is_ambiguous(runs, tmp_path):
    exact, again = runs
    bf16 = ("--dtype", "bf16")
    assert genbatch("run", tmp_path / "p.txt", "--out", again, *FAST, "--num-images", "2", *bf16).exit_code == 0

    report = compare_runs(exact, again).report
    assert report["summary"]["paired"] == 0
    assert report["summary"]["unpaired_reasons"] == {"ref": {"ambiguous": 4}, "fast": {"ambiguous": 8}}
    reason = report["unpaired"]["ref"][0]["reason"]
    assert reason == "FAST holds 2 images of this job (made with other dtype): compare folders that hold each job once"


def test_runs_with_another_scheduler_do_not_pair_and_each_image_says_why(runs, tmp_path):
    exact, _ = runs
    other = tmp_path / "euler"
    (tmp_path / "three.txt").write_text(PROMPTS.splitlines()[0] + "\na green cone\n")
    run = genbatch(
        "run",
        tmp_path / "three.txt",
        "--out",
        other,
        *FAST,
        "--num-images",
        "2",
        "--scheduler",
        "EulerDiscreteScheduler",
    )
    assert run.exit_code == 0, run.output

    result = genbatch("compare", exact, other)
    assert result.exit_code == 0
    report = compare_json(other)
    assert report["summary"]["paired"] == 0 and report["pairs"] == []
    # the scheduler is not a speed option: a run with another one makes other jobs
    assert report["summary"]["unpaired_reasons"] == {
        "ref": {"scheduler differs": 2, "not in FAST": 2},
        "fast": {"scheduler differs": 2, "not in REF": 2},
    }
    cube = [u for u in report["unpaired"]["ref"] if u["prompt"] == "a red cube"]
    assert cube[0]["reason"].endswith("scheduler DDIMScheduler vs EulerDiscreteScheduler")
    assert "unpaired in REF: 4 (scheduler differs: 2; not in FAST: 2)" in result.stdout
    assert "no image of REF is the same job as one of FAST" in result.stdout
    # bounds cannot be met by nothing
    assert genbatch("compare", exact, other, "--min-psnr", "10").exit_code == 1


def test_a_failed_job_is_unpaired_with_its_error(runs):
    exact, again = runs
    records = ledger(again)
    failed = dict(records[0], status="failed", error="CUDA out of memory", file=None)
    (again / "genbatch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*records, failed]), encoding="utf-8")
    report = compare_runs(exact, again).report
    assert report["summary"]["paired"] == 3
    assert report["unpaired"]["ref"] == [
        {
            "key": records[0]["key"],
            "file": records[0]["file"],
            "prompt": records[0]["prompt"],
            "seed": records[0]["seed"],
            "kind": "failed in FAST",
            "reason": "failed in FAST: CUDA out of memory",
        }
    ]


def test_a_folder_that_is_not_an_output_is_exit_2_naming_it(runs, tmp_path):
    exact, _ = runs
    empty = tmp_path / "not-an-output"
    empty.mkdir()
    for args in ((exact, empty), (empty, exact), (exact, tmp_path / "nowhere")):
        result = genbatch("compare", *args)
        assert result.exit_code == 2
        assert result.stderr.startswith("error: ") and "Traceback" not in result.output
        assert str(args[1] if args[0] == exact else args[0]) in result.stderr
        assert "no genbatch.jsonl here" in result.stderr
    assert genbatch("compare", exact, exact, "--min-ssim", "2").exit_code == 2  # out of -1..1


def test_the_comparison_is_a_section_of_the_fast_runs_report(runs):
    exact, again = runs
    remake(again, ledger(again)[0]["file"], lambda p: p + 3)
    assert genbatch("compare", exact, again, "--min-psnr", "30", "--quiet").exit_code == 0
    page = (again / "report.html").read_text(encoding="utf-8")
    assert '<section id="comparison">' in page and f"Compared with {exact}" in page
    assert f'src="../exact/{ledger(exact)[0]["file"]}"' in page  # the REF image beside this run's
    assert "PSNR ≥ 30.0 dB: met by every pair" in page
    assert "Pairs, worst first (4)" in page


def test_the_deltas_of_genbatch_eval_when_both_folders_have_one(runs):
    exact, again = runs
    remake(again, ledger(again)[0]["file"], lambda p: 255 - p)
    before = genbatch("compare", exact, again)
    assert "note: REF and FAST have no eval.json. CLIP score and FID: run `genbatch eval`" in before.stdout
    for out in (exact, again):
        assert genbatch("eval", out, "--metrics", "diversity", "--quiet").exit_code == 0

    result = genbatch("compare", exact, again)
    deltas = compare_json(again)["eval"]["deltas"]
    assert [(d["group"], d["metric"]) for d in deltas] == [("model=tiny-random", "diversity (pixel)")]
    ref, fast = (json.loads((out / "eval.json").read_text())["groups"][0]["diversity"]["pixel"] for out in runs)
    assert deltas[0]["delta"] == pytest.approx(fast["value"] - ref["value"]) != 0
    assert "eval model=tiny-random: diversity (pixel)" in result.stdout
    assert 'class="compare-eval"' in (again / "report.html").read_text(encoding="utf-8")


def test_images_pair_by_the_job_key_less_the_speed_options(runs):
    exact, _ = runs
    for record in ledger(exact):
        # the key's fields can be read back from the ledger: they give the job's own key
        target = {"model": record["model_fingerprint"], "dtype": record["dtype"], "backend": record["backend"]}
        assert job_key({**target, **key_values(record)}) == record["key"]
        fast = dict(record, cache="first-block", cache_threshold=0.1, quantize="int8")
        assert (
            pairing_values(fast)
            == pairing_values(record)
            == {k: v for k, v in key_values(record).items() if k not in SPEED_FIELDS}
        )
        assert pairing_values(dict(record, steps=3)) != pairing_values(record)
    assert {"cache", "cache_threshold", "quantize"} <= set(SPEED_FIELDS)


def test_the_library_call(runs):
    import genbatch as api

    exact, again = runs
    result = api.compare(exact, again, api.CompareOptions(min_psnr=50))
    assert result.passed and result.path == (again / "compare.json").resolve()
    assert result.report["summary"]["psnr_min"] == math.inf  # in Python, inf is a float
    with pytest.raises(api.GenbatchError, match="--min-psnr"):
        api.CompareOptions(min_psnr=float("nan"))


# --- The metrics against known values ---------------------------------------------------------


def pattern() -> tuple[np.ndarray, np.ndarray]:
    """A 48x40 RGB pattern and the same with a small structured change (no randomness)."""
    i, j = np.mgrid[0:48, 0:40]
    a = np.stack([(i * i + 3 * j) % 256, (5 * i + j * j) % 256, (i * j) % 256], axis=-1).astype(np.uint8)
    b = np.clip(a.astype(int) + ((i * j) % 17 - 8)[..., None], 0, 255).astype(np.uint8)
    return a, b


def test_an_image_against_itself_has_infinite_psnr_and_ssim_1():
    a, _ = pattern()
    assert psnr(a, a) == math.inf and ssim(a, a) == pytest.approx(1.0)


def test_a_constant_shift_has_the_psnr_and_ssim_of_its_formula():
    c1 = (0.01 * 255) ** 2
    for level, shift in ((100, 10), (30, 1), (200, 40)):
        a = np.full((32, 32, 3), level, dtype=np.uint8)
        b = a + np.uint8(shift)
        assert psnr(a, b) == pytest.approx(20 * math.log10(255 / shift))
        # no variance: the contrast-structure term is (0 + C2) / (0 + C2) = 1, and the luminance
        # term (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) is left
        x, y = level, level + shift
        assert ssim(a, b) == pytest.approx((2 * x * y + c1) / (x * x + y * y + c1))
    texture, _ = pattern()
    shifted = np.clip(texture.astype(int) + 5, 0, 255).astype(np.uint8)
    unclipped = texture <= 250
    assert psnr(texture[unclipped], shifted[unclipped]) == pytest.approx(20 * math.log10(255 / 5))


def test_ssim_is_scikit_images_gaussian_ssim():
    a, b = pattern()
    # skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    #   use_sample_covariance=False, data_range=255[, channel_axis=-1]), scikit-image 0.26.0
    assert ssim(a, b) == pytest.approx(0.9942435139468655, abs=1e-12)
    assert ssim(a[..., 0], b[..., 0]) == pytest.approx(0.99413766243693, abs=1e-12)
    assert ssim(a[:8, :8], b[:8, :8]) <= 1  # smaller than the 11-pixel window: a window of its size


def test_psnr_is_torchmetrics_psnr():
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("torchmetrics.functional.image")
    a, b = pattern()
    theirs = functional.peak_signal_noise_ratio(
        torch.from_numpy(a).double(), torch.from_numpy(b).double(), data_range=255.0
    )
    assert psnr(a, b) == pytest.approx(theirs.item())


def test_compare_options_check_their_bounds():
    with pytest.raises(GenbatchError, match="--min-ssim 1.5: expected a number from -1 to 1"):
        CompareOptions(min_ssim=1.5)
