"""Does the spacing of the sampler's steps matter? Adherence of a model on held-out
captions with DPM-Solver++ steps spaced in different ways, same seeds and guidance.

    python training/experiments/sampler_spacing.py --n 128
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import evaluate_shapes as ev  # noqa: E402
from diffusers import DPMSolverMultistepScheduler  # noqa: E402

# (label, scheduler options, explicit timesteps or None for 10 steps of that spacing)
SPACINGS = [
    ("default (linspace)", {}, None),
    ("trailing", {"timestep_spacing": "trailing"}, None),
    ("uniform in log-SNR", {"use_lu_lambdas": True}, None),
    # (main adds the model's own timesteps from its genbatch.json: for shapes, ten bunched
    # where layout and shape are decided, t > 850 on the cosine schedule)
    (
        "20 steps, bunched high",
        {},
        [999, 980, 960, 943, 925, 908, 890, 873, 855, 835, 815, 790, 760, 725, 680, 620, 550, 450, 330, 180],
    ),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ev.MODEL)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe, defaults = ev.load(args.model)
    base = pipe.scheduler.config
    own = ev.sampling(defaults, defaults["steps"])
    spacings = SPACINGS + ([(f"{len(own)} steps, the model's own timesteps", {}, own)] if isinstance(own, list) else [])
    for label, options, timesteps in spacings:
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(base, **options)
        a = ev.adherence(pipe, args.n, timesteps or defaults["steps"], defaults["guidance_scale"])
        print(f"{label}: {ev.fmt(a['model'])}", flush=True)


if __name__ == "__main__":
    main()
