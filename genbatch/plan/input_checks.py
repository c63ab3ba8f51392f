"""Checks of rows with images that need the pipeline a job runs on, before any model loads."""

from __future__ import annotations

import functools
import inspect


@functools.cache
def denoising_problem(pipeline_class: str, strength: float | None, steps: int) -> str | None:
    """Why an image-to-image or inpainting job would run no denoising step, or None. diffusers' task
    pipelines run ``int(steps * strength)`` of the steps (``strength`` None: the pipeline's default):
    none fails its batch with an error about an empty list (SD) or "< 1 steps" (Flux, SD3)."""
    import diffusers

    cls = getattr(diffusers, pipeline_class, None)
    taken = inspect.signature(cls.__call__).parameters if cls is not None else {}
    if "strength" not in taken:
        return None
    if strength is None:
        default = taken["strength"].default
        if not isinstance(default, (int, float)) or isinstance(default, bool):
            return None
        strength = float(default)
    if int(steps * strength) >= 1:
        return None
    if strength <= 0:
        return "strength 0 redraws nothing: no denoising step runs; give a strength above 0"
    enough = next(n for n in range(steps + 1, 10**6) if int(n * strength) >= 1)
    return (
        f"strength {strength:g} of {steps} step{'s' if steps != 1 else ''} is no denoising step (diffusers runs "
        f"int(steps x strength) = {int(steps * strength)} of them): give {enough} steps or more, or a strength "
        f"of at least {1 / steps:g}"
    )
