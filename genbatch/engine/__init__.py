"""Engines run a plan's pending jobs on a backend, in batches they size (``batch_size``), and hand
every outcome to the sink, which writes the ledger; ``writer`` encodes and writes the images.
``local`` runs in this process, ``ray`` on model-holding actors across a Ray cluster; ``base`` holds
what both share (the batch call and its out-of-memory back-off).

May import: genbatch.report (thumbnails), genbatch.plan, genbatch.backends and everything below them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from genbatch.engine.base import Engine
from genbatch.engine.ray_options import RayOptions as RayOptions

ENGINE_NAMES = ("local", "ray")


def _local_engine(ray: RayOptions | None) -> Engine:
    from genbatch.engine.local import LocalEngine

    return LocalEngine()


def _ray_engine(ray: RayOptions | None) -> Engine:
    from genbatch.engine.ray import RayEngine  # imports Ray only when asked for

    return RayEngine(**asdict(ray or RayOptions()))


ENGINES: dict[str, Callable[[RayOptions | None], Engine]] = {"local": _local_engine, "ray": _ray_engine}
