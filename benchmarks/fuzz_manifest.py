"""A long run of the manifest fuzz tests (tests/test_fuzz_manifest.py): the same properties
as the suite, with many more examples per property and fresh randomness each run.

    python benchmarks/fuzz_manifest.py                  # 2,000 examples per property
    python benchmarks/fuzz_manifest.py --examples 10000
    python benchmarks/fuzz_manifest.py --seed 1         # a reproducible run

Prints, per property, how many examples ran and how long it took, then the totals and the
failures found (a failure prints hypothesis's minimal example and exits 1).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000, help="examples per property")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    args = parser.parse_args()

    env = dict(os.environ, GENBATCH_FUZZ_PROFILE="long", GENBATCH_FUZZ_EXAMPLES=str(args.examples))
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/test_fuzz_manifest.py",
        "-q",
        "-p",
        "no:cacheprovider",
        "--hypothesis-show-statistics",
    ]
    if args.seed is not None:
        command.append(f"--hypothesis-seed={args.seed}")
    began = time.monotonic()
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - began

    total = failing = 0
    print(f"{'property':<52} {'examples':>9} {'failing':>8} {'seconds':>8}")
    for block in re.split(r"\n(?=tests/test_fuzz_manifest\.py::)", run.stdout):
        name = re.match(r"tests/test_fuzz_manifest\.py::(\S+):", block)
        if not name:
            continue
        counts = [(int(p), int(f)) for p, f in re.findall(r"(\d+) passing, (\d+) failing", block)]
        took = sum(float(s) for s in re.findall(r"phase \(([\d.]+) seconds\)", block))
        passed, failed = sum(c[0] for c in counts), sum(c[1] for c in counts)
        total, failing = total + passed + failed, failing + failed
        print(f"{name[1]:<52} {passed + failed:>9} {failed:>8} {took:>8.1f}")
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "(no output)"
    print(f"\n{total} generated examples in {seconds:.0f} s; {failing} failing; pytest: {summary}")
    if run.returncode != 0:
        print(run.stdout[-6000:])
        print(run.stderr[-2000:], file=sys.stderr)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
