#!/usr/bin/env bash
# What a lent H100 or H200 can show, in one call of at most 10 minutes: the CUDA-only tests
# (tests/test_cuda.py), then genbatch against the plain diffusers loop on random-weight models of
# the released architectures, built on the device (genbatch.pipelines.architectures), so nothing is
# downloaded. A part that would end after GPU_FIGURES_SECONDS (560) is skipped; one that overruns
# its own limit is stopped and the next one runs.
#
#   bash benchmarks/gpu_figures.sh [OUT]        (from the repository root; OUT: gpu-figures)
#
# The machine has torch and transformers but no diffusers and no network: the wheels in .whl/
# (diffusers, importlib_metadata and genbatch's own; see benchmarks/README.md) are installed
# into /tmp/site. Each figure is a `genbatch bench` of its own, or benchmarks/fast_paths_gpu.py;
# OUT gets summary.txt (the machine, the tests' lines and every table), <part>.json and plots.tar
# (the bench.png files and the logs of any failed measurement): few flat files.
set -uo pipefail
OUT=${1:-gpu-figures}
WORK=${GPU_FIGURES_WORK:-/tmp/gpu-figures}
START=$SECONDS
BUDGET=${GPU_FIGURES_SECONDS:-560}  # the parts that would end later are skipped
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_figures: the wheels in .whl/ did not install" | tee -a "$OUT/summary.txt"; exit 1; }
python3 - <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
import diffusers, genbatch, torch, transformers
print(f"genbatch {genbatch.__version__}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
      f"transformers {transformers.__version__}")
print(torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
EOF

bench() {  # bench NAME SECONDS ARGS...: one genbatch bench, stopped after SECONDS
    local name=$1 limit=$2
    shift 2
    echo "== $name (at ${SECONDS}s, limit ${limit}s): genbatch bench $*" | tee -a "$OUT/summary.txt"
    timeout "$limit" python3 -c "from genbatch.cli.app import app; app()" bench --out "$WORK/$name" --device cuda "$@" \
        2>&1 | tee -a "$OUT/summary.txt"
    [[ -f $WORK/$name/bench.json ]] && cp "$WORK/$name/bench.json" "$OUT/$name.json"
    tar -cf "$OUT/plots.tar" -C "$WORK" --exclude='tmp*' . 2>/dev/null
}
fits() {  # fits SECONDS: whether a part of that limit still ends inside the budget
    (( SECONDS - START + $1 <= BUDGET )) || { echo "== skipped: $1 s left no room" | tee -a "$OUT/summary.txt"; false; }
}

# The tests only a CUDA GPU can run: the seed contract against plain diffusers on the GPU, the
# uint8 rounding on the GPU, a real out-of-memory error halving a batch.
echo "== tests/test_cuda.py (at ${SECONDS}s, limit 90s)" | tee -a "$OUT/summary.txt"
timeout 90 python3 -m pytest tests/test_cuda.py -q -s --tb=short -p no:cacheprovider -W ignore 2>&1 \
    | grep -v '^\[transformers\]' | tee -a "$OUT/summary.txt"
# SD-1.5 at batch 16 in one process: the torch fast paths on one pipeline, then genbatch's own
# generate, plain and with the UNet compiled (inductor's default mode).
fits 200 && { echo "== fast-paths (at ${SECONDS}s, limit 200s)" | tee -a "$OUT/summary.txt"
    timeout 200 python3 benchmarks/fast_paths_gpu.py --model sd15 --dtype fp16 --batch 16 --batches 2 \
        --compile default --out "$OUT/fast-paths-sd15.json" 2>&1 | grep -v '^\[transformers\]' | tee -a "$OUT/summary.txt"; }
# SD-1.5, 512², 50 steps, fp16, batch 32 (0.105 s/image is the limit).
fits 150 && bench sd15 150 --model sd15 --dtype fp16 --steps 50 -b 32 --images 64 --repeats 1
# Flux.1-schnell, 1024², 4 steps, bf16 (0.39 s/image is the limit).
fits 130 && bench flux-schnell 130 --model flux-schnell --dtype bf16 --steps 4 -b 4 --images 16 --repeats 1
# SDXL, 1024², 30 steps, bf16 (random fp16 weights can overflow; the same tensor-core speed; 0.53 s/image).
fits 130 && bench sdxl 130 --model sdxl --dtype bf16 --steps 30 -b 4 --images 16 --repeats 1
echo "gpu_figures: done in $(( SECONDS - START ))s" | tee -a "$OUT/summary.txt"
