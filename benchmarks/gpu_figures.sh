#!/usr/bin/env bash
# What a lent H100 or H200 can show, in one call of at most 10 minutes: genbatch's exact and fast
# modes on random-weight models of the released architectures, built on the device
# (genbatch.pipelines.architectures), so nothing is downloaded. The parts, in order:
#
#   flux-dev-exact  Flux.1-dev, 1024², 28 steps, bf16, --compile regional: ms per step (target 134 on an H100)
#   flux-dev-fast   the same with --speed fast (first-block cache + fp8 + regional compile), against the
#                   plain diffusers loop with the same options by hand (--vs plain): s/image (target 2.0 H100, 1.6 H200)
#   compare-fast    genbatch compare of the fast images against the exact ones (same prompts and seeds)
#   sd15-exact      SD-1.5, 512², 50 steps, fp16, batch 16, --compile reduce-overhead (CUDA graphs): s/image (target 0.21)
#   nf4-memory      Flux.1-dev with --quantize nf4 (bitsandbytes): GPU memory while loading and generating
#   fp8-memory      Flux.1-dev with --quantize fp8 (torchao), eager: the same
#
# and, named in GPU_FIGURES_PARTS only, the earlier figures: cuda-tests (tests/test_cuda.py),
# fast-paths (benchmarks/fast_paths_gpu.py on SD-1.5), sd15, flux-schnell, sdxl (genbatch against the
# plain loop, eager). A part starts only when what is left of GPU_FIGURES_SECONDS (560) covers what it
# usually takes, and is stopped at its own limit or the budget's end; the next one then runs. A part
# whose package is missing (torchao for fp8, bitsandbytes for nf4) is skipped and says so.
#
#   bash benchmarks/gpu_figures.sh [OUT]        (from the repository root; OUT: gpu-figures)
#   GPU_FIGURES_PARTS="flux-dev-exact sd15-exact" bash benchmarks/gpu_figures.sh OUT   (some parts only)
#
# The machine has torch and transformers but no diffusers and no network: the wheels in .whl/
# (diffusers, importlib_metadata, torchao, bitsandbytes; see benchmarks/README.md) are installed
# into /tmp/site. genbatch runs from this working tree; without a genbatch wheel in .whl/ (19 MB, most
# of it the shapes model the tree has anyway) its entry points are registered by a dist-info written
# into /tmp/site from pyproject.toml. OUT gets summary.txt (the machine, every table, the compare and the
# figures against their targets, also in targets.txt), <part>.json (bench.json of each part),
# compare-fast.json and plots.tar (the bench.png files and the logs of any failed measurement).
set -uo pipefail
OUT=${1:-gpu-figures}
WORK=${GPU_FIGURES_WORK:-/tmp/gpu-figures}
START=$SECONDS
BUDGET=${GPU_FIGURES_SECONDS:-560}
PARTS=${GPU_FIGURES_PARTS:-"flux-dev-exact flux-dev-fast compare-fast sd15-exact nf4-memory fp8-memory"}
mkdir -p "$OUT" "$WORK"
SUMMARY=$OUT/summary.txt
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_figures: the wheels in .whl/ did not install" | tee -a "$SUMMARY"; exit 1; }
python3 - /tmp/site <<'EOF' 2>&1 | tee -a "$SUMMARY"
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

try:
    metadata.distribution("genbatch")
except metadata.PackageNotFoundError:  # genbatch's backends are found through its entry points
    project = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]
    version = re.search(r'__version__ = "([^"]+)"', Path("genbatch/version.py").read_text()).group(1)
    groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
    info = Path(sys.argv[1]) / f"genbatch-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: genbatch\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in e.items()) + "\n" for g, e in groups.items())
    )
    print(f"genbatch {version} runs from this working tree (entry points registered in {info})")
EOF
python3 - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import importlib, diffusers, genbatch, torch, transformers
print(f"genbatch {genbatch.__version__}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"diffusers {diffusers.__version__}, transformers {transformers.__version__}")
for name in ("torchao", "bitsandbytes"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as err:  # missing, or built for another torch
        print(f"{name}: not usable ({type(err).__name__}: {err})")
print(torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB",
      "compute capability %d.%d" % torch.cuda.get_device_capability(0))
EOF

say() { echo "$*" | tee -a "$SUMMARY"; }
want() { [[ " $PARTS " == *" $1 "* ]]; }
usable() { python3 -c "import $1" >/dev/null 2>&1; }  # a package imports (torchao, bitsandbytes)
room() {  # room NAME USUAL LIMIT: prints the seconds NAME may run (LIMIT, cut to the budget left), or fails
    local left=$(( BUDGET - (SECONDS - START) ))
    if (( left < $2 )); then
        say "== $1: skipped, ${left}s of the budget left and it usually takes ${2}s" >&2
        return 1
    fi
    echo $(( left < $3 ? left : $3 ))
}
bench() {  # bench NAME SECONDS ARGS...: one genbatch bench, stopped after SECONDS
    local name=$1 limit=$2
    shift 2
    say "== $name (at ${SECONDS}s, limit ${limit}s): genbatch bench $*"
    timeout "$limit" python3 -m genbatch bench --out "$WORK/$name" --device cuda "$@" 2>&1 \
        | grep -v '^\[transformers\]' | tee -a "$SUMMARY"
    [[ -f $WORK/$name/bench.json ]] && cp "$WORK/$name/bench.json" "$OUT/$name.json"
    tar -cf "$OUT/plots.tar" -C "$WORK" --exclude='tmp*' --exclude='images' --exclude='*-random' . 2>/dev/null
}
# One image a measurement would be compile time more than steady state: 3 images after the untimed
# warm-up call (genbatch's, and the plain loop's when it compiles); no warm-up process, one repeat.
FLUX=(--model flux-dev --dtype bf16 -b 1 --images 3 --repeats 1 --no-warm-up)
KEPT=images/torch-1024-b1/genbatch  # where --keep-images leaves genbatch's run folder

if want flux-dev-exact && limit=$(room flux-dev-exact 90 170); then
    bench flux-dev-exact "$limit" "${FLUX[@]}" --compile regional --vs none --keep-images
fi
if want flux-dev-fast; then
    if ! usable torchao; then
        say "== flux-dev-fast: skipped, torchao is not installed (fp8); carry its wheel in .whl/"
    elif limit=$(room flux-dev-fast 170 240); then
        bench flux-dev-fast "$limit" "${FLUX[@]}" --speed fast --vs plain --keep-images
    fi
fi
if want compare-fast; then
    if [[ -f $WORK/flux-dev-exact/$KEPT/run.json && -f $WORK/flux-dev-fast/$KEPT/run.json ]]; then
        say "== compare-fast (at ${SECONDS}s): genbatch compare EXACT FAST (random weights: the images are noise)"
        timeout 60 python3 -m genbatch compare "$WORK/flux-dev-exact/$KEPT" "$WORK/flux-dev-fast/$KEPT" --no-html 2>&1 \
            | grep -v '^\[transformers\]' | tee -a "$SUMMARY"
        cp "$WORK/flux-dev-fast/$KEPT/compare.json" "$OUT/compare-fast.json" 2>/dev/null
    else
        say "== compare-fast: skipped, flux-dev-exact and flux-dev-fast did not both leave their images"
    fi
fi
if want sd15-exact && limit=$(room sd15-exact 100 170); then
    bench sd15-exact "$limit" --model sd15 --dtype fp16 --steps 50 -b 16 --images 48 --repeats 1 --no-warm-up \
        --compile reduce-overhead --vs none
fi
if want nf4-memory; then
    if ! usable bitsandbytes; then
        say "== nf4-memory: skipped, bitsandbytes is not installed; carry its wheel in .whl/"
    elif limit=$(room nf4-memory 50 110); then
        bench nf4-memory "$limit" --model flux-dev --dtype bf16 -b 1 --images 1 --repeats 1 --no-warm-up \
            --quantize nf4 --vs none
    fi
fi
if want fp8-memory; then
    if ! usable torchao; then
        say "== fp8-memory: skipped, torchao is not installed; carry its wheel in .whl/"
    elif limit=$(room fp8-memory 45 100); then
        bench fp8-memory "$limit" --model flux-dev --dtype bf16 -b 1 --images 1 --repeats 1 --no-warm-up \
            --quantize fp8 --vs none
    fi
fi

# The earlier figures, on request (GPU_FIGURES_PARTS): the tests only a CUDA GPU can run, the torch
# fast paths on one SD-1.5 pipeline, and genbatch against the plain loop on three architectures.
if want cuda-tests && limit=$(room cuda-tests 60 90); then
    say "== tests/test_cuda.py (at ${SECONDS}s, limit ${limit}s)"
    timeout "$limit" python3 -m pytest tests/test_cuda.py -q -s --tb=short -p no:cacheprovider -W ignore 2>&1 \
        | grep -v '^\[transformers\]' | tee -a "$SUMMARY"
fi
if want fast-paths && limit=$(room fast-paths 150 200); then
    say "== fast-paths (at ${SECONDS}s, limit ${limit}s)"
    timeout "$limit" python3 benchmarks/fast_paths_gpu.py --model sd15 --dtype fp16 --batch 16 --batches 2 \
        --compile default --out "$OUT/fast-paths-sd15.json" 2>&1 | grep -v '^\[transformers\]' | tee -a "$SUMMARY"
fi
if want sd15 && limit=$(room sd15 100 150); then
    bench sd15 "$limit" --model sd15 --dtype fp16 --steps 50 -b 32 --images 64 --repeats 1
fi
if want flux-schnell && limit=$(room flux-schnell 100 130); then
    bench flux-schnell "$limit" --model flux-schnell --dtype bf16 --steps 4 -b 4 --images 16 --repeats 1
fi
if want sdxl && limit=$(room sdxl 100 130); then
    bench sdxl "$limit" --model sdxl --dtype bf16 --steps 30 -b 4 --images 16 --repeats 1
fi

# Each figure against its target (benchmarks/README.md), from the parts' bench.json and compare.json.
python3 - "$OUT" <<'EOF' 2>&1 | tee "$OUT/targets.txt" | tee -a "$SUMMARY"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
def cell(part):
    path = out / f"{part}.json"
    return json.loads(path.read_text())["cells"][0] if path.exists() else None
def per_image(side):
    return side["model_seconds"] / side["images"] if side and side.get("model_seconds") else None
def num(value, fmt):
    return "-" if value is None else format(value, fmt)
gpu = next((line for line in (out / "summary.txt").read_text().splitlines() if "GiB" in line), "")
fast_target = 1.6 if "H200" in gpu else 2.0
print("== targets (model time: pipeline calls, text encoders and VAE decode included, compile warm-up not)")
found = cell("flux-dev-exact")
if found and found["genbatch"].get("s_per_step"):
    ms = found["genbatch"]["s_per_step"] * 1000
    print(f"Flux.1-dev exact (bf16, regional compile), 1024²: {ms:.1f} ms/step (target <= 134 on an H100); "
          f"{94.6 / ms:.0%} of the physical limit (2.65 s / 28 steps = 94.6 ms)")
found = cell("flux-dev-fast")
if found:
    mine, plain = per_image(found["genbatch"]), per_image(found.get("plain"))
    print(f"Flux.1-dev fast (--speed fast: {found['genbatch'].get('applied')}): {num(mine, '.2f')} s/image "
          f"(target <= {fast_target} on this GPU); the plain loop with the same options by hand: "
          f"{num(plain, '.2f')} s/image")
compare = out / "compare-fast.json"
if compare.exists():
    summary = json.loads(compare.read_text()).get("summary", {})
    shown = ("paired", "identical", "psnr", "psnr_min", "ssim_mean", "ssim_min", "max_abs", "mean_abs")
    print("compare fast vs exact (random weights: noise images, a weak quality signal): "
          + ", ".join(f"{k} {summary.get(k)}" for k in shown))
found = cell("sd15-exact")
if found:
    print(f"SD-1.5 exact (fp16, reduce-overhead), 512², 50 steps, batch 16: {num(per_image(found['genbatch']), '.3f')} "
          "s/image (target <= 0.21; the physical limit 0.105)")
for part in ("flux-dev-exact", "fp8-memory", "nf4-memory", "flux-dev-fast"):
    found = cell(part)
    if found:
        side = found["genbatch"]
        print(f"{part}: GPU memory (torch.cuda.max_memory_allocated) while loading "
              f"{num(side.get('peak_gpu_load_mb'), '.0f')} MiB, while generating "
              f"{num(side.get('peak_gpu_generate_mb'), '.0f')} MiB")
EOF
say "gpu_figures: done in $(( SECONDS - START ))s"
