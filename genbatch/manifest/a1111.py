"""AUTOMATIC1111 conventions: "prompts from file" lines, the ``parameters`` text, clip skip.

A1111's "Prompts from file or textbox" script reads a text file a line at a time: a line that
starts with ``--`` is a list of options in shell quoting (``--prompt "a cat" --steps 20``),
any other line is a prompt. This module reads such a file into genbatch's fields: ``cfg_scale``
is the guidance scale, ``sampler_name`` the scheduler, ``n_iter`` x ``batch_size`` the images
per row, ``sd_model`` the model. Options A1111 has that mean nothing here (``styles``,
``restore_faces``...) are warnings naming FILE:LINE; an unknown option or a bad value is a
problem at FILE:LINE:COL. The rules are re-implemented from their documented behaviour.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from genbatch.errors import GenbatchError, Problem
from genbatch.manifest.fields import a1111_prompt, a1111_settings

# A1111 option -> genbatch field
OPTION_FIELDS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "steps": "steps",
    "cfg_scale": "guidance_scale",
    "seed": "seed",
    "width": "width",
    "height": "height",
    "sampler_name": "scheduler",
    "sd_model": "model",
    "clip_skip": "clip_skip",
}
IMAGE_COUNT = ("n_iter", "batch_size")
# A1111 options that change nothing genbatch does (saving, face restoration, styles...).
NO_MEANING = (
    "styles",
    "subseed",
    "subseed_strength",
    "seed_resize_from_h",
    "seed_resize_from_w",
    "sampler_index",
    "restore_faces",
    "tiling",
    "do_not_save_samples",
    "do_not_save_grid",
    "outpath_samples",
    "outpath_grids",
    "prompt_for_display",
    "seed_enable_extras",
    "denoising_strength",
    "scheduler",
)
KNOWN = (*OPTION_FIELDS, *IMAGE_COUNT, *NO_MEANING)


READINGS = {
    "txt": "plain text, one prompt per line",
    "a1111": "A1111 prompts-from-file lines (--prompt ... --steps ...)",
}


def is_prompt_file(text: str) -> bool:
    """Whether a text manifest uses A1111 option lines (any line that starts with ``--``)."""
    return any(line.lstrip().startswith("--") for line in text.splitlines())


@dataclass
class PromptFile:
    header: list[str]
    records: list[tuple[int, dict[str, Any]]]
    problems: list[Problem]
    warnings: list[str] = field(default_factory=list)


def _tokens(line: str) -> list[tuple[int, str]]:
    """Shell-quoted words of a line, each with its 1-based column."""
    stream = io.StringIO(line)
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    found: list[tuple[int, str]] = []
    position = 0
    while True:
        while position < len(line) and line[position].isspace():
            position += 1
        start = position
        token = lexer.get_token()
        if token is None:
            return found
        found.append((start + 1, token))
        position = stream.tell()


def read_prompt_file(text: str, name: str, max_images: int | None = None) -> PromptFile:
    """Records (line, {field: value}) of an A1111 prompts-from-file text; values are parsed and
    checked here, so a bad one is located at its column. A line's ``--n_iter`` x ``--batch_size``
    images may be at most ``max_images`` (``--max-images-per-row``; default 10,000)."""
    if max_images is None:
        from genbatch.manifest.values import MAX_IMAGES_PER_ROW

        max_images = MAX_IMAGES_PER_ROW
    records: list[tuple[int, dict[str, Any]]] = []
    problems: list[Problem] = []
    ignored: dict[str, list[int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not line.lstrip().startswith("--"):
            records.append((number, {"prompt": line.strip()}))
            continue
        record = _option_line(line, name, number, problems, ignored, max_images)
        if record is not None:
            records.append((number, record))
    warnings = [
        f"{name}:{lines[0]}: --{option} has no meaning in genbatch and is ignored"
        + (f" (also on {len(lines) - 1} more line{'s' if len(lines) > 2 else ''})" if len(lines) > 1 else "")
        for option, lines in ignored.items()
    ]
    header = list(dict.fromkeys(["prompt", *(k for _, r in records for k in r)]))
    return PromptFile(header, records, problems, warnings)


def _option_line(
    line: str, name: str, number: int, problems: list[Problem], ignored: dict[str, list[int]], max_images: int
) -> dict[str, Any] | None:
    """A line of ``--option value`` pairs as a record; None where it has a problem (each one
    added to ``problems``). Options genbatch has no use for are noted in ``ignored``."""
    from genbatch.manifest.values import check_images_per_row, parse_value

    try:
        words = _tokens(line)
    except ValueError as err:  # an unclosed quote
        problems.append(Problem(name, number, str(len(line)), f"{err}; close the quote"))
        return None
    record: dict[str, Any] = {}
    counts: dict[str, tuple[int, int]] = {}  # --n_iter, --batch_size: (value, the option's column)
    bad = False
    i = 0
    while i < len(words):
        column, word = words[i]
        option = word[2:] if word.startswith("--") else None
        if option is None or option not in KNOWN:
            problems.append(Problem(name, number, str(column), _not_an_option(word, option)))
            return None
        if i + 1 >= len(words):
            problems.append(Problem(name, number, str(column), f"{word} has no value"))
            return None
        value_column, value = words[i + 1]
        i += 2
        try:
            if option in OPTION_FIELDS:
                target = OPTION_FIELDS[option]
                if target == "seed" and value.strip() == "-1":  # A1111: a random seed
                    continue
                record[target] = parse_value(target, value)
            elif option in IMAGE_COUNT:
                counts[option] = (parse_value("num_images", value), column)
            else:
                ignored.setdefault(option, []).append(number)
        except ValueError as err:
            problems.append(Problem(name, number, str(value_column), f"--{option}: {err}"))
            bad = True
    if bad:
        return None
    if "prompt" not in record:
        problems.append(Problem(name, number, "1", "no --prompt on this line"))
        return None
    if counts:
        images = math.prod(count for count, _ in counts.values())
        try:  # the row's images, checked here to be located at the options that ask for them
            record["num_images"] = parse_value("num_images", images)
            check_images_per_row(images, max_images)
        except ValueError as err:
            given = " x ".join(f"--{option} {count}" for option, (count, _) in counts.items())
            first = min(column for _, column in counts.values())
            problems.append(Problem(name, number, str(first), f"{given}: {err}"))
            return None
    return record


def _not_an_option(word: str, option: str | None) -> str:
    what = f"unknown option {word!r}" if option is not None else f"{word!r} is not an option"
    return (
        f"{what}; expected A1111 prompt-file options: --"
        + ", --".join((*OPTION_FIELDS, *IMAGE_COUNT))
        + " (and A1111's others, "
        "which are ignored here)"
    )


# --- the parameters text ------------------------------------------------------------------


def quote(value: Any) -> str:
    """A settings value as A1111 writes it: as is, or JSON-quoted when it holds a comma, a
    colon, a newline or starts with a quote (so it reads back whole)."""
    text = str(value)
    if any(c in text for c in ",:\n") or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


_SETTING = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse_parameters(text: str) -> dict[str, str]:
    """Read a ``parameters`` text back by A1111's documented rules: the last line holds the
    ``Label: value`` settings (a value in double quotes is JSON), the lines before it the
    prompt and, after ``Negative prompt:``, the negative prompt."""
    *head, last = text.split("\n")
    if len(_SETTING.findall(last)) < 3:  # no settings line
        head, last = head + [last], ""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in head:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    found = {"Prompt": "\n".join(prompt).strip(), "Negative prompt": "\n".join(negative).strip()}
    for label, value in _SETTING.findall(last):
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) > 1:
            try:
                value = json.loads(value)
            except ValueError:
                pass
        found[label.strip()] = value
    return found


# --- clip skip ------------------------------------------------------------------------------


def clip_skip_kwargs(pipe: Any, clip_skip: int | None) -> dict[str, Any]:
    """The pipeline argument for A1111's clip skip (1 = the last layer, 2 = the one before...),
    which diffusers counts from 0 (``clip_skip=1`` is A1111's 2); an error for a pipeline
    that takes none."""
    if not clip_skip or clip_skip <= 1:
        return {}
    if "clip_skip" not in inspect.signature(pipe.__call__).parameters:
        raise GenbatchError(f"clip_skip: {type(pipe).__name__} takes no clip skip; remove clip_skip for this model")
    for name in ("text_encoder", "text_encoder_2"):
        encoder = getattr(pipe, name, None)
        # diffusers' clip skip applies text_encoder.text_model.final_layer_norm; transformers 5
        # flattened CLIPTextModel (no .text_model). An unregistered alias keeps it working.
        if encoder is not None and not hasattr(encoder, "text_model") and hasattr(encoder, "final_layer_norm"):
            object.__setattr__(encoder, "text_model", encoder)
    return {"clip_skip": clip_skip - 1}


_MODEL_ORDER = 5  # A1111 writes the model after Size


def parameters_text(meta: dict[str, Any]) -> str:
    """The ``parameters`` text AUTOMATIC1111-style tools read back: the prompt, the negative
    prompt, then one line of ``Label: value`` settings in A1111's order, each value quoted as
    A1111 quotes it (:func:`quote`). ``Model hash`` is A1111's (the first 10 hex digits
    of a checkpoint file's sha256) where the model is one file, else genbatch's fingerprint."""
    lines = [a1111_prompt(meta)]
    if meta.get("negative_prompt"):
        lines.append(f"Negative prompt: {meta['negative_prompt']}")
    settings = a1111_settings(meta)
    at = sum(1 for order, *_ in settings if order <= _MODEL_ORDER)
    model = [
        (_MODEL_ORDER, "Model hash", (meta.get("model_hash") or meta["model_fingerprint"])[:10]),
        (_MODEL_ORDER, "Model", meta["model"]),
    ]
    if meta.get("vae"):
        model.append((_MODEL_ORDER, "VAE", meta["vae"]))
    ordered = settings[:at] + model + settings[at:] + [(99, "Backend", meta["backend"])]
    lines.append(", ".join(f"{label}: {quote(text)}" for _, label, text in ordered))
    return "\n".join(lines)
