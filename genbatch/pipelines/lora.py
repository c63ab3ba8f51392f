"""LoRA adapters per row: ``--lora PATH_OR_ID[:WEIGHT]`` and the ``lora`` manifest column.

A row's LoRA set (``style.safetensors:0.8; other:0.5``) is parsed with the manifest
(:func:`parse_specs`), resolved to files when the run is planned (:func:`resolve_set`: a
file, a folder holding one LoRA, or a Hugging Face id in the local cache), and applied to a
loaded pipeline before each batch (:func:`apply_set`). Each adapter file is loaded once per
loaded model, under a name derived from its content; switching sets is diffusers'
``set_adapters``, never a reload, and a batch with no LoRA runs with them disabled, which
gives the base model's pixels.

A set is part of the job key as the adapters' fingerprints and weights (so moving a file
keeps its images done, and changing its weights makes new ones), and of the batch grouping.
The ledger records each adapter's name, weight, path and fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import stat
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from genbatch.errors import GenbatchError
from genbatch.pipelines.model_files import hash_weights

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
SUFFIXES = (".safetensors", ".bin")
PICKLE_SUFFIX = ".bin"  # torch.save's pickle: loading one can run code, so it needs --allow-pickle


class LoraError(GenbatchError):
    """A LoRA that cannot be found, read or applied."""


@dataclass(frozen=True)
class LoraSpec:
    """One adapter as written: its path or id, and its weight (1.0 when left out)."""

    source: str
    weight: float = 1.0


class LoraRef(NamedTuple):
    """One adapter of a job's set, resolved to a file."""

    name: str  # the file's stem, as A1111 names it in <lora:name:weight>
    weight: float
    path: str
    fingerprint: str


# --- parsing ---------------------------------------------------------------------------------


def parse_specs(text: str | Iterable[str]) -> tuple[LoraSpec, ...]:
    """``"a.safetensors:0.8; b"`` (or the values of repeated ``--lora`` options) -> specs;
    ``"none"`` or empty -> ``()``. Raises ValueError saying what is accepted."""
    parts = [text] if isinstance(text, str) else list(text)
    items = [item.strip() for part in parts for item in str(part).split(";")]
    items = [item for item in items if item]
    if items == ["none"] or not items:
        return ()
    specs = tuple(_parse_one(item) for item in items)
    sources = [s.source for s in specs]
    repeated = sorted({s for s in sources if sources.count(s) > 1})
    if repeated:
        raise ValueError(f"LoRA {repeated[0]!r} is given twice in one set; give it once, with one weight")
    return specs


def _parse_one(item: str) -> LoraSpec:
    source, sep, weight_text = item.rpartition(":")
    if sep and source and not source.endswith(("\\", "/")) and not (len(source) == 1 and source.isalpha()):
        try:
            weight = float(weight_text)
        except ValueError:
            weight = None
        if weight is not None:
            if weight != weight or abs(weight) == float("inf"):
                raise ValueError(f"LoRA {item!r}: the weight must be a finite number")
            return LoraSpec(source.strip(), weight)
    if item.lower() == "none":
        raise ValueError("'none' means no LoRA and cannot be combined with others in one set")
    return LoraSpec(item.strip(), 1.0)


# --- resolving to files ------------------------------------------------------------------------


def resolve_set(
    specs: tuple[LoraSpec, ...], base: Path | None = None, *, allow_pickle: bool = False
) -> tuple[LoraRef, ...]:
    """The files of a parsed set; a relative path is looked up from the working folder, then
    from ``base`` (the manifest's folder). A pickled (.bin) LoRA is refused unless
    ``allow_pickle`` (--allow-pickle). Raises :class:`LoraError`."""
    refs = []
    for spec in specs:
        name, path, fingerprint = _resolve_file(spec.source, str(base) if base else None, os.getcwd(), allow_pickle)
        refs.append(LoraRef(name, spec.weight, path, fingerprint))
    return tuple(refs)


@cache
def _resolve_file(source: str, base: str | None, cwd: str, allow_pickle: bool) -> tuple[str, str, str]:
    """(name, path, fingerprint) of one adapter, found once per process (per working folder)."""
    path = Path(source).expanduser()
    candidates = [path] if path.is_absolute() else [Path(cwd) / path, *([Path(base) / path] if base else [])]
    found = next((c for c in candidates if c.exists()), None)
    name = None
    hub_id = source.count("/") == 1 and not source.startswith((".", "/", "~")) and not source.endswith(SUFFIXES)
    if found is None and hub_id:
        found, name = _hub_snapshot(source), source.split("/")[-1]
    if found is None:
        raise LoraError(
            f"LoRA {source!r}: no such file or folder (looked in {', '.join(map(str, candidates))}), "
            "and not a Hugging Face id like 'org/name'"
        )
    file = _weights_file(found, source)
    if file.suffix.lower() == PICKLE_SUFFIX and not allow_pickle:
        raise LoraError(
            f"LoRA {source!r}: {file.name} is a pickle (torch.save), which can run code when it is loaded; "
            "use the .safetensors version of this LoRA, or pass --allow-pickle to load pickles you trust"
        )
    if name is None:  # A1111 names a LoRA by its file; diffusers' default file by its folder
        name = file.resolve().parent.name if file.name == WEIGHTS_NAME else file.stem
    try:
        fingerprint = file_fingerprint(file)
    except OSError as err:
        raise LoraError(f"LoRA {source!r}: {file} cannot be read ({err.strerror or err})") from None
    return name, str(file.resolve()), fingerprint


def _kind(mode: int) -> str:
    """What a path that is neither a regular file nor a folder is, for messages."""
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((kind for test, kind in kinds if test(mode)), "a socket" if stat.S_ISSOCK(mode) else "not a file")


def _weights_file(found: Path, source: str) -> Path:
    """The weights file of what ``source`` names: itself, or the one file of a folder. Only a
    regular file is ever opened: a named pipe would block the run forever, a device never ends."""
    mode = found.stat().st_mode
    if stat.S_ISREG(mode):
        if found.suffix.lower() not in SUFFIXES:
            raise LoraError(f"LoRA {source!r}: {found.name} is not a LoRA weights file ({', '.join(SUFFIXES)})")
        return found
    if not stat.S_ISDIR(mode):
        raise LoraError(
            f"LoRA {source!r}: {found} is not a regular file ({_kind(mode)}); "
            f"expected a LoRA weights file ({', '.join(SUFFIXES)}) or a folder holding one"
        )
    if (found / WEIGHTS_NAME).is_file():
        return found / WEIGHTS_NAME
    files = sorted(p for p in found.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if len(files) == 1:
        return files[0]
    raise LoraError(
        f"LoRA {source!r}: the folder {found} holds {len(files) or 'no'} weight files"
        + (f" ({', '.join(p.name for p in files[:5])})" if files else "")
        + f"; name the file, or keep one ({WEIGHTS_NAME})"
    )


def _hub_snapshot(repo_id: str) -> Path:
    from genbatch.pipelines.hub_cache import cached_snapshot, download_command

    found = cached_snapshot(repo_id)
    if found is None:
        raise LoraError(
            f"LoRA {repo_id!r} is not a file here nor in the local Hugging Face cache, and genbatch "
            f"does not download while it runs: on a machine with network access run "
            f"`{download_command(repo_id)}`, or pass the .safetensors file"
        )
    return found


def file_fingerprint(path: Path) -> str:
    """A hash of a weights file: whole when small, else its size and first and last MiB."""
    digest = hashlib.sha256()
    hash_weights(digest, path)
    return digest.hexdigest()[:16]


# --- the forms a set takes: key, ledger, text, A1111 -----------------------------------------------


def _pairs(value: Any) -> list[tuple[str, float]]:
    """(name, weight) of a set as a job holds it (LoraRefs) or as the ledger records it (dicts)."""
    pairs = []
    for item in value or ():
        if isinstance(item, dict):
            pairs.append((str(item.get("name")), float(item.get("weight", 1.0))))
        else:
            pairs.append((item[0], float(item[1])))
    return pairs


def key_form(value: Any) -> list[list[Any]]:
    """[[fingerprint, weight], ...] of a set as a job holds it (LoraRefs) or as the ledger records it (dicts)."""
    return [
        [ref["fingerprint"], ref["weight"]] if isinstance(ref, dict) else [ref.fingerprint, ref.weight] for ref in value
    ]


def record_form(value: tuple[LoraRef, ...]) -> list[dict[str, Any]]:
    return [ref._asdict() for ref in value]


def text_form(value: Any) -> str:
    """``style:0.8; other:0.5`` (``none`` for no LoRA)."""
    pairs = _pairs(value)
    return "; ".join(f"{name}:{weight:g}" for name, weight in pairs) if pairs else "none"


def a1111_tags(value: Any) -> str:
    """``<lora:style:0.8> <lora:other:0.5>``, as A1111 appends them to the prompt."""
    return " ".join(f"<lora:{name}:{weight:g}>" for name, weight in _pairs(value))


# --- applying a set to a loaded pipeline ----------------------------------------------------------


@dataclass
class _Loaded:
    adapters: dict[str, str] = field(default_factory=dict)  # fingerprint -> adapter name
    failed: dict[str, str] = field(default_factory=dict)  # fingerprint -> why it did not load
    enabled: bool = False


_STATE: weakref.WeakKeyDictionary[Any, _Loaded] = weakref.WeakKeyDictionary()


def takes_loras(pipeline_class: str) -> bool:
    """Whether a diffusers pipeline class has a LoRA loader (``load_lora_weights``)."""
    import diffusers

    cls = getattr(diffusers, pipeline_class, None)
    return cls is not None and hasattr(cls, "load_lora_weights") and hasattr(cls, "set_adapters")


def check_model(pipeline_class: str, model_name: str) -> None:
    """Refuse, before any model loads, a model whose pipeline takes no LoRAs."""
    if not takes_loras(pipeline_class):
        raise LoraError(
            f"{model_name}: {pipeline_class} takes no LoRAs (diffusers has no LoRA loader for it); "
            "remove --lora and the lora column for this model"
        )
    try:
        import peft  # noqa: F401
    except ImportError:
        raise LoraError(
            "LoRAs need the peft package, through which diffusers loads them: "
            "pip install 'genbatch[lora]' (or pip install peft)"
        ) from None


def apply_set(pipe: Any, loras: tuple[LoraRef, ...] | None, *, allow_pickle: bool = False) -> None:
    """Make ``pipe`` run with exactly this LoRA set (None: none). Adapters load on first use
    and stay loaded; a set switch is ``set_adapters``, no set is ``disable_lora``. Files load
    as safetensors only, unless ``allow_pickle`` (--allow-pickle)."""
    state = _STATE.setdefault(pipe, _Loaded())
    if not loras:
        if state.enabled:
            pipe.disable_lora()
            state.enabled = False
        return
    if not hasattr(pipe, "load_lora_weights") or not hasattr(pipe, "set_adapters"):
        raise LoraError(f"{type(pipe).__name__} takes no LoRAs (diffusers has no LoRA loader for it)")
    for ref in loras:
        if ref.fingerprint in state.failed:
            raise LoraError(state.failed[ref.fingerprint])
        if ref.fingerprint not in state.adapters:
            adapter = f"lora_{ref.fingerprint}"
            # diffusers' own default falls back to unpickling; safetensors only, unless asked
            safe_only = {} if allow_pickle else {"use_safetensors": True}
            try:
                if not stat.S_ISREG(os.stat(ref.path).st_mode):  # replaced since it was planned
                    raise OSError(f"{ref.path} is not a regular file")
                pipe.load_lora_weights(ref.path, adapter_name=adapter, **safe_only)
            except Exception as err:
                why = f"LoRA {ref.name} ({ref.path}) did not load: {type(err).__name__}: {err}"
                state.failed[ref.fingerprint] = why
                raise LoraError(why) from err
            state.adapters[ref.fingerprint] = adapter
    if not state.enabled and state.adapters:
        pipe.enable_lora()
    state.enabled = True
    pipe.set_adapters([state.adapters[ref.fingerprint] for ref in loras], adapter_weights=[ref.weight for ref in loras])
