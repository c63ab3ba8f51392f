"""How fast genbatch's own machinery runs: plan, write PNGs, hash, ledger, with a stand-in
backend that returns images instantly. This is the ceiling for any backend on this machine.

    python benchmarks/pipeline_overhead.py [--images 4096] [--batch-size 256] [--size 64]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from genbatch.backends.base import GeneratedImage, register_backend
from genbatch.runner import RunOptions, run_manifest


class InstantGenerator:
    backend, device, dtype = "instant", "cpu", "fp32"

    def describe(self) -> dict:
        return {}

    def generate(self, jobs):
        rng = np.random.default_rng(0)  # textured pixels, so PNG compression has real work
        return [GeneratedImage(j, rng.integers(0, 256, (j.height, j.width, 3), dtype=np.uint8)) for j in jobs]

    def close(self) -> None:
        pass


class InstantBackend:
    name = "instant"

    def resolve(self, device: str, dtype: str) -> tuple[str, str]:
        return "cpu", "fp32"

    def load(self, model, **kwargs) -> InstantGenerator:
        return InstantGenerator()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    register_backend("instant", f"{__name__}:InstantBackend")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "m.txt"
        manifest.write_text("".join(f"a red circle on a blue background {i}\n" for i in range(args.images)))
        result = run_manifest(
            RunOptions(
                manifest=str(manifest),
                out=Path(tmp) / "out",
                model="tiny-random",
                backend="instant",
                batch_size=args.batch_size,
                quiet=True,
                html_report=False,
                overrides={"width": str(args.size), "height": str(args.size)},
            )
        )
    s = result.summary
    print(
        f"{s.counts.done} images of {args.size}x{args.size} in {s.wall_seconds:.2f} s: "
        f"{s.images_per_second:.0f} img/s through plan, PNG encoding, sha256 and ledger"
    )


if __name__ == "__main__":
    main()
