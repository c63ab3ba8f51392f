"""The torch backend's own settings, one typed group, checked once when it is made.

``genbatch run`` builds it from its torch options; a library user passes it in
``RunOptions.torch`` (or ``BackendOptions.torch``). Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from genbatch.backends.fast_paths import ATTENTION_DEFAULT, CHANNELS_LAST, COMPILE_MODES
from genbatch.errors import GenbatchError

OFFLOAD = ("none", "model", "sequential")


@dataclass(frozen=True)
class TorchOptions:
    """How the torch backend loads and runs a model; recorded in run.json.

    ``offload``: diffusers' CPU offload (none, model, sequential); ``vae_tiling``/``vae_slicing``:
    decode large images tile by tile / a batch one image at a time; ``reuse_embeddings``: encode
    each distinct prompt once (genbatch.backends.prompt_embeds); ``attention``, ``channels_last``,
    ``compile`` and ``compile_backend``: the fast paths of genbatch.backends.fast_paths
    (``compile`` None is off); ``allow_pickle``: also load pickled weights (.bin LoRAs, model
    folders without .safetensors), which can run code when loaded (off: safetensors only)."""

    offload: str = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False
    reuse_embeddings: bool = True
    attention: str = ATTENTION_DEFAULT
    channels_last: str = "auto"
    compile: str | None = None
    compile_backend: str = "inductor"
    allow_pickle: bool = False

    def __post_init__(self) -> None:
        if self.offload not in OFFLOAD:
            raise GenbatchError(f"--offload {self.offload!r}: expected none, model or sequential")
        if self.channels_last not in CHANNELS_LAST:
            raise GenbatchError(f"--channels-last {self.channels_last!r}: expected {', '.join(CHANNELS_LAST)}")
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise GenbatchError(f"--compile {self.compile!r}: expected off, {', '.join(COMPILE_MODES)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
