"""``genbatch eval``: the metrics of a run's done images, per group, into ``OUT/eval.json``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from genbatch.errors import GenbatchError
from genbatch.evaluate import metrics as m
from genbatch.evaluate import networks as nw
from genbatch.evaluate.cache import FeatureCache, cache_folder
from genbatch.evaluate.images import EvalImage, group_images, run_images
from genbatch.evaluate.reference import check_reference, reference_stats
from genbatch.report.eval_section import EVAL_NAME as EVAL_NAME
from genbatch.report.eval_section import read_eval as read_eval
from genbatch.safe_write import write_atomic

FLUSH_EVERY = 512  # images: how often computed rows are saved to the cache


@dataclass
class EvalOptions:
    metrics: tuple[str, ...] | None = None  # None: shapes,diversity for a run of the shapes model, else clip,diversity
    reference: str | Path | None = None
    by: tuple[str, ...] = ("model",)
    clip_model: str | None = None
    inception_weights: str | Path | None = None
    device: str = "auto"
    batch_size: int = 32
    # A feature network for FID, IS and feature-space diversity in place of Inception:
    # a torch module from (N, 3, H, W) uint8 images to pool features, or (pool, logits).
    feature_network: Any = None
    progress: Any = None  # called as progress(done, total) after each batch of new images


@dataclass
class EvalResult:
    path: Path
    report: dict[str, Any]
    computed: dict[str, int] = field(default_factory=dict)


def parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in m.NAMES]
    if unknown or not names:
        raise GenbatchError(
            f"--metrics {text!r}: unknown metric {', '.join(unknown) or '(none given)'}; "
            f"expected a comma-separated list of {', '.join(m.NAMES)}"
        )
    return names


def default_metrics(images: list[EvalImage]) -> tuple[str, ...]:
    """The shapes model's runs have a judge that needs no weights; other runs get CLIP score."""
    from genbatch.pipelines.builtin import SHAPES

    if all(i.record.get("model") == SHAPES for i in images):
        return ("shapes", "diversity")
    return ("clip", "diversity")


def _device(device: str) -> str:
    from genbatch.pipelines.torch_runtime import resolve_torch_device

    return resolve_torch_device(device)


def _load_extractors(options: EvalOptions, device: str) -> tuple[dict[str, nw.Extractor], list[str]]:
    """The extractors the metrics need, checking every weight file before loading any."""
    wanted, notes = set(options.metrics or ()), []
    extractors: dict[str, nw.Extractor] = {}
    features_needed = bool(wanted & {"fid", "is"})
    if "fid" in wanted:
        if options.reference is None:
            raise GenbatchError(
                "--metrics fid needs --reference: a folder of real images, or a .npz of their statistics (mu, sigma)"
            )
        check_reference(options.reference)
    inception = clip = None
    if features_needed and options.feature_network is None:
        inception = nw.find_inception_weights(options.inception_weights)
    if "clip" in wanted:
        clip = nw.find_clip(options.clip_model)
    if options.feature_network is not None and (features_needed or "diversity" in wanted):
        extractors["features"] = nw.feature_extractor(options.feature_network, device, name="custom-features")
    elif inception is not None:
        extractors["features"] = nw.inception_extractor(inception, device)
    elif "diversity" in wanted:
        try:  # feature-space diversity when the Inception network is at hand; pixels always
            extractors["features"] = nw.inception_extractor(
                nw.find_inception_weights(options.inception_weights), device
            )
        except GenbatchError as err:
            notes.append(f"diversity in pixel space only, with no feature network: {err}")
    if clip is not None:
        extractors["clip"] = nw.clip_extractor(clip, device)
    if "diversity" in wanted:
        extractors["pixels"] = nw.pixel_extractor()
    if "shapes" in wanted:
        extractors["shapes"] = nw.shapes_extractor()
    return extractors, notes


def _fill(
    out: Path, extractors: dict[str, nw.Extractor], images: list[EvalImage], options: EvalOptions
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Every image's row from every extractor, computing (in batches, each image decoded
    once) only what the caches lack."""
    caches = {name: FeatureCache(out, cache_folder(out, e.name, e.fingerprint)) for name, e in extractors.items()}
    unique = list({i.cache_id: i for i in images}.values())
    missing = [i for i in unique if any(i.cache_id not in c for c in caches.values())]
    computed = {e.name: 0 for e in extractors.values()}
    unsaved = 0
    try:
        for start in range(0, len(missing), options.batch_size):
            batch = missing[start : start + options.batch_size]
            decoded = {i.cache_id: i.pixels() for i in batch}
            for name, extractor in extractors.items():
                todo = [i for i in batch if i.cache_id not in caches[name]]
                if todo:
                    caches[name].add(
                        [i.cache_id for i in todo], extractor.compute([decoded[i.cache_id] for i in todo], todo)
                    )
                    computed[extractor.name] += len(todo)
            unsaved += len(batch)
            if unsaved >= FLUSH_EVERY:
                for cache in caches.values():
                    cache.flush()
                unsaved = 0
            if options.progress:
                options.progress(start + len(batch), len(missing))
    finally:
        for cache in caches.values():
            cache.flush()
    return {name: cache.get([i.cache_id for i in images]) for name, cache in caches.items()}, computed


def _group_metrics(
    options: EvalOptions,
    rows: dict[str, np.ndarray],
    extractors: dict[str, nw.Extractor],
    images: list[EvalImage],
    reference: dict | None,
) -> dict[str, Any]:
    wanted = options.metrics or ()
    result: dict[str, Any] = {"images": len(images)}
    features = extractors.get("features")
    if features is not None:
        pool, logits = rows["features"][:, : features.dims[0]], rows["features"][:, features.dims[0] :]
    if "fid" in wanted and reference is not None:
        result["fid"] = m.fid(pool, reference["mu"], reference["sigma"]) if len(images) >= 2 else None
    if "is" in wanted:
        if logits.shape[1] == 0:
            raise GenbatchError("--metrics is: the feature network gives no class logits")
        result["is"] = m.inception_score(logits)
    if "clip" in wanted:
        result["clip"] = m.clip_score(rows["clip"][:, 0])
    if "diversity" in wanted:
        prompts = [f"{i.prompt}\x00{i.record.get('negative_prompt', '')}" for i in images]
        div = {"pixel": m.diversity(rows["pixels"], prompts, "pixel")}
        if features is not None:
            div["feature"] = m.diversity(pool, prompts, "feature")
        result["diversity"] = div
    if "shapes" in wanted:
        result["shapes"] = m.shapes_summary(rows["shapes"], nw.shapes_judge.CATEGORIES)
    return result


def _per_image(image: EvalImage, values: dict[str, np.ndarray], group: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "key": image.key,
        "file": image.file,
        "prompt": image.prompt,
        "seed": image.seed,
        "group": group,
    }
    if "clip" in values:
        entry["clip"] = max(float(values["clip"][0]), 0.0)
    if "shapes" in values:
        row = values["shapes"]
        entry["shapes"] = (
            None
            if row[0] != 1
            else {c: (None if np.isnan(v) else bool(v)) for c, v in zip(nw.shapes_judge.CATEGORIES, row[1:])}
        )
    return entry


def evaluate_run(out: Path, options: EvalOptions) -> EvalResult:
    """Compute the metrics over OUT's done images per group and write OUT/eval.json."""
    started = time.perf_counter()
    out = Path(out)
    root = out.resolve()  # where the cache and eval.json are written (safe_write checks they stay inside)
    nw.offline()
    images = run_images(out)
    metrics = options.metrics or default_metrics(images)
    options = replace(options, metrics=metrics)
    groups = group_images(images, list(options.by))
    device = _device(options.device)
    extractors, notes = _load_extractors(options, device)
    reference = None
    if options.reference is not None and "fid" in metrics:
        reference = reference_stats(options.reference, extractors["features"], batch_size=options.batch_size)

    rows, computed = _fill(root, extractors, images, options)
    index = {image.cache_id: n for n, image in enumerate(images)}

    report_groups, per_image = [], []
    for values, members in groups:
        at = [index[i.cache_id] for i in members]
        group_rows = {name: r[at] for name, r in rows.items()}
        report_groups.append({"group": values, **_group_metrics(options, group_rows, extractors, members, reference)})
        per_image += [_per_image(i, {n: r[k] for n, r in group_rows.items()}, values) for k, i in enumerate(members)]

    report = {
        "version": 1,
        "out": str(out),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics": list(metrics),
        "by": list(options.by),
        "device": device,
        "networks": {name: e.info for name, e in extractors.items()},
        "reference": None if reference is None else {k: reference[k] for k in ("source", "images", "cache")},
        "notes": notes,
        "groups": report_groups,
        "images": per_image,
        "computed": computed,
        "seconds": round(time.perf_counter() - started, 2),
    }
    path = root / EVAL_NAME
    write_atomic(
        path, (json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8"), root=root
    )
    return EvalResult(path, report, computed)


def format_table(report: dict[str, Any]) -> str:
    """The groups as plain text: a heading line per group, a line per metric."""
    lines = []
    for group in report["groups"]:
        name = ", ".join(f"{k}={v}" for k, v in group["group"].items()) or "all"
        lines.append(f"{name} ({group['images']} images)")
        if "fid" in group:
            lines.append(
                "  FID         " + ("n/a: fewer than 2 images" if group["fid"] is None else f"{group['fid']:.2f}")
            )
        if "is" in group:
            lines.append(
                f"  IS          {group['is']['mean']:.2f} ± {group['is']['std']:.2f} ({group['is']['splits']} splits)"
            )
        if "clip" in group:
            lines.append(f"  CLIP score  {group['clip']:.2f}")
        if "diversity" in group:
            cells = [
                f"{space} "
                + (
                    "n/a: no prompt has 2+ images"
                    if d["value"] is None
                    else f"{d['value']:.4f} over {d['prompts']} prompts"
                )
                for space, d in group["diversity"].items()
            ]
            lines.append("  diversity   " + "; ".join(cells))
        if "shapes" in group:
            s = group["shapes"]
            cells = [
                f"{c} {s[c]['accuracy'] * 100:.1f}% ({s[c]['n']})"
                for c in (*nw.shapes_judge.CATEGORIES, "all")
                if s[c]["n"]
            ]
            lines.append("  shapes      " + "  ".join(cells))
            if s["unparsed"]:
                lines.append(f"              {s['unparsed']} prompts not in the shapes grammar, not judged")
    return "\n".join(lines)
