"""genbatch: batch image generation from a manifest of prompts and seeds.

Everything the ``genbatch`` command does can be done from Python::

    from pathlib import Path
    import genbatch

    manifest = genbatch.read_manifest("prompts.csv")           # rows, checked; nothing loaded
    options = genbatch.RunOptions(
        genbatch.InputOptions("prompts.csv"),
        genbatch.OutputOptions(Path("images")),
        genbatch.PlanOptions(model="tiny-random", defaults=genbatch.Defaults(steps=4)),
    )
    result = genbatch.run(options)                              # a rerun makes only what is missing
    print(result.summary.format(), result.exit_code)
    assert genbatch.verify(Path("images")).ok

Each name is imported when first used, so ``import genbatch`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from genbatch.version import __version__

# public name -> "module:attribute"
_EXPORTS = {
    "run": "genbatch.runner.run:run_manifest",
    "RunResult": "genbatch.runner.run:RunResult",
    "RunOptions": "genbatch.runner.options:RunOptions",
    "InputOptions": "genbatch.runner.options:InputOptions",
    "OutputOptions": "genbatch.runner.options:OutputOptions",
    "EngineOptions": "genbatch.runner.options:EngineOptions",
    "PlanOptions": "genbatch.plan.planner:PlanOptions",
    "Defaults": "genbatch.jobs:Defaults",
    "TorchOptions": "genbatch.backends.torch_options:TorchOptions",
    "RayOptions": "genbatch.engine:RayOptions",
    "read_manifest": "genbatch.manifest.read:read_manifest",
    "verify": "genbatch.store.verify:verify_folder",
    "merge": "genbatch.store.merge:merge_outputs",
    "export_onnx": "genbatch.export.onnx:export_onnx",
    "evaluate": "genbatch.evaluate.run:evaluate_run",
    "EvalOptions": "genbatch.evaluate.run:EvalOptions",
    "compare": "genbatch.evaluate.compare:compare_runs",
    "CompareOptions": "genbatch.evaluate.compare:CompareOptions",
    "GenbatchError": "genbatch.errors:GenbatchError",
}

__all__ = [
    "__version__",
    "run",
    "RunResult",
    "RunOptions",
    "InputOptions",
    "OutputOptions",
    "EngineOptions",
    "PlanOptions",
    "Defaults",
    "TorchOptions",
    "RayOptions",
    "read_manifest",
    "verify",
    "merge",
    "export_onnx",
    "evaluate",
    "EvalOptions",
    "compare",
    "CompareOptions",
    "GenbatchError",
]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'genbatch' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from genbatch.backends.torch_options import TorchOptions as TorchOptions
    from genbatch.engine import RayOptions as RayOptions
    from genbatch.errors import GenbatchError as GenbatchError
    from genbatch.evaluate.compare import CompareOptions as CompareOptions
    from genbatch.evaluate.compare import compare_runs as compare
    from genbatch.evaluate.run import EvalOptions as EvalOptions
    from genbatch.evaluate.run import evaluate_run as evaluate
    from genbatch.export.onnx import export_onnx as export_onnx
    from genbatch.jobs import Defaults as Defaults
    from genbatch.manifest.read import read_manifest as read_manifest
    from genbatch.plan.planner import PlanOptions as PlanOptions
    from genbatch.runner.options import EngineOptions as EngineOptions
    from genbatch.runner.options import InputOptions as InputOptions
    from genbatch.runner.options import OutputOptions as OutputOptions
    from genbatch.runner.options import RunOptions as RunOptions
    from genbatch.runner.run import RunResult as RunResult
    from genbatch.runner.run import run_manifest as run
    from genbatch.store.merge import merge_outputs as merge
    from genbatch.store.verify import verify_folder as verify
