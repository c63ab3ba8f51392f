"""Scheduler names: diffusers class names and the AUTOMATIC1111 sampler names people know.

``--scheduler`` and a ``sampler``/``scheduler`` column take either. An A1111 name is a
diffusers scheduler class plus options (``"DPM++ 2M Karras"`` is
``DPMSolverMultistepScheduler`` with ``use_karras_sigmas=True``), as diffusers' scheduler
overview documents it. A job records the class in ``scheduler`` and the options in
``scheduler_options`` (compact JSON, or ``None`` where there are none), so both are part of
the job key, while a plain class name keeps the key it always had. The A1111 ``parameters``
text names the sampler by its A1111 name where one exists.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbatch.errors import GenbatchError, ModelError
from genbatch.pipelines.model_files import keeps_own_scheduler


@dataclass(frozen=True)
class Sampler:
    name: str  # as A1111 spells it
    scheduler: str  # the diffusers class
    options: tuple[tuple[str, Any], ...] = ()


_KARRAS = (("use_karras_sigmas", True),)
_SDE = (("algorithm_type", "sde-dpmsolver++"),)

SAMPLERS: tuple[Sampler, ...] = (
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler"),
    Sampler("DPM++ 2M Karras", "DPMSolverMultistepScheduler", _KARRAS),
    Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _SDE),
    Sampler("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", _SDE + _KARRAS),
    Sampler("DPM++ SDE", "DPMSolverSinglestepScheduler"),
    Sampler("DPM++ SDE Karras", "DPMSolverSinglestepScheduler", _KARRAS),
    Sampler("DPM2", "KDPM2DiscreteScheduler"),
    Sampler("DPM2 Karras", "KDPM2DiscreteScheduler", _KARRAS),
    Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler"),
    Sampler("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", _KARRAS),
    Sampler("Euler", "EulerDiscreteScheduler"),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler"),
    Sampler("Heun", "HeunDiscreteScheduler"),
    Sampler("LMS", "LMSDiscreteScheduler"),
    Sampler("LMS Karras", "LMSDiscreteScheduler", _KARRAS),
    Sampler("DDIM", "DDIMScheduler"),
    Sampler("DDPM", "DDPMScheduler"),
    Sampler("PLMS", "PNDMScheduler"),
    Sampler("UniPC", "UniPCMultistepScheduler"),
    Sampler("LCM", "LCMScheduler"),
    Sampler("DEIS", "DEISMultistepScheduler"),
)


def _fold(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())


_BY_NAME: dict[str, Sampler] = {_fold(s.name): s for s in SAMPLERS}
# A1111 also writes "Euler a" as k_euler_a in old prompt files; the k_ names fold onto these.
_BY_NAME.update({_fold("k " + s.name.replace("++", "pp")): s for s in SAMPLERS})


def options_text(options: tuple[tuple[str, Any], ...] | dict[str, Any]) -> str | None:
    """Scheduler options as the job records them: compact sorted JSON, or None for none."""
    items = dict(options)
    return json.dumps(items, sort_keys=True, separators=(",", ":")) if items else None


# (class, options) -> its A1111 name; the first listed name wins.
_BY_CLASS: dict[tuple[str, str | None], Sampler] = {}
for _s in reversed(SAMPLERS):
    _BY_CLASS[(_s.scheduler, options_text(_s.options))] = _s


def names() -> list[str]:
    return [s.name for s in SAMPLERS]


def accepted() -> str:
    return (
        "an A1111 sampler name (" + ", ".join(names()) + ") or a diffusers scheduler class name, "
        "e.g. EulerDiscreteScheduler"
    )


def parse_scheduler(value: Any, what: str = "scheduler") -> str:
    """A manifest or option value -> its canonical spelling: an A1111 name as A1111 writes it,
    a class name as given, or ``default``. Raises ValueError naming what is accepted."""
    text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    found = _BY_NAME.get(_fold(text))
    if found is not None:
        return found.name
    if text == "default" or (text.isidentifier() and text[:1].isupper() and text.endswith(("Scheduler", "Solver"))):
        return text
    raise ValueError(f"{what} {value!r} is not a known sampler; expected {accepted()}")


def resolve(name: str | None, own: str | None) -> tuple[str, str | None]:
    """A requested name (or None: the model's own) -> (diffusers class or "default", options text)."""
    if not name or name == "default":
        return own or "default", None
    found = _BY_NAME.get(_fold(name))
    if found is not None:
        return found.scheduler, options_text(found.options)
    return name, None


def a1111_name(scheduler: str, options: str | None) -> str:
    """The A1111 name of a scheduler with its options, else the class name (and options)."""
    found = _BY_CLASS.get((scheduler, options))
    if found is not None:
        return found.name
    return f"{scheduler} {options}" if options else scheduler


def overrides(options: str | None) -> dict[str, Any]:
    return json.loads(options) if options else {}


def scheduler_choice(current: Any, name: str | None, options: str | None = None) -> tuple[Any, dict[str, Any]]:
    """What a backend builds for a requested scheduler: ``(class, config overrides)``, where
    ``current`` is the model's own scheduler. ``name`` is a class name or an A1111 name;
    ``options`` (JSON text) adds to what the A1111 name implies. The class is ``current``'s own
    when the name keeps it. Raises GenbatchError for a name diffusers does not have."""
    import diffusers

    own = type(current).__name__
    cls_name, implied = resolve(name, own)
    extra = {**overrides(implied), **overrides(options)}
    if cls_name in ("default", own):
        return type(current), extra
    cls = getattr(diffusers, cls_name, None)
    if cls is None or not hasattr(cls, "from_config"):
        compatible = sorted(c.__name__ for c in getattr(current, "compatibles", []))
        raise GenbatchError(
            f"--scheduler {name!r}: not a diffusers scheduler; this model accepts: "
            + ", ".join(compatible)
            + "; or an A1111 sampler name: "
            + ", ".join(names())
        )
    missing = [b for b in getattr(cls, "_backends", []) if b != "torch" and not _installed(b)]
    if missing:  # diffusers' placeholder for a scheduler whose package is not installed
        raise GenbatchError(
            f"--scheduler {name} needs the Python package {missing[0]}, which is not installed: "
            f"pip install {missing[0]}"
        )
    return cls, extra


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def build(current: Any, name: str | None, options: str | None = None) -> Any:
    """``current`` itself when the request keeps it unchanged, else the scheduler asked for,
    built from ``current``'s config."""
    cls, extra = scheduler_choice(current, name, options)
    if cls is type(current) and not extra:
        return current
    return cls.from_config(current.config, **extra)


class SchedulerCache:
    """One scheduler object per (name, options) a run's batches ask for, built from the
    model's own; a backend swaps its pipeline's scheduler per batch with it."""

    def __init__(self, own: Any):
        self.own = own
        self._built: dict[tuple[str | None, str | None], Any] = {}

    def get(self, name: str | None, options: str | None = None) -> Any:
        key = (name, options)
        if key not in self._built:
            self._built[key] = build(self.own, name, options)
        return self._built[key]


def swap_scheduler(current: Any, name: str | None) -> Any:
    """The pipeline's scheduler, or another one (a diffusers class name or an A1111 sampler
    name, with its options: genbatch.pipelines.samplers) built from its config."""
    if keeps_own_scheduler(name, type(current).__name__):
        return current
    return build(current, name)


def check_own_timesteps(own: Any, name: str | None, defaults: dict[str, Any], path: Path) -> None:
    """A model's own timesteps (genbatch.json) are used with its own scheduler (``own``, before
    any --scheduler swap), which must then take a list of timesteps."""
    if not defaults.get("timesteps") or not keeps_own_scheduler(name, type(own).__name__):
        return
    if "timesteps" not in inspect.signature(own.set_timesteps).parameters:
        raise ModelError(
            f'{path / "genbatch.json"}: "timesteps" needs a scheduler that takes a list of timesteps, '
            f"and {type(own).__name__} does not (DPMSolverMultistepScheduler, EulerDiscreteScheduler "
            'and DDPMScheduler do); change the scheduler or remove "timesteps"'
        )
