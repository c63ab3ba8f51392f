"""Checks of rows with images that need the pipeline a job runs on, before any model loads."""

from __future__ import annotations

import functools
import inspect


def _strength(pipeline_class: str, strength: float | None) -> float | None:
    """``strength``, or the pipeline's default where it is None; None where the pipeline takes none."""
    import diffusers

    cls = getattr(diffusers, pipeline_class, None)
    taken = inspect.signature(cls.__call__).parameters if cls is not None else {}
    if "strength" not in taken:
        return None
    if strength is not None:
        return strength
    default = taken["strength"].default
    return float(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else None


@functools.cache
def _rounds_skipped_steps_down(pipeline_class: str) -> bool:
    """Whether a pipeline's ``get_timesteps`` skips ``int(steps - steps * strength)`` steps (Flux's,
    SD3's: at few steps a strength below 1 may skip none) rather than ``steps - int(steps *
    strength)`` (SD's, SDXL's: a strength below 1 always skips one)."""
    import diffusers

    method = getattr(getattr(diffusers, pipeline_class, None), "get_timesteps", None)
    try:
        source = inspect.getsource(method) if method is not None else ""
    except (OSError, TypeError):
        return False
    return "init_timestep = min(num_inference_steps * strength" in source


@functools.cache
def redraws_all_note(pipeline_class: str, strength: float | None, steps: int) -> str | None:
    """Where an image-to-image job's strength, below 1, skips no step (the pipelines that skip
    ``int(steps - steps * strength)`` of them: :func:`_rounds_skipped_steps_down`): it starts from
    the first step, from pure noise as strength 1 does, and the input image is not used. None
    where it skips one or more."""
    strength = _strength(pipeline_class, strength)
    if strength is None or strength >= 1 or not _rounds_skipped_steps_down(pipeline_class):
        return None
    if int(steps - steps * strength) >= 1:
        return None
    enough = next(n for n in range(steps + 1, 10**6) if int(n - n * strength) >= 1)
    return (
        f"strength {strength:g} of {steps} step{'s' if steps != 1 else ''} skips no step (diffusers skips "
        f"int(steps - steps x strength) = 0), so it starts from pure noise as strength 1 does and the image is "
        f"not used: give {enough} steps or more, or a strength of at most {1 - 1 / steps:g}"
    )


@functools.cache
def denoising_problem(pipeline_class: str, strength: float | None, steps: int) -> str | None:
    """Why an image-to-image or inpainting job would run no denoising step, or None. diffusers' task
    pipelines run ``int(steps * strength)`` of the steps (``strength`` None: the pipeline's default):
    none fails its batch with an error about an empty list (SD) or "< 1 steps" (Flux, SD3)."""
    strength = _strength(pipeline_class, strength)
    if strength is None or int(steps * strength) >= 1:
        return None
    if strength <= 0:
        return "strength 0 redraws nothing: no denoising step runs; give a strength above 0"
    enough = next(n for n in range(steps + 1, 10**6) if int(n * strength) >= 1)
    return (
        f"strength {strength:g} of {steps} step{'s' if steps != 1 else ''} is no denoising step (diffusers runs "
        f"int(steps x strength) = {int(steps * strength)} of them): give {enough} steps or more, or a strength "
        f"of at least {1 / steps:g}"
    )
