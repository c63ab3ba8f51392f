"""Rows from a folder of images instead of a manifest file (``--input-dir DIR --prompt TEXT``), as
A1111's batch img2img takes them: one row per image file in DIR, in name order, each with the one
prompt; with a mask folder (``--mask-dir``) each image's mask is the file there with the same name
stem and any image extension, so the rows are inpainting ones.

Image files are told by their extension (PNG, JPEG, WebP, BMP, TIFF); hidden files (``.name``) are
skipped and subfolders are not read. A row's id is its image's name, so its seed (when none is
given) is the image's own however the folder changes. An image's path is recorded as its name,
relative to DIR, which stands for the manifest's folder: it is where the image is read from
(genbatch.manifest.inputs) and what the ledger, the report and a replay in plain diffusers name. A
mask is recorded relative to DIR when its folder is inside DIR, else as an absolute path. Each
input file is then read and checked as a manifest's are, and a problem is named by the image's
file (``DIR/NAME:image: ...``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from genbatch.echo import shown_bare
from genbatch.errors import GenbatchError, Problem
from genbatch.manifest.raw import Raw
from genbatch.manifest.read import MAX_IMAGES_PER_ROW, Manifest, SkippedRow, manifest_of, parse_value, read_manifest

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
KINDS = "PNG, JPEG, WebP, BMP or TIFF"
FORMAT = "folder"  # a Manifest's format when its rows come from a folder


def check_source(
    manifest: str | None,
    input_dir: str | None,
    mask_dir: str | None,
    prompt: str | None,
    format: str | None = None,
    column_map: dict[str, str] | None = None,
) -> None:
    """One source of rows: a manifest, or ``--input-dir`` (with ``--prompt``, and maybe ``--mask-dir``)."""
    if manifest is not None and input_dir is not None:
        raise GenbatchError(
            f"give a MANIFEST or --input-dir, not both ({shown_bare(manifest)} and --input-dir "
            f"{shown_bare(input_dir)}); a manifest's rows name their images in an image column"
        )
    if manifest is None and input_dir is None:
        raise GenbatchError("give a MANIFEST (a file of prompts, or - for stdin), or --input-dir DIR and --prompt TEXT")
    if input_dir is None:
        for option, value in (("--mask-dir", mask_dir), ("--prompt", prompt)):
            if value is not None:
                raise GenbatchError(
                    f"{option} goes with --input-dir; a manifest's rows give their own "
                    + ("mask in a mask column" if option == "--mask-dir" else "prompts (--set prompt=TEXT forces one)")
                )
        return
    if prompt is None:
        raise GenbatchError("--input-dir needs --prompt TEXT: the prompt of every image")
    if format is not None or column_map:
        option = "--format" if format is not None else "--column or --prompt-column"
        raise GenbatchError(f"{option} is an option of a manifest; --input-dir reads a folder of images")


def image_files(folder: Path) -> list[str]:
    """The names of the image files directly in ``folder`` (by extension, any case), sorted by
    name; hidden files and anything that is not a file (a subfolder) are left out."""
    with os.scandir(folder) as entries:
        return sorted(
            entry.name
            for entry in entries
            if not entry.name.startswith(".")
            and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
            and entry.is_file()
        )


def _folder(given: str, option: str) -> Path:
    folder = Path(given).expanduser()
    if not folder.exists():
        raise GenbatchError(f"{option} {shown_bare(given)}: no such folder")
    if not folder.is_dir():
        raise GenbatchError(f"{option} {shown_bare(given)}: not a folder; give a folder of image files")
    return folder


def _masks(images: list[str], folder: Path, given: str) -> tuple[dict[str, str], dict[str, str]]:
    """Each image's mask file name in ``folder`` (the file with its name stem), and why an image
    has none: no such file, or two (cat.png and cat.jpg)."""
    by_stem: dict[str, list[str]] = {}
    for name in image_files(folder):
        by_stem.setdefault(os.path.splitext(name)[0], []).append(name)
    found, problems = {}, {}
    for image in images:
        stem = os.path.splitext(image)[0]
        candidates = by_stem.get(stem, [])
        if len(candidates) == 1:
            found[image] = candidates[0]
        elif candidates:
            problems[image] = (
                f"{len(candidates)} masks in --mask-dir {shown_bare(given)} "
                f"({', '.join(map(shown_bare, candidates))}); keep one"
            )
        else:
            problems[image] = (
                f"no mask in --mask-dir {shown_bare(given)}: expected {shown_bare(os.path.join(given, stem))}.png "
                f"or another {KINDS} file with the name stem {shown_bare(stem)}"
            )
    return found, problems


def _mask_path(input_dir: Path, mask_dir: Path, name: str) -> str:
    """A mask's path as the row gives it: relative to the input folder when the mask folder is
    inside it, else absolute (read as given)."""
    mask = Path(os.path.abspath(mask_dir / name))
    try:
        return mask.relative_to(os.path.abspath(input_dir)).as_posix()
    except ValueError:
        return str(mask)


def read_rows(
    manifest: str | None,
    *,
    input_dir: str | None = None,
    mask_dir: str | None = None,
    prompt: str | None = None,
    format: str | None = None,
    column_map: dict[str, str] | None = None,
    overrides: dict[str, str] | None = None,
    max_images_per_row: int = MAX_IMAGES_PER_ROW,
) -> Manifest:
    """The rows of ``manifest``, or of the folder of images ``input_dir`` (:func:`read_image_folder`),
    read and checked: what ``genbatch run`` and ``genbatch validate`` read."""
    if input_dir is not None:
        return read_image_folder(
            input_dir, prompt, mask_dir=mask_dir, overrides=overrides, max_images_per_row=max_images_per_row
        )
    return read_manifest(
        str(manifest),
        format=format,
        column_map=column_map,
        overrides=overrides,
        max_images_per_row=max_images_per_row,
    )


def read_image_folder(
    input_dir: str,
    prompt: str | None,
    *,
    mask_dir: str | None = None,
    overrides: dict[str, str] | None = None,
    max_images_per_row: int = MAX_IMAGES_PER_ROW,
) -> Manifest:
    """The rows of ``--input-dir`` (with ``--mask-dir``): one per image file, each with ``prompt``,
    read and checked as a manifest's rows are. A folder that cannot be read, no image in it, no
    prompt, or an image without its mask raises :class:`GenbatchError`."""
    if prompt is None:
        raise GenbatchError("--input-dir needs --prompt TEXT: the prompt of every image")
    try:
        prompt = parse_value("prompt", prompt)
    except ValueError as err:
        raise GenbatchError(f"--prompt: {err}") from None
    folder = _folder(input_dir, "--input-dir")
    masks_folder = _folder(mask_dir, "--mask-dir") if mask_dir is not None else None
    try:
        images = image_files(folder)
        masks, unpaired = _masks(images, masks_folder, mask_dir) if masks_folder and mask_dir else ({}, {})
    except OSError as err:
        raise GenbatchError(f"cannot list {shown_bare(err.filename or input_dir)}: {err.strerror}") from None
    if not images:
        raise GenbatchError(
            f"--input-dir {shown_bare(input_dir)}: no image files in it ({KINDS}, by extension); "
            "hidden files are skipped and subfolders are not read"
        )
    name = shown_bare(input_dir, limit=4096)
    # each row's id is its image's name: ids are unique in a folder, and a seed derived from the id
    # (genbatch.plan.expand) stays the image's own when files are added to the folder or removed
    header = ["id", "prompt", "image"] + (["mask"] if masks_folder else [])
    records: list[tuple[int, dict[str, Any]]] = []
    problems = []
    for number, image in enumerate(images, start=1):  # a row's "line" is its image's place in name order
        record: dict[str, Any] = {"id": image, "prompt": prompt, "image": image}
        if image in unpaired:
            problems.append(Problem(name, number, "mask", unpaired[image]))
            continue
        if masks_folder is not None:
            record["mask"] = _mask_path(folder, masks_folder, masks[image])
        records.append((number, record))
    manifest = manifest_of(
        Raw(header, records, problems),
        FORMAT,
        name,
        str(folder),
        overrides=overrides,
        max_images_per_row=max_images_per_row,
        folder=str(folder),
    )
    return _named_by_file(manifest, folder, images)


def _named_by_file(manifest: Manifest, folder: Path, images: list[str]) -> Manifest:
    """The manifest with each row's problems named by its image's file (``DIR/NAME:image: ...``)
    rather than by a line number, which a folder has not."""

    def named(problem: Problem) -> Problem:
        if problem.line is None or not 1 <= problem.line <= len(images):
            return problem
        file = os.path.join(manifest.path, images[problem.line - 1])
        return Problem(file, None, problem.column, problem.message, problem.fatal)

    by_line: dict[int, list[str]] = {}
    for problem in manifest.problems:
        if problem.line is not None:
            by_line.setdefault(problem.line, []).append(str(named(problem)))
    manifest.problems = [named(p) for p in manifest.problems]
    manifest.skipped = [
        SkippedRow(s.line, s.prompt, by_line.get(s.line, s.reasons), s.fields) for s in manifest.skipped
    ]
    return manifest
