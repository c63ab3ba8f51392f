"""Output file names: a job's path inside ``--out`` from the ``--name-template``.

Names depend only on a job's own values (its row, its index, its seed), never on other
rows, so reruns find the same files; the one exception is a name that is already the file of
another job's done image (:func:`keep_done_files`). Every substituted value is cleaned so that
manifest text can never steer a file outside ``--out``; a template's own literal text may hold ``/``
(sub-folders). The template is parsed once per plan and each job formats only the fields
the template uses: a million-job plan names its jobs in seconds.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from itertools import compress
from operator import attrgetter, not_
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from genbatch.bulk import paused_gc
from genbatch.echo import shown, shown_bare
from genbatch.errors import GenbatchError
from genbatch.manifest.fields import FIELDS, JOB_FIELDS, template_values
from genbatch.store import image_formats as formats

if TYPE_CHECKING:
    from genbatch.jobs import Job

DEFAULT_NAME_TEMPLATE = "{index:06d}-{slug}-{seed}.{ext}"
# {bucket} in a name template: index // 1000, so "{bucket:04d}/{index:07d}.png" keeps every
# folder of a million-image run to 1,000 files.
BUCKET_SIZE = 1000
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")
# Limits on what a name template may do with manifest values: each value is cut to
# VALUE_BYTES of UTF-8, a width or precision in a format spec (``{seed:>8}``) may not pass
# MAX_FORMAT_WIDTH (a file name cannot be longer anyway), and each folder or file name of
# the result must fit NAME_BYTES, the limit of ext4, APFS, NTFS and most others.
VALUE_BYTES = 120
MAX_FORMAT_WIDTH = 255
NAME_BYTES = 255
# Names Windows reserves whatever the extension (``NUL.txt`` is the null device there).
_RESERVED = re.compile(r"^(?:CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(?:\..*)?$", re.IGNORECASE)
_RESERVED_FIRST = frozenset("CPANLcpanl")
# --name-template names of generation fields ({guidance} is guidance_scale) -> the field
_TEMPLATE_ALIASES = {alias: f.name for f in FIELDS for alias in f.template}


# Every byte but a-z and 0-9 as "-": with the runs of "-" joined, the slug.
_SLUG_BYTES = bytes(c if 48 <= c <= 57 or 97 <= c <= 122 else 45 for c in range(256))


def slugify(text: str, limit: int = 40) -> str:
    """The prompt as a file-name slug: ASCII letters and digits, each other run of characters
    one "-" (accents dropped: "café" -> "cafe"), at most ``limit`` characters."""
    ascii_text = text if text.isascii() else unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    dashed = ascii_text.lower().encode("ascii").translate(_SLUG_BYTES).decode("ascii")
    slug = "-".join(filter(None, dashed.split("-")))
    return slug[:limit].rstrip("-") or "image"


class _SafeFormatter(string.Formatter):
    """Formats a name template, neutralising every substituted value.

    Values come from users' manifests: a ``/``, ``..`` or control character in an id must
    never steer a file outside the output folder, so each value is cleaned after formatting;
    only the template's own literal text may contain ``/`` (sub-folders). Fields are plain
    names (no ``{prompt.__class__}`` or ``{x[0]}``) and format widths are bounded, so a
    template cannot reach into Python objects or allocate gigabytes.
    """

    def __init__(self) -> None:
        self._specs_checked: set[str] = set()

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        if not field_name or field_name.isdigit():
            raise GenbatchError("fields are named, e.g. {seed}; {} and {0} have no value here")
        if "." in field_name or "[" in field_name:
            raise GenbatchError(
                f"{{{shown_bare(field_name, 60)}}}: attribute and index access are not allowed in a name "
                "template; use a plain field name such as {id} or {seed}"
            )
        return self.get_value(field_name, args, kwargs), field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if type(value) is int and format_spec in self._specs_checked:
            text = format(value, format_spec)
            if text.isdigit() and text.isascii() and len(text) <= VALUE_BYTES:
                return text  # digits alone: nothing to clean
        if format_spec not in self._specs_checked:
            for digits in re.findall(r"\d+", format_spec):
                if len(digits) > 3 or int(digits) > MAX_FORMAT_WIDTH:
                    raise GenbatchError(
                        f"format spec {shown(format_spec, 40)}: widths and precisions above {MAX_FORMAT_WIDTH} "
                        "are not allowed in a file name"
                    )
            self._specs_checked.add(format_spec)
        text = format(value, format_spec)[: 4 * VALUE_BYTES]
        # printable ASCII without a character _UNSAFE names is left as it is (most values)
        if not (text.isascii() and text.isprintable()) or _UNSAFE.search(text):
            text = "".join("_" if _UNSAFE.match(c) or unicodedata.category(c)[0] == "C" else c for c in text)
        text = text.strip()
        if ".." in text:
            text = re.sub(r"\.{2,}", "_", text)
        text = text.lstrip(".")
        return text[:VALUE_BYTES] if text.isascii() else text.encode("utf-8")[:VALUE_BYTES].decode("utf-8", "ignore")


def _column_value(value: Any) -> Any:
    """A manifest cell as a name template sees it: plain text and numbers only (a nested JSON
    or Parquet value is given as its JSON text)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


# The fields every job has, whatever its row's columns (they win over a column of that name).
_JOB_FIELDS: dict[str, Callable[[Job, str], Any]] = {
    "index": lambda job, ext: job.index,
    "row": lambda job, ext: job.row.index,
    "line": lambda job, ext: job.row.line,
    "k": lambda job, ext: job.k,
    "bucket": lambda job, ext: job.index // BUCKET_SIZE,
    "id": lambda job, ext: job.row.id or "",
    "slug": lambda job, ext: slugify(job.values["prompt"]),
    "model": lambda job, ext: job.model.name.replace("/", "--"),
    "key": lambda job, ext: job.key,
    "ext": lambda job, ext: ext,
}


# Fields whose value is always a non-negative int: formatted with a spec of digits alone
# ("", "d", "06d") they give digits, which need no cleaning.
_SEED: Callable[[Job, str], Any] = lambda job, ext: job.values["seed"]  # noqa: E731
_INT_FIELDS = {_JOB_FIELDS[name] for name in ("index", "row", "line", "k", "bucket")} | {_SEED}
_DIGITS_SPEC = re.compile(r"(?:0[0-9]{1,3})?d?")  # zero-filled: a width alone pads with spaces


def _column(job: Job, name: str) -> Any:
    fields = job.row.fields
    if name not in fields:
        raise KeyError(name)
    return _column_value(fields[name])


def _field(name: str) -> Callable[[Job, str], Any]:
    """How a job gives the template field ``name``, in the order of :func:`name_fields`."""
    if name in _JOB_FIELDS:
        return _JOB_FIELDS[name]
    if name == "seed":
        return _SEED
    if name in _TEMPLATE_ALIASES:
        field = _TEMPLATE_ALIASES[name]
        return lambda job, ext: job.values[field]  # a field that is not set reads as None
    return lambda job, ext: _column(job, name)


def name_fields(job: Job, ext: str) -> dict[str, Any]:
    """The values a name template can use: the row's columns, the job's generation fields
    under their template names, then the fields every job has."""
    fields: dict[str, Any] = {str(column): _column_value(value) for column, value in job.row.fields.items()}
    fields.update(template_values({name: job.values[name] for name in JOB_FIELDS}))
    fields.update({name: get(job, ext) for name, get in _JOB_FIELDS.items()})
    return fields


class _Template:
    """A name template parsed once: literal text and (field, format spec) pairs, with the
    fields that are the same for every job ({ext}) formatted once into the text. A template
    with nested specs or conversions (``{seed!r}``, ``{seed:{width}}``) is formatted whole by
    the formatter each time."""

    def __init__(self, template: str, formatter: _SafeFormatter, ext: str):
        self.template, self.formatter = template, formatter
        self.parts: list[tuple[str, Callable[[Job, str], str] | None]] | None = None
        try:
            parsed = list(formatter.parse(template))
        except ValueError:  # a stray brace: vformat says so, with the job's line
            return
        for _, field_name, spec, conversion in parsed:
            plain = field_name is None or (field_name.isidentifier() and not field_name.isdigit())
            if not plain or conversion is not None or "{" in (spec or ""):
                return
        self.parts, text = [], ""
        for literal, name, spec, _ in parsed:
            text += literal
            if name == "ext" and self._constant(ext, spec or "") is not None:
                text += self._constant(ext, spec or "") or ""
            elif name is not None:
                self.parts.append((text, self._renderer(_field(name), spec or "")))
                text = ""
        if text:
            self.parts.append((text, None))

    def _renderer(self, get: Callable[[Job, str], Any], spec: str) -> Callable[[Job, str], str]:
        """How one field of the template becomes text: through the cleaning formatter, except
        where the text is known to be safe (a million names a plan): an int field with a spec
        of digits alone, and the slug (letters, digits and "-" by construction)."""
        format_field = self.formatter.format_field
        if get in _INT_FIELDS and _DIGITS_SPEC.fullmatch(spec) and self._constant(0, spec) is not None:
            return lambda job, ext: format(get(job, ext), spec)  # an int >= 0 by construction
        if get is _JOB_FIELDS["slug"] and not spec:
            return lambda job, ext: slugify(job.values["prompt"])
        return lambda job, ext: format_field(get(job, ext), spec)

    def _constant(self, value: Any, spec: str) -> str | None:
        try:
            return self.formatter.format_field(value, spec)
        except (GenbatchError, ValueError, TypeError):
            return None  # each job's name says what is wrong, with its line

    def format(self, job: Job, ext: str) -> str:
        if self.parts is None:
            return self.formatter.vformat(self.template, (), name_fields(job, ext))
        return "".join([literal + (render(job, ext) if render is not None else "") for literal, render in self.parts])


def _check_part(part: str, path: str, template: str) -> str:
    """One folder or file name of a job's path, checked; a Windows-reserved name neutralised."""
    if part.startswith("."):
        from genbatch.safe_write import TEMP_MARKER

        raise GenbatchError(
            f"--name-template {shown(template)} gives {shown(path)}: a name that begins with '.' "
            f"is hidden and may be taken for genbatch's own files (.genbatch-thumbs, .NAME{TEMP_MARKER}XXXX "
            "temp files that a rerun deletes); start the name with a letter or digit"
        )
    if part[:1] in _RESERVED_FIRST and _RESERVED.match(part):
        part = "_" + part
    size = len(part) if part.isascii() else len(part.encode("utf-8", "surrogatepass"))
    if size > NAME_BYTES:
        raise GenbatchError(
            f"--name-template {shown(template)} gives a name of {size} bytes, {shown(part, 60)}; file systems "
            f"allow {NAME_BYTES} bytes per file or folder name: use shorter fields ({{slug}}, {{index}}, {{seed}})"
        )
    return part


def _check_single(name: str, template: str) -> str:
    if name.startswith("contact-sheet-") and _is_sheet(name):
        raise GenbatchError(
            f"--name-template {shown(template)} gives {shown(name)}, the name of a contact sheet that "
            "`genbatch report --contact-sheet` writes over; use another name"
        )
    return name


def _is_sheet(name: str) -> bool:

    return bool(formats.CONTACT_SHEET_RE.match(name))


def _path_of(name: str, template: str, ext: str) -> str:
    """The formatted name as a path inside --out, with the image format's extension."""
    if name and "/" not in name and "\\" not in name and name not in (".", ".."):
        return _file_name(name, template, ext)  # no folder (most templates)
    return _folder_path(name, template, ext)


def _file_name(name: str, template: str, ext: str) -> str:
    """:func:`_folder_path` for a name with no folder, by string operations (as PurePosixPath
    does them: a suffix is a last dot that is neither the first nor the last character)."""
    dot = name.rfind(".")
    suffix = name[dot:] if 0 < dot < len(name) - 1 else ""
    named = formats.BY_EXTENSION.get(suffix.lower().lstrip("."))
    if named is None:
        name = f"{name}.{ext}"
    elif named.ext != ext:
        name = f"{name[:dot]}.{ext}"
    return _check_single(_check_part(name, name, template), template)


def _folder_path(name: str, template: str, ext: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts) or not path.parts:
        raise GenbatchError(f"--name-template {shown(template)} gives {shown(name)}, which is not inside --out")
    named = formats.BY_EXTENSION.get(path.suffix.lower().lstrip("."))
    if named is None:
        path = path.with_name(f"{path.name}.{ext}")
    elif named.ext != ext:  # "{file_name}" = 000123.jpg written as PNG -> 000123.png
        path = path.with_suffix(f".{ext}")
    parts = [_check_part(part, path.as_posix(), template) for part in path.parts]
    return _check_single(parts[0], template) if len(parts) == 1 else "/".join(parts)


def assign_file_names(jobs: Iterable[Job], template: str, image_format: str) -> None:
    """Give each job its output path (relative to --out); refuse unsafe templates and clashes."""
    ext = formats.image_format(image_format).ext
    if template.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", template):
        raise GenbatchError(f"--name-template {shown(template)}: must be a relative path inside --out")
    parsed = _Template(template, _SafeFormatter(), ext)
    with paused_gc():
        clashes = _name_jobs(jobs, parsed, template, ext)
    if clashes:
        more = f"\n  ... and {len(clashes) - 10} more" if len(clashes) > 10 else ""
        shown_clashes = "\n  ".join(clashes[:10]) + more
        raise GenbatchError(
            f"--name-template {shown(template)} gives the same file name to different images:\n  {shown_clashes}\n"
            "add {index}, {seed} or {k} to the template"
        )


def _name_jobs(jobs: Iterable[Job], parsed: _Template, template: str, ext: str) -> list[str]:
    """Set each job's file; the clashes of names that differ at most in case."""
    seen: dict[str, Job] = {}
    clashes: list[str] = []
    for job in jobs:
        try:
            name = parsed.format(job, ext)
        except KeyError as err:
            available = ", ".join(sorted(k for k in name_fields(job, ext) if k.isidentifier()))
            raise GenbatchError(
                f"--name-template: unknown field {shown(err.args[0] if err.args else '')}; "
                f"available fields: {shown_bare(available, 2000)}"
            ) from None
        except GenbatchError as err:
            raise GenbatchError(f"--name-template {shown(template)}: {err}") from None
        except (ValueError, IndexError, TypeError) as err:
            raise GenbatchError(
                f"--name-template {shown(template)}: {shown_bare(str(err))} (line {job.row.line})"
            ) from None
        job.file = _path_of(name, template, ext)
        folded = job.file.lower()
        if folded == job.file:
            folded = job.file  # keep one string, not two, per job
        if folded in seen:
            clashes.append(f"{shown(job.file)}: line {seen[folded].row.line} and line {job.row.line}")
        else:
            seen[folded] = job
    return clashes


# --- names that belong to done images --------------------------------------------------------

# How much of its key a job's file name gets when its own name belongs to another job's done
# image ("-k" and 8 hex digits), then more if that name is taken too (None: the whole key).
_KEY_SUFFIXES = (8, 16, None)


def keep_done_files(pending: list[Job], done: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Keep every done image where it is, whatever the names of this plan: ``pending`` are the
    jobs this run writes, ``done`` the resume scan's key -> {file, ...} of the done records whose
    image is on disk (also those ``--verify`` found changed, and those of jobs no longer planned).

    A pending job with a done record (``--force``, ``--verify``) is written to its recorded file.
    A pending job whose name is the file of another key's done image (a row added above a done
    one shifts ``{index}``; a deleted row's image keeps its name) gets its name with ``-k`` and
    the start of its key before the extension, the same on every rerun. Returns (name from the
    template, name given) of each such job. Done jobs that are not pending write nothing and
    keep their files (a rerun matches them by key). Costs a few C-level passes over the pending
    jobs when nothing clashes (a million-job dry run)."""
    if not done or not pending:
        return []
    records: list[Any] = list(map(done.get, map(attrgetter("key"), pending)))
    for job, record in compress(zip(pending, records), records):
        job.file = record["file"]
    fresh = list(compress(pending, map(not_, records)))  # jobs without a done image
    owners = {_folded(record["file"]): key for key, record in done.items()}
    if owners.keys().isdisjoint(map(str.lower, map(attrgetter("file"), fresh))):
        return []
    clashing = [job for job in fresh if _folded(job.file) in owners]
    taken = set(owners) | {_folded(job.file) for job in pending}
    renamed: list[tuple[str, str]] = []
    for job in clashing:
        name = next((n for n in _with_key(job) if _folded(n) not in taken), None)
        if name is None:
            raise GenbatchError(
                f"line {job.row.line}: its file {shown(job.file)} belongs to a done image of another job, and so "
                "does every name genbatch would give it instead; add {key} to --name-template"
            )
        taken.add(_folded(name))
        renamed.append((job.file, name))
        job.file = name
    return renamed


def _folded(file: str) -> str:
    """A file name as a case-insensitive file system compares it."""
    return file.lower()


def _with_key(job: Job) -> Iterator[str]:
    """``job.file`` with ``-k`` and the first 8, 16, then all characters of its key before the
    extension (the last folder or file name cut to fit NAME_BYTES)."""
    folder, _, name = job.file.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    for length in _KEY_SUFFIXES:
        tail = f"-k{job.key[:length]}" + (f".{ext}" if dot else "")
        room = NAME_BYTES - len(tail.encode("utf-8"))
        cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
        yield f"{folder}/{cut}{tail}" if folder else f"{cut}{tail}"
