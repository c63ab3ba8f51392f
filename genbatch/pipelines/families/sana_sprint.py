"""SANA-Sprint: a Sana distilled to one to four steps (sCM, ``SCMScheduler``); embedded guidance,
no negative prompt.

Its pipeline bins sizes to its aspect-ratio table unless told not to (genbatch turns binning
off, so sizes are exactly as asked). Its two-step default runs at the timesteps
``max_timesteps`` (pi/2) and ``intermediate_timesteps`` (1.3); any other step count needs
``intermediate_timesteps=None`` (steps evenly spaced from pi/2 to 0), or plain diffusers
raises a ValueError: :func:`step_arguments` says what a job's call needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.families.base import Family

STEPS = range(1, 5)  # what the released models are distilled for

SANA_SPRINT = Family(
    "sana-sprint",
    "SANA-Sprint",
    ("SanaSprintPipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=2,
    guidance_scale=4.5,
    size=1024,
    negative_prompt=False,
    max_sequence_length=True,
    guidance="distilled",
    fixed={"use_resolution_binning": False},
    guidance_meaning="embedded guidance of the guidance-distilled model (one pass per step); 4.5 by default",
    negative_meaning="refused: the model takes none",
    notes=(
        "1 to 4 steps (2 by default, at the timesteps the model card gives; other counts evenly "
        "spaced); resolution binning off: sizes exactly as asked"
    ),
    steps_problem="families.sana_sprint:steps_problem",
    call_args="families.sana_sprint:call_args",
)


def step_arguments(steps: int) -> dict[str, Any]:
    """What a call of ``steps`` steps needs besides ``num_inference_steps``: nothing at the
    pipeline's two; ``intermediate_timesteps=None`` at any other count, which plain diffusers
    refuses to run with the two-step default (1.3)."""
    return {} if steps == 2 else {"intermediate_timesteps": None}


def steps_problem(path: Path, steps: int) -> str | None:
    """Why a SANA-Sprint job of ``steps`` steps should not run, or None (1 to 4)."""
    if steps in STEPS:
        return None
    return (
        f"SANA-Sprint is distilled for 1 to 4 steps (2 by default), not {steps}; set steps from 1 to 4 for this model"
    )


def call_args(path: Path, job: Any) -> dict[str, Any]:
    """A job's call needs :func:`step_arguments` (recorded with it, so a ledger line replays)."""
    return step_arguments(int(job.steps))
