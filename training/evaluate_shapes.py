"""Measure the shapes model: prompt adherence, diversity and speed.

    python training/evaluate_shapes.py                      # shipped model, its defaults
    python training/evaluate_shapes.py --n 400 --guidance 1 2 3 --json out.json

1. Adherence: n held-out captions (shapes_data.heldout_set, never sampled in training),
   one image each (seed = index), generated through StableDiffusionPipeline with the
   per-image initial latents genbatch uses; each image is scored by checker.score.
   The checker's own score on the ground-truth renders of the same specs is printed
   beside it (it should be 100%).
2. Diversity: for each of `--div-prompts` held-out captions, `--div-seeds` images;
   the mean pairwise mean-absolute pixel difference (0..1) between images of one
   prompt, against the same measure for the data's own renders of the same captions
   with re-sampled layouts.
3. Speed: seconds per image at batch 16 on the CPU with 2 threads (median of 3 runs
   after a warm-up), at the model's default steps and guidance.
4. With --noise-levels: the one-step denoising profile (denoising_profile), which
   says at which noise level the model stops being able to supply what is asked, and
   the spread across seeds of what it predicts from pure noise (noise_spread), which
   says how much of a layout it reads into the noise.
5. With --shape-sweep: one large red object of each shape for the same seeds, and the
   shapes the checker saw (does the shape word or the seed decide the geometry?).
6. With --caption-swap: large single objects noised to each given step and denoised
   in one step with their caption and with the shape word swapped (caption_swap): does
   the shape of the prediction follow the noisy latents or the word?
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checker as ck  # noqa: E402
import semantic_latents as sl  # noqa: E402
import shapes_data as sd  # noqa: E402
from diffusers import DDPMScheduler, StableDiffusionPipeline  # noqa: E402

from genbatch.backends.latents import initial_latents  # noqa: E402
from genbatch.pipelines.families import read_defaults  # noqa: E402

MODEL = Path(__file__).resolve().parent.parent / "genbatch" / "pipelines" / "models" / "shapes"


def load(model: Path, device: str = "cpu") -> tuple[StableDiffusionPipeline, dict]:
    """The pipeline, and the defaults genbatch reads from its genbatch.json."""
    pipe = StableDiffusionPipeline.from_pretrained(model, local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, read_defaults(model)


def sampling(defaults: dict, steps: int) -> int | list[int]:
    """What a genbatch run takes at `steps`: the model's own timesteps for that step count
    (genbatch.json "timesteps"), else the step count for the scheduler to space."""
    own = defaults.get("timesteps", {}).get(steps)
    return list(own) if own else steps


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, h, w, 3) -> float (n, 3, h, w) in [-1, 1], the VAE's input range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(decoded: torch.Tensor) -> np.ndarray:
    """The VAE's output (n, 3, h, w) in [-1, 1] -> uint8 (n, h, w, 3)."""
    return ((decoded.clamp(-1, 1).permute(0, 2, 3, 1).cpu().numpy() + 1) * 127.5).round().astype(np.uint8)


Steps = int | list[int]  # a step count for the scheduler to space, or the timesteps themselves


def generate(
    pipe,
    prompts: list[str],
    seeds: list[int],
    steps: Steps,
    guidance: float,
    size: int = 64,
    batch_size: int = 16,
    latents: bool = False,
) -> np.ndarray | torch.Tensor:
    """uint8 images (n, size, size, 3), batch by batch; latents=True: the final latents
    (unscaled) instead of decoding them."""
    out = []
    when = {"timesteps": steps} if isinstance(steps, list) else {"num_inference_steps": steps}
    for i in range(0, len(prompts), batch_size):
        p, s = prompts[i : i + batch_size], seeds[i : i + batch_size]
        f = pipe.vae_scale_factor  # genbatch's own per-image latents, as a run draws them
        lat = initial_latents(s, pipe.unet.config.in_channels, size // f, size // f).to(pipe.device)
        images = pipe(
            prompt=p,
            negative_prompt=[""] * len(p),
            guidance_scale=guidance,
            latents=lat,
            height=size,
            width=size,
            output_type="latent" if latents else "np",
            **when,
        ).images
        out.append(
            images / pipe.vae.config.scaling_factor
            if latents
            else (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
        )
    return torch.cat(out) if latents else np.concatenate(out)


@torch.no_grad()
def shape_reading(pipe, n: int, steps: Steps, guidance: float) -> float:
    """Semantic latents only: of the held-out captions that ask for one shape (single and
    count), the share whose generated latents, averaged over the latent pixels an object's
    box covers, have the asked shape's one-hot highest. Set against the checker's shape
    score it says whether a wrong shape comes from the UNet (a wrong one-hot) or from the
    decoder (a right one-hot, drawn wrong)."""
    pairs = [(i, s, c) for i, (s, c) in enumerate(sd.heldout_set(n)) if s["kind"] != "relation"]
    z = generate(pipe, [c for _, _, c in pairs], [i for i, _, _ in pairs], steps, guidance, latents=True)
    right = []
    for zz, (_, spec, _) in zip(z, pairs):
        covered = zz[sl.COVERAGE[0]] > -1 + 0.5  # a quarter or more of the patch
        votes = zz[sl.SHAPE[0]][:, covered].mean(1) if covered.any() else None
        right.append(votes is not None and sd.SHAPES[int(votes.argmax())] == spec["objects"][0]["shape"])
    return float(np.mean(right))


def adherence(pipe, n: int, steps: Steps, guidance: float) -> dict:
    pairs = sd.heldout_set(n)
    specs, prompts = [p[0] for p in pairs], [p[1] for p in pairs]
    images = generate(pipe, prompts, list(range(n)), steps, guidance)
    scores = [ck.score(im, s) for im, s in zip(images, specs)]
    truth = [ck.score(sd.render(s), s) for s in specs]
    # one held-out caption in five leaves the background out (and asks for plain grey): a
    # form the model sees less often in training (diffusion.say_background), scored apart too
    by_phrase = {
        form: ck.summarize([sc for sc, sp in zip(scores, specs) if sp.get("say_background", True) == said])
        for form, said in (("named", True), ("left out", False))
    }
    return {
        "model": ck.summarize(scores),
        "ground_truth": ck.summarize(truth),
        "by_background_phrase": by_phrase,
        "images": images,
        "prompts": prompts,
    }


def semantic(pipe) -> bool:
    """Whether the model's VAE draws semantic latents (training/semantic_latents.py)."""
    return pipe.vae.config.latent_channels == sl.CHANNELS


def encoded(pipe, specs: list[dict]) -> torch.Tensor:
    """The ground-truth renders of specs encoded by the pipeline's VAE (means, unscaled)."""
    images = np.stack([sd.render(s) for s in specs])
    return pipe.vae.encode(to_tensor(images).to(pipe.device)).latent_dist.mean


def true_latents(pipe, specs: list[dict]) -> torch.Tensor:
    """What the UNet learnt to make for these scenes (unscaled): their semantic latents,
    or for a learned autoencoder its encoding of their renders."""
    return sl.of_specs(specs).to(pipe.device) if semantic(pipe) else encoded(pipe, specs)


def encoded_truth(pipe, n: int) -> tuple[list[dict], list[str], torch.Tensor]:
    """The first n held-out (spec, caption) pairs and their true latents."""
    pairs = sd.heldout_set(n)
    specs = [s for s, _ in pairs]
    return specs, [c for _, c in pairs], true_latents(pipe, specs)


@torch.no_grad()
def vae_ceiling(pipe, n: int, latents=true_latents) -> dict:
    """The checker on held-out ground truth decoded from its true latents: the best
    adherence any UNet could reach through this autoencoder. (latents=encoded: through
    the encoder and back, which for a semantic VAE says how well its encoder reads.)"""
    specs = [s for s, _ in sd.heldout_set(n)]
    rec = to_uint8(pipe.vae.decode(latents(pipe, specs)).sample)
    return ck.summarize([ck.score(im, s) for im, s in zip(rec, specs)])


@torch.no_grad()
def denoising_profile(pipe, n: int, timesteps: list[int], batch_size: int = 32) -> dict[int, dict]:
    """Where does the model lose what a caption asks for? Held-out ground truth is noised
    to each step t, the UNet predicts the clean latents in one step (with the caption,
    no guidance), and the decoded prediction is scored. High scores at t mean the model
    keeps what the noisy latents still hold there; low ones, that it cannot yet make it."""
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    specs, prompts, x0 = encoded_truth(pipe, n)
    cond = pipe.encode_prompt(prompts, pipe.device, 1, False)[0]
    out = {}
    for t in timesteps:
        images = one_step_images(pipe, noise_sched, x0, t, cond, batch_size)
        out[t] = {
            "alpha_bar": float(noise_sched.alphas_cumprod[t]),
            **ck.summarize([ck.score(im, sp) for im, sp in zip(images, specs)]),
        }
    return out


def one_step_images(
    pipe, noise_sched: DDPMScheduler, x0: torch.Tensor, t: int, cond: torch.Tensor, batch_size: int = 32
) -> np.ndarray:
    """Latents x0 (unscaled VAE means) noised to step t (fixed noise), denoised by the UNet
    in one step with `cond`, decoded."""
    vae = pipe.vae
    x0 = x0 * vae.config.scaling_factor
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(pipe.device)
    xt = noise_sched.add_noise(x0, noise, torch.full((len(x0),), t, device=pipe.device))
    clean = predict_clean(pipe, noise_sched, xt, t, cond, batch_size)
    return to_uint8(vae.decode(clean / vae.config.scaling_factor).sample)


@torch.no_grad()
def caption_swap(pipe, n: int, timesteps: list[int]) -> dict[int, dict[str, float]]:
    """Does the UNet take an object's shape from the caption or from the noisy latents?
    n scenes of one large object (the five shapes in turn), noised to each step t and
    denoised in one step twice: with their own caption, and with one whose shape word
    names another shape. For each, the share of predictions that show the scene's own
    shape, and (swapped caption) the share that show the swapped word's shape."""
    rng = random.Random(5)
    specs, swapped = [], []
    for i in range(n):
        shape = sd.SHAPES[i % len(sd.SHAPES)]
        other = rng.choice([s for s in sd.SHAPES if s != shape])
        bg = rng.choice(list(sd.COLORS))
        color = rng.choice([c for c in sd.COLORS if c != bg])
        box = [*sd.place(rng, side := sd.SIZES["large"]), side]
        specs.append(sd.single_spec(bg, color, shape, "large", box))
        swapped.append(sd.single_spec(bg, color, other, "large", box))
    x0 = true_latents(pipe, specs)
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)

    def shares(images, against):
        return float(np.mean([ck.score(im, sp)["shape"] for im, sp in zip(images, against)]))

    conds = [pipe.encode_prompt([sd.caption(s) for s in ss], pipe.device, 1, False)[0] for ss in (specs, swapped)]
    out = {}
    for t in timesteps:
        own, other = (one_step_images(pipe, noise_sched, x0, t, cond) for cond in conds)
        out[t] = {
            "alpha_bar": float(noise_sched.alphas_cumprod[t]),
            "own_caption_own_shape": shares(own, specs),
            "swapped_caption_own_shape": shares(other, specs),
            "swapped_caption_swapped_shape": shares(other, swapped),
        }
    return out


def predict_clean(
    pipe, noise_sched: DDPMScheduler, xt: torch.Tensor, t: int, cond: torch.Tensor, batch_size: int = 32
) -> torch.Tensor:
    """The UNet's one-step estimate of the clean (scaled) latents from xt at step t."""
    tt = torch.full((len(xt),), t, device=xt.device)
    pred = torch.cat(
        [
            pipe.unet(xt[i : i + batch_size], tt[i : i + batch_size], cond[i : i + batch_size]).sample
            for i in range(0, len(xt), batch_size)
        ]
    )
    acp = noise_sched.alphas_cumprod[t]
    a, s = acp.sqrt(), (1 - acp).sqrt()
    return a * xt - s * pred if noise_sched.config.prediction_type == "v_prediction" else (xt - s * pred) / a


@torch.no_grad()
def noise_spread(pipe, n_prompts: int, n_seeds: int) -> float:
    """How much layout does the model make up from pure noise? For each held-out caption,
    the clean latents it predicts from n_seeds pure-noise inputs at the last training
    step; the mean standard deviation across seeds (in units of the latents' own std).
    The right answer there is the same for every seed (the noise holds no layout yet): a
    large spread means the model reads a layout into the noise, and seeds then decide it."""
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    t = noise_sched.config.num_train_timesteps - 1
    f, c = pipe.vae_scale_factor, pipe.unet.config.in_channels
    spreads = []
    for _, prompt in sd.heldout_set(n_prompts, seed=99):
        cond = pipe.encode_prompt([prompt] * n_seeds, pipe.device, 1, False)[0]
        xt = initial_latents([1000 + k for k in range(n_seeds)], c, 64 // f, 64 // f).to(pipe.device)
        spreads.append(predict_clean(pipe, noise_sched, xt, t, cond).std(dim=0).mean().item())
    return statistics.mean(spreads)


def shape_sweep(pipe, n_seeds: int, steps: Steps, guidance: float) -> tuple[dict[str, dict[str, int]], np.ndarray]:
    """`a large red {shape} on a white background` for every shape word and the same
    n_seeds seeds: for each asked shape, how often the checker saw each shape (its
    largest object's; "none" when it found no object). A model that follows the shape
    word fills the diagonal; one whose geometry comes from the seed gives every row the
    same counts. Also returns the images, a row per shape word."""
    prompts = [f"a large red {shape} on a white background" for shape in sd.SHAPES for _ in range(n_seeds)]
    images = generate(pipe, prompts, list(range(n_seeds)) * len(sd.SHAPES), steps, guidance)
    seen = [max(blobs, key=lambda b: b.area).shape if (blobs := ck.analyse(im)[1]) else "none" for im in images]
    out = {}
    for i, shape in enumerate(sd.SHAPES):
        row = seen[i * n_seeds : (i + 1) * n_seeds]
        out[shape] = {s: row.count(s) for s in (*sd.SHAPES, "none") if row.count(s)}
    return out, images


def mean_pairwise(images: np.ndarray) -> float:
    x = images.astype(np.float32) / 255.0
    return float(np.mean([np.abs(a - b).mean() for a, b in itertools.combinations(x, 2)]))


def diversity(pipe, n_prompts: int, n_seeds: int, steps: Steps, guidance: float) -> dict:
    pairs = sd.heldout_set(n_prompts, seed=99)
    rng = random.Random(7)
    model, data = [], []
    for spec, prompt in pairs:
        seeds = [1000 + k for k in range(n_seeds)]
        model.append(mean_pairwise(generate(pipe, [prompt] * n_seeds, seeds, steps, guidance)))
        data.append(mean_pairwise(np.stack([sd.render(sd.resample_layout(spec, rng)) for _ in range(n_seeds)])))
    return {"model": statistics.mean(model), "data": statistics.mean(data), "prompts": n_prompts, "seeds": n_seeds}


def speed(pipe, steps: Steps, guidance: float, batch: int = 16, repeats: int = 3) -> float:
    prompts = [c for _, c in sd.heldout_set(batch, seed=5)]
    generate(pipe, prompts, list(range(batch)), steps, guidance, batch_size=batch)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        generate(pipe, prompts, list(range(batch)), steps, guidance, batch_size=batch)
        times.append((time.perf_counter() - t) / batch)
    return statistics.median(times)


def contact_sheet(images: np.ndarray, path: Path, cols: int = 16, scale: int = 2) -> None:
    from PIL import Image

    rows = -(-len(images) // cols)
    h, w = images.shape[1:3]
    sheet = np.full((rows * (h + 2), cols * (w + 2), 3), 128, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = im
    # 64 palette colours: the scenes are flat colours, and the sheets are small enough to commit
    Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST).quantize(64).save(
        path, optimize=True
    )


def fmt(summary: dict) -> str:
    return "  ".join(f"{k} {v['accuracy']:.1%} (n={v['n']})" for k, v in summary.items() if v["accuracy"] is not None)


def _cells(summary: dict, cats: tuple[str, ...]) -> str:
    """Accuracy per category as Markdown cells ("–" where no image asks for it)."""
    return " | ".join(f"{summary[c]['accuracy']:.1%}" if summary[c]["accuracy"] is not None else "–" for c in cats)


def markdown(results: list[dict]) -> str:
    """The figures as a Markdown table (one row per steps/guidance setting)."""
    cats = ("color", "shape", "relation", "count", "background", "size")
    head = "| steps | guidance | " + " | ".join(cats) + " | diversity (model / data) | s/image, batch 16 |"
    lines = [head, "|" + " --- |" * (len(cats) + 4)]
    for r in results:
        div = r.get("diversity")
        div = f"{div['model']:.3f} / {div['data']:.3f}" if div else "–"
        sp = r.get("seconds_per_image_batch16")
        lines.append(
            f"| {r['steps']} | {r['guidance_scale']} | {_cells(r['adherence'], cats)}"
            f" | {div} | {f'{sp:.3f}' if sp else '–'} |"
        )
    first = results[0]
    for key, title in (
        ("vae_ceiling", "VAE ceiling (ground truth decoded from its true latents)"),
        ("checker_on_ground_truth", "checker on the ground-truth renders"),
    ):
        lines.append(f"| {title} | | {_cells(first[key], cats)} | | |")
    n = {c: first["adherence"][c]["n"] for c in cats}
    lines.append("")
    lines.append("Images per category: " + ", ".join(f"{c} {v}" for c, v in n.items()) + ".")
    lines += [
        "",
        f"Split by whether the caption names the background ({first['steps']} steps, "
        f"guidance {first['guidance_scale']}):",
        "",
        "| background phrase | n | " + " | ".join(cats) + " |",
        "|" + " --- |" * (len(cats) + 2),
    ]
    for form, summary in first["adherence_by_background_phrase"].items():
        lines.append(f"| {form} | {summary['color']['n']} | {_cells(summary, cats)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--n", type=int, default=400, help="held-out captions to score")
    ap.add_argument("--steps", type=int, nargs="*", help="default: the model's genbatch.json")
    ap.add_argument("--guidance", type=float, nargs="*", help="default: the model's genbatch.json")
    ap.add_argument("--div-prompts", type=int, default=16)
    ap.add_argument("--div-seeds", type=int, default=8)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--noise-levels",
        type=int,
        nargs="*",
        default=[],
        metavar="T",
        help="also print the one-step denoising profile at these timesteps",
    )
    ap.add_argument(
        "--shape-sweep",
        type=int,
        default=0,
        metavar="SEEDS",
        help="also draw one large red object of every shape with these many seeds and print what the checker saw",
    )
    ap.add_argument(
        "--caption-swap",
        type=int,
        nargs="*",
        default=[],
        metavar="T",
        help="also print, at these timesteps, whether one-step predictions take "
        "their shape from the noisy latents or from a swapped shape word",
    )
    ap.add_argument(
        "--sheet",
        type=Path,
        help="write a contact sheet of the first 64 images (and one of the shape sweep, NAME-shape-sweep.png)",
    )
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--markdown", type=Path, help="write the figures as a Markdown table here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe, defaults = load(args.model, args.device)
    ceiling = vae_ceiling(pipe, args.n)
    print(f"VAE ceiling (ground truth decoded from its true latents): {fmt(ceiling)}", flush=True)
    if semantic(pipe):
        print(
            f"VAE encoder round trip (ground truth encoded, decoded): {fmt(vae_ceiling(pipe, args.n, encoded))}",
            flush=True,
        )
    results = []
    for steps in args.steps or [defaults["steps"]]:
        taken = sampling(defaults, steps)
        for g in args.guidance or [defaults["guidance_scale"]]:
            t = time.time()
            a = adherence(pipe, args.n, taken, g)
            row = {
                "steps": steps,
                "timesteps": taken if isinstance(taken, list) else None,
                "guidance_scale": g,
                "adherence": a["model"],
                "adherence_by_background_phrase": a["by_background_phrase"],
                "checker_on_ground_truth": a["ground_truth"],
                "vae_ceiling": ceiling,
            }
            own = " (the model's own timesteps)" if isinstance(taken, list) else ""
            print(f"steps {steps}{own} guidance {g}: {fmt(a['model'])}  [{time.time() - t:.0f}s]", flush=True)
            for form, summary in a["by_background_phrase"].items():
                print(f"  captions with the background {form}: {fmt(summary)}", flush=True)
            if semantic(pipe):
                row["shape_one_hot_right"] = shape_reading(pipe, args.n, taken, g)
                print(
                    f"  the UNet's shape one-hot names the asked shape (single and count "
                    f"captions): {row['shape_one_hot_right']:.1%}",
                    flush=True,
                )
            if args.sheet:
                contact_sheet(a["images"][:64], args.sheet.with_name(f"{args.sheet.stem}-s{steps}-g{g}.png"))
            if args.div_prompts:
                row["diversity"] = diversity(pipe, args.div_prompts, args.div_seeds, taken, g)
                print(
                    f"  diversity: model {row['diversity']['model']:.3f} vs data {row['diversity']['data']:.3f}",
                    flush=True,
                )
            if not args.no_speed and args.device == "cpu":
                row["seconds_per_image_batch16"] = speed(pipe, taken, g)
                print(
                    f"  speed: {row['seconds_per_image_batch16']:.3f} s/image at batch 16 ({args.threads} threads)",
                    flush=True,
                )
            results.append(row)
    print(f"checker on ground truth: {fmt(results[0]['checker_on_ground_truth'])}")
    if args.noise_levels:
        for t, r in denoising_profile(pipe, args.n, args.noise_levels).items():
            print(f"one-step denoising from t={t} (alpha_bar {r.pop('alpha_bar'):.3f}): {fmt(r)}")
        print(
            "spread across seeds of the clean latents predicted from pure noise: "
            f"{noise_spread(pipe, args.div_prompts or 16, args.div_seeds):.3f}"
        )
    if args.shape_sweep:
        d = results[0]
        counts, images = shape_sweep(pipe, args.shape_sweep, sampling(defaults, d["steps"]), d["guidance_scale"])
        for asked, seen in counts.items():
            print(f"asked for a large red {asked}, saw: {seen}")
        if args.sheet:
            contact_sheet(images, args.sheet.with_name(f"{args.sheet.stem}-shape-sweep.png"), cols=args.shape_sweep)
    swaps = caption_swap(pipe, 200, args.caption_swap) if args.caption_swap else {}
    for t, r in swaps.items():
        print(
            f"caption swap at t={t} (alpha_bar {r['alpha_bar']:.3f}): own caption, own shape "
            f"{r['own_caption_own_shape']:.0%}; swapped caption, own shape {r['swapped_caption_own_shape']:.0%}, "
            f"swapped shape {r['swapped_caption_swapped_shape']:.0%}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(results))


if __name__ == "__main__":
    main()
