"""A run's options: one typed group per stage, each declared once and checked when it is made.

``genbatch run`` builds them from its command line; a library user builds them directly::

    from genbatch import InputOptions, OutputOptions, RunOptions, run
    result = run(RunOptions(InputOptions("prompts.csv"), OutputOptions(Path("images"))))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genbatch.backends import BackendOptions
from genbatch.backends.torch_options import TorchOptions
from genbatch.engine import ENGINE_NAMES, RayOptions
from genbatch.engine.writer import Encoding
from genbatch.errors import GenbatchError
from genbatch.manifest.image_folder import check_source
from genbatch.manifest.read import MAX_IMAGES_PER_ROW
from genbatch.plan.axes import Axis
from genbatch.plan.planner import PlanOptions
from genbatch.store.image_formats import image_format

DEFAULT_CPU_BATCH_SIZE = 8


@dataclass(frozen=True)
class InputOptions:
    """Where the rows come from: the manifest (a path, or ``-`` for stdin) and its ``format``
    (None: from the extension), ``column_map`` (field -> column), ``overrides`` (--set),
    ``axes`` (--vary), whether rows with problems are skipped, and the images-per-row limit.
    Or, instead of a manifest, a folder of images (``input_dir``: a row per image, each with
    ``prompt``; ``mask_dir``: their masks, paired by name; genbatch.manifest.image_folder)."""

    manifest: str | None = None
    format: str | None = None
    column_map: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    axes: list[Axis] = field(default_factory=list)
    skip_invalid: bool = False
    max_images_per_row: int = MAX_IMAGES_PER_ROW
    input_dir: str | None = None
    mask_dir: str | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        check_source(self.manifest, self.input_dir, self.mask_dir, self.prompt, self.format, self.column_map)

    @property
    def source(self) -> str:
        """The manifest, or the folder of images, as the ledger and run.json name it."""
        return self.manifest if self.manifest is not None else str(self.input_dir)


@dataclass(frozen=True)
class OutputOptions:
    """Where and how images are written: the folder, the encoders' ``quality`` (WebP, JPEG) and
    ``compress_level`` (PNG), the writer threads (None: up to 4), whether the HTML report is made,
    ``force`` (generate done jobs again), ``verify`` (hash done images; a changed one is not done)
    and ``wait`` (for another run on the folder to end)."""

    out: Path | str  # a str may be the URL of a prefix in object storage
    quality: int = 95
    compress_level: int = 6
    workers: int | None = None
    html_report: bool = True
    force: bool = False
    verify: bool = False
    wait: bool = False


@dataclass(frozen=True)
class EngineOptions:
    """What runs the batches and on what: the engine (``ray`` takes ``ray``), the device and dtype
    (``auto`` resolved by the backend), the batch size (a number, ``auto``, or None: auto on an
    accelerator, 8 on a CPU) and ONNX Runtime's execution providers."""

    engine: str = "local"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | str | None = None
    providers: tuple[str, ...] | None = None
    ray: RayOptions | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINE_NAMES:
            raise GenbatchError(f"--engine {self.engine!r}: expected {' or '.join(ENGINE_NAMES)}")
        if self.ray is not None and self.engine != "ray":
            raise GenbatchError("the Ray options are options of --engine ray; add --engine ray, or leave them out")
        size = self.batch_size
        if not (size is None or size == "auto" or (isinstance(size, int) and not isinstance(size, bool) and size >= 1)):
            raise GenbatchError(f"--batch-size {size!r}: expected a whole number >= 1 or auto")

    def fixed_batch_size(self, device: str) -> int | None:
        """The batch size asked for, or None for auto (the default on an accelerator)."""
        if isinstance(self.batch_size, int):
            return self.batch_size
        if self.batch_size == "auto" or not device.startswith("cpu"):
            return None
        return DEFAULT_CPU_BATCH_SIZE


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs: its input, output, plan and engine options, the torch backend's
    settings, and whether it only plans (``dry_run``) or prints progress (``quiet``)."""

    input: InputOptions
    output: OutputOptions
    plan: PlanOptions = field(default_factory=PlanOptions)
    engine: EngineOptions = field(default_factory=EngineOptions)
    torch: TorchOptions = field(default_factory=TorchOptions)
    dry_run: bool = False
    quiet: bool = False
    speed: str = "exact"  # "fast": genbatch.pipelines.speed.fast_settings for what is not set

    def __post_init__(self) -> None:
        from genbatch.pipelines.speed import SPEEDS

        if self.speed not in SPEEDS:
            raise GenbatchError(f"--speed {self.speed!r}: expected {' or '.join(SPEEDS)}")

    def backend_options(self, device: str, dtype: str) -> BackendOptions:
        """How each model is loaded, for the resolved ``device`` and ``dtype``."""
        return BackendOptions(
            device=device,
            dtype=dtype,
            scheduler=self.plan.scheduler,
            providers=self.engine.providers,
            torch=self.torch if self.plan.backend == "torch" else None,
            quantize=self.plan.defaults.quantize,
        )

    def encoding(self) -> Encoding:
        return Encoding(
            fmt=image_format(self.plan.image_format).name,
            quality=self.output.quality,
            compress_level=self.output.compress_level,
            thumbnails=self.output.html_report,  # the report would make them from the files at the end
        )
