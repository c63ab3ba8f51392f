"""``genbatch compare REF FAST``: the same jobs made two ways, compared image by image.

Two output folders of ``genbatch run`` (REF made the exact way, FAST with a speed option)
are paired image by image: two images pair when they are the same job but for how it was
computed, that is when their model and their job key's fields less the speed options
(:func:`genbatch.manifest.fields.pairing_values`) are equal. The backend, device, dtype, the
speed options and run options such as ``--compile`` and ``--attention`` may differ: that is
what is measured. Each pair gets PSNR, SSIM and the largest and mean absolute difference in
0-255 levels, computed here with numpy (no download, no weights); the summary and every pair
go to ``FAST/compare.json``, which ``FAST/report.html`` shows. CLIP score and FID are
``genbatch eval``'s: where both folders have an ``eval.json``, the deltas of their metrics are
shown beside the pixel figures.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from genbatch.errors import GenbatchError
from genbatch.evaluate.images import EvalImage, run_images
from genbatch.jobs import job_key
from genbatch.manifest.fields import SPEED_FIELDS, pairing_values, text_value
from genbatch.report.compare_section import COMPARE_NAME
from genbatch.report.eval_section import report_section as eval_section
from genbatch.report.folder import read_run
from genbatch.safe_write import write_atomic
from genbatch.store.ledger import read_ledger

__all__ = ["COMPARE_NAME", "CompareOptions", "CompareResult", "compare_runs", "format_table", "psnr", "ssim"]

PROGRESS_EVERY = 64  # pairs measured between two progress calls
SHOWN_ROWS = 20  # pairs in the text table, worst first (all of them are in compare.json)
# Facts of each image's ledger record that say how it was computed; with the speed fields and
# run.json's backend options, what a comparison lists as differing between the two runs.
HOW = ("backend", "device", "dtype")
EVAL_NOTE = (
    "CLIP score and FID: run `genbatch eval` on both folders (the same --metrics; FID needs --reference), "
    "then compare again to see the deltas of their metrics"
)


# --- The metrics ----------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images of one shape (peak 255);
    ``inf`` for identical images."""
    return _psnr_of(_mse(a, b))


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def _psnr_of(mse: float) -> float:
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


SSIM_WINDOW = 11  # a Gaussian window of 11 taps with sigma 1.5, K1 = 0.01, K2 = 0.03 (Wang et al. 2004)
SSIM_SIGMA = 1.5


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two uint8 images of one shape, (H, W) or (H, W, C), over
    the positions where the window fits whole, averaged over channels: what scikit-image's
    ``structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=255, channel_axis=-1)`` gives (torchmetrics' differs slightly: it
    treats the borders otherwise). An image smaller than the window gets a window of its own size (odd)."""
    if a.shape != b.shape:
        raise ValueError(f"images of different shapes: {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    size = min(SSIM_WINDOW, *a.shape[:2])
    size -= 1 - size % 2  # odd
    window = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / SSIM_SIGMA) ** 2)
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for channel in range(a.shape[2]):
        x = a[..., channel].astype(np.float64)
        y = b[..., channel].astype(np.float64)
        mx, my = _filter(x, window), _filter(y, window)
        sxx = _filter(x * x, window) - mx * mx
        syy = _filter(y * y, window) - my * my
        sxy = _filter(x * y, window) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        scores.append(float(s.mean()))
    return float(np.mean(scores))


def _filter(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """``image`` filtered by ``window`` down and across, where the window fits whole ("valid")."""
    n = len(window)
    h, w = image.shape[0] - n + 1, image.shape[1] - n + 1
    rows = sum(window[i] * image[i : i + h] for i in range(n))
    return sum(window[i] * rows[:, i : i + w] for i in range(n))


def _measure(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    mse = _mse(a, b)
    return {
        "psnr": _psnr_of(mse),
        "ssim": ssim(a, b),
        "max_abs": int(d.max()),
        "mean_abs": float(d.mean()),
        "mse": mse,
    }


# --- Pairing ----------------------------------------------------------------------------------


def pairing_key(record: dict[str, Any]) -> str:
    """What two images made the exact way and the fast way share when they are the same job:
    a hash of the model and :func:`genbatch.manifest.fields.pairing_values`."""
    return job_key({"model": record.get("model_fingerprint"), **pairing_values(record)})


def _by_pairing_key(images: list[EvalImage]) -> dict[str, list[EvalImage]]:
    found: dict[str, list[EvalImage]] = {}
    for image in images:
        found.setdefault(pairing_key(image.record), []).append(image)
    return found


def _compared(record: dict[str, Any]) -> dict[str, Any]:
    """The values that decide a pairing, by name, for saying which ones differ."""
    return {
        "model": record.get("model"),
        "model_fingerprint": record.get("model_fingerprint"),
        **pairing_values(record),
    }


class _Side:
    """One folder: its done images by pairing key, and (read when first needed) its ledger's
    current records by pairing key and its done images by prompt and seed, for the reasons."""

    def __init__(self, name: str, out: Path):
        self.name, self.out = name, out
        self.images = run_images(out)
        self.by_key = _by_pairing_key(self.images)
        self._records: dict[str, dict[str, Any]] | None = None
        self._by_prompt: dict[tuple[Any, Any], list[EvalImage]] | None = None

    def record_of(self, key: str) -> dict[str, Any] | None:
        """The current ledger record (of any status) of a job with this pairing key."""
        if self._records is None:
            self._records = {}
            for record in read_ledger(self.out):
                if record.get("key") is not None and record.get("prompt") is not None:
                    self._records[pairing_key(record)] = record
        return self._records.get(key)

    def same_prompt(self, record: dict[str, Any]) -> list[EvalImage]:
        if self._by_prompt is None:
            self._by_prompt = {}
            for image in self.images:
                self._by_prompt.setdefault((image.prompt, image.seed), []).append(image)
        return self._by_prompt.get((str(record.get("prompt", "")), record.get("seed")), [])


def _why_unpaired(image: EvalImage, key: str, other: _Side) -> tuple[str, str]:
    """(kind, reason) of an image that has no partner in ``other``: kind groups reasons in the summary."""
    record = other.record_of(key)
    if record is not None:
        status = record.get("status")
        if status == "done":
            return f"missing in {other.name}", f"its image is recorded done in {other.name} but is not on disk"
        if status == "failed":
            return f"failed in {other.name}", f"failed in {other.name}: {record.get('error') or 'no reason recorded'}"
        return f"{status} in {other.name}", f"{status} in {other.name}"
    near = other.same_prompt(image.record)
    if not near:
        return f"not in {other.name}", f"{other.name} has no image of its prompt and seed"
    mine = _compared(image.record)
    theirs = _compared(near[0].record)
    names = [n for n in dict.fromkeys([*mine, *theirs]) if mine.get(n) != theirs.get(n)]
    shown = ", ".join(f"{n} {_text(n, mine.get(n))} vs {_text(n, theirs.get(n))}" for n in names)
    return (
        f"{', '.join(names)} differ{'s' if len(names) == 1 else ''}",
        f"{other.name}'s image of its prompt and seed is another job: {shown}",
    )


def _text(name: str, value: Any, limit: int = 60) -> str:
    text = text_value(name, value) or "none"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _entry(image: EvalImage, kind: str, reason: str) -> dict[str, Any]:
    return {
        "key": image.key,
        "file": image.file,
        "prompt": image.prompt,
        "seed": image.seed,
        "kind": kind,
        "reason": reason,
    }


# --- The comparison ---------------------------------------------------------------------------


@dataclass
class CompareOptions:
    min_psnr: float | None = None  # dB: every pair must reach it (else CompareResult.passed is False)
    min_ssim: float | None = None  # every pair must reach it
    workers: int | None = None  # threads that decode and measure pairs (default: the CPUs, at most 8)
    progress: Callable[[int, int], None] | None = None  # called as progress(done, total)

    def __post_init__(self) -> None:
        if self.min_psnr is not None and not (self.min_psnr >= 0):
            raise GenbatchError(f"--min-psnr {self.min_psnr}: expected a number of dB >= 0, e.g. 30")
        if self.min_ssim is not None and not (-1 <= self.min_ssim <= 1):
            raise GenbatchError(f"--min-ssim {self.min_ssim}: expected a number from -1 to 1, e.g. 0.95")
        if self.workers is not None and self.workers < 1:
            raise GenbatchError(f"workers {self.workers}: expected 1 or more")


@dataclass
class CompareResult:
    path: Path  # FAST/compare.json
    report: dict[str, Any]  # what compare.json holds (an infinite PSNR as float("inf"))
    passed: bool  # every pair within the bounds asked (True when none were)


def compare_runs(ref: Path | str, fast: Path | str, options: CompareOptions | None = None) -> CompareResult:
    """Pair the done images of ``ref`` and ``fast``, measure each pair, write ``fast/compare.json``.

    A folder that is not the output of a run, or has no done image, is a GenbatchError."""
    options = options or CompareOptions()
    started = time.perf_counter()
    ref, fast = Path(ref), Path(fast)
    sides = _Side("REF", ref), _Side("FAST", fast)
    pairs, unpaired = _pair(*sides)
    measured = _measure_all(pairs, options, unpaired)
    measured.sort(key=lambda p: (p["psnr"], p["ssim"], p["file"]))
    for entries in unpaired.values():
        entries.sort(key=lambda u: u["file"])
    summary = _summary(measured, unpaired)
    bounds = _bounds(summary, options)
    root = fast.resolve()
    report: dict[str, Any] = {
        "version": 1,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ref": {
            "out": str(ref),
            "path": str(ref.resolve()),
            "from_fast": os.path.relpath(ref.resolve(), root).replace(os.sep, "/"),
            "images": len(sides[0].images),
        },
        "fast": {"out": str(fast), "path": str(root), "images": len(sides[1].images)},
        "paired_by": "model and job key less the speed options (" + ", ".join(SPEED_FIELDS) + ")",
        "differs": _differs(sides),
        "summary": summary,
        "bounds": bounds,
        "eval": _eval_deltas(ref, fast),
        "notes": [],
        "pairs": [{k: v for k, v in p.items() if k != "mse"} for p in measured],
        "unpaired": unpaired,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if not measured:
        report["notes"].append(
            "no image of REF is the same job as one of FAST: compare runs of the same manifest and "
            "generation settings (the speed options, backend, device and dtype may differ)"
        )
    path = root / COMPARE_NAME
    write_atomic(path, (dumps(report) + "\n").encode("utf-8"), root=root)
    return CompareResult(path, report, bounds["passed"])


def dumps(report: dict[str, Any], indent: int | None = 2) -> str:
    """compare.json's text: JSON, with an infinite PSNR (identical images) written as "inf"."""
    return json.dumps(_finite(report), indent=indent, ensure_ascii=False, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _pair(ref: _Side, fast: _Side) -> tuple[list[tuple[EvalImage, EvalImage]], dict[str, list[dict[str, Any]]]]:
    pairs: list[tuple[EvalImage, EvalImage]] = []
    unpaired: dict[str, list[dict[str, Any]]] = {"ref": [], "fast": []}
    for side, other, name in ((ref, fast, "ref"), (fast, ref, "fast")):
        for key, images in side.by_key.items():
            partners = other.by_key.get(key, [])
            if len(images) == 1 and len(partners) == 1:
                if name == "ref":
                    pairs.append((images[0], partners[0]))
                continue
            for image in images:
                if len(images) > 1 or len(partners) > 1:
                    many, where = (images, side.name) if len(images) > 1 else (partners, other.name)
                    names = _differing([i.record for i in many], [*HOW, *SPEED_FIELDS])
                    kind = "ambiguous"
                    reason = (
                        f"{where} holds {len(many)} images of this job"
                        + (f" (made with other {', '.join(names)})" if names else "")
                        + ": compare folders that hold each job once"
                    )
                else:
                    kind, reason = _why_unpaired(image, key, other)
                unpaired[name].append(_entry(image, kind, reason))
    return pairs, unpaired


def _differing(records: list[dict[str, Any]], names: Iterable[str]) -> list[str]:
    return [n for n in names if len({json.dumps(r.get(n), sort_keys=True, default=str) for r in records}) > 1]


def _measure_all(
    pairs: list[tuple[EvalImage, EvalImage]], options: CompareOptions, unpaired: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Each pair's figures, decoded and measured on ``options.workers`` threads (numpy and
    Pillow release the GIL); a pair of images of different sizes goes to ``unpaired``."""

    def one(pair: tuple[EvalImage, EvalImage]) -> dict[str, Any]:
        a, b = pair[0].pixels(), pair[1].pixels()
        figures = _measure(a, b) if a.shape == b.shape else {"shapes": (a.shape, b.shape)}
        return {
            "key": pair[1].key,
            "ref_key": pair[0].key,
            "file": pair[1].file,
            "ref_file": pair[0].file,
            "prompt": pair[1].prompt,
            "seed": pair[1].seed,
            **figures,
        }

    workers = options.workers or max(1, min(8, os.cpu_count() or 1))
    measured: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(pairs), PROGRESS_EVERY):  # a chunk at a time: no million futures at once
            chunk = pairs[start : start + PROGRESS_EVERY]
            for pair, result in zip(chunk, pool.map(one, chunk)):
                if "shapes" in result:
                    (ha, wa, _), (hb, wb, _) = result["shapes"]
                    for image, name, other in ((pair[0], "ref", "FAST"), (pair[1], "fast", "REF")):
                        reason = f"image sizes differ: {wa}x{ha} in REF, {wb}x{hb} in FAST"
                        unpaired[name].append(_entry(image, f"size differs from {other}", reason))
                else:
                    measured.append(result)
            if options.progress:
                options.progress(start + len(chunk), len(pairs))
    return measured


def _summary(pairs: list[dict[str, Any]], unpaired: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The figures over all pairs. ``psnr`` is that of the mean squared error over all pairs
    (infinite only when every pair is identical); ``psnr_min`` the worst pair's."""
    n = len(pairs)
    return {
        "paired": n,
        "identical": sum(1 for p in pairs if p["max_abs"] == 0),
        "psnr": _psnr_of(float(np.mean([p["mse"] for p in pairs]))) if n else None,
        "psnr_min": min(p["psnr"] for p in pairs) if n else None,
        "ssim_mean": float(np.mean([p["ssim"] for p in pairs])) if n else None,
        "ssim_min": min(p["ssim"] for p in pairs) if n else None,
        "max_abs": max(p["max_abs"] for p in pairs) if n else None,
        "mean_abs": float(np.mean([p["mean_abs"] for p in pairs])) if n else None,
        "unpaired_ref": len(unpaired["ref"]),
        "unpaired_fast": len(unpaired["fast"]),
        "unpaired_reasons": {
            side: dict(Counter(u["kind"] for u in entries).most_common()) for side, entries in unpaired.items()
        },
    }


def _bounds(summary: dict[str, Any], options: CompareOptions) -> dict[str, Any]:
    """Whether every pair reaches ``--min-psnr`` and ``--min-ssim`` (a comparison with no pair reaches neither)."""
    failed = []
    for option, bound, worst in (
        ("--min-psnr", options.min_psnr, summary["psnr_min"]),
        ("--min-ssim", options.min_ssim, summary["ssim_min"]),
    ):
        if bound is None:
            continue
        if worst is None:
            failed.append(f"{option} {bound:g}: no pairs to measure")
        elif worst < bound:
            failed.append(f"{option} {bound:g}: the worst pair has {_figure(worst)}")
    return {"min_psnr": options.min_psnr, "min_ssim": options.min_ssim, "passed": not failed, "failed": failed}


def _figure(value: float) -> str:
    return f"{value:.4f}" if value <= 1 else f"{value:.2f} dB"


def _values(records: Iterable[dict[str, Any]], name: str) -> str:
    return ", ".join(sorted({_text(name, r.get(name)) for r in records}))


def _differs(sides: tuple[_Side, _Side]) -> list[dict[str, str]]:
    """What the two runs were made with where it differs: the records' backend, device, dtype
    and speed options, and the last run's backend options (run.json)."""
    ref, fast = sides
    differs = []
    for name in (*HOW, *SPEED_FIELDS):
        a = _values((i.record for i in ref.images), name)
        b = _values((i.record for i in fast.images), name)
        if a != b:
            differs.append({"name": name, "ref": a, "fast": b})
    options = [(read_run(s.out).get("settings") or {}).get("backend_options") or {} for s in sides]
    if all(isinstance(o, dict) for o in options):
        for name in dict.fromkeys([*options[0], *options[1]]):
            if name not in HOW and options[0].get(name) != options[1].get(name):
                differs.append(
                    {"name": name, "ref": _text(name, options[0].get(name)), "fast": _text(name, options[1].get(name))}
                )
    return differs


def _eval_deltas(ref: Path, fast: Path) -> dict[str, Any]:
    """``genbatch eval``'s figures of both folders, group by group, with FAST's less REF's;
    where either folder has no eval.json, a note on how to get them."""
    try:
        sections = eval_section(ref), eval_section(fast)
    except (OSError, ValueError, KeyError, TypeError):
        sections = None, None
    if sections[0] is None or sections[1] is None:
        missing = [n for n, s in zip(("REF", "FAST"), sections) if s is None]
        return {
            "deltas": [],
            "note": f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no eval.json. {EVAL_NOTE}",
        }
    labels = {c["id"]: c["label"] for c in sections[0]["columns"]}
    fast_rows = {r["label"]: r["cells"] for r in sections[1]["rows"]}
    deltas = []
    for row in sections[0]["rows"]:
        theirs = fast_rows.get(row["label"])
        if theirs is None:
            continue
        for column, label in labels.items():
            a, b = row["cells"].get(column), theirs.get(column)
            if column != "images" and isinstance(a, (int, float)) and isinstance(b, (int, float)):
                deltas.append({"group": row["label"], "metric": label, "ref": a, "fast": b, "delta": b - a})
    note = (
        ""
        if deltas
        else "the two eval.json share no group and metric: run `genbatch eval` with the same --metrics and --by on both"
    )
    return {"deltas": deltas, "note": note}


# --- Text ---------------------------------------------------------------------------------------


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def format_table(report: dict[str, Any], rows: int = SHOWN_ROWS) -> str:
    """The worst pairs (at most ``rows``), then the summary, as plain text."""
    s = report["summary"]
    lines = []
    pairs = report["pairs"]
    if pairs:
        width = max(12, *(len(p["file"]) for p in pairs[:rows]))
        lines.append(f"{'image (FAST)':<{width}}  {'PSNR dB':>8}  {'SSIM':>7}  {'max|d|':>6}  {'mean|d|':>7}")
        for p in pairs[:rows]:
            lines.append(
                f"{p['file']:<{width}}  {_cell(p['psnr'], 2):>8}  {_cell(p['ssim'], 4):>7}  "
                f"{p['max_abs']:>6}  {_cell(p['mean_abs'], 3):>7}"
            )
        if len(pairs) > rows:
            lines.append(f"... the {rows} worst of {len(pairs)} pairs; all of them are in FAST/{COMPARE_NAME}")
        lines.append("")
    lines.append(f"REF  {report['ref']['out']}: {report['ref']['images']} images")
    lines.append(f"FAST {report['fast']['out']}: {report['fast']['images']} images")
    for d in report["differs"]:
        lines.append(f"  {d['name']}: {d['ref']} (REF) vs {d['fast']} (FAST)")
    lines.append(f"paired: {s['paired']} ({s['identical']} identical)")
    if s["paired"]:
        lines.append(f"PSNR: {_cell(s['psnr'], 2)} dB over all pairs, worst pair {_cell(s['psnr_min'], 2)} dB")
        lines.append(f"SSIM: mean {_cell(s['ssim_mean'], 4)}, worst pair {_cell(s['ssim_min'], 4)}")
        lines.append(f"|d| in 0-255 levels: max {s['max_abs']}, mean {_cell(s['mean_abs'], 3)}")
    for side, name in (("ref", "REF"), ("fast", "FAST")):
        reasons = s["unpaired_reasons"][side]
        text = "; ".join(f"{kind}: {n}" for kind, n in reasons.items())
        lines.append(f"unpaired in {name}: {s[f'unpaired_{side}']}" + (f" ({text})" if text else ""))
    for entry in (report["unpaired"]["ref"] + report["unpaired"]["fast"])[:3]:
        lines.append(f"  e.g. {entry['file']}: {entry['reason']}")
    b = report["bounds"]
    if b["min_psnr"] is not None or b["min_ssim"] is not None:
        lines.append("bounds: " + ("met" if b["passed"] else "NOT met: " + "; ".join(b["failed"])))
    deltas = report["eval"]["deltas"]
    for d in deltas:
        lines.append(
            f"eval {d['group']}: {d['metric']} {d['ref']:.4g} (REF) -> {d['fast']:.4g} (FAST), delta {d['delta']:+.4g}"
        )
    if report["eval"]["note"]:
        lines.append(f"note: {report['eval']['note']}")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)
