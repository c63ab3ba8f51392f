"""FID reference statistics: the mean and covariance of a feature network's pool features
over real images.

``--reference`` is a saved ``.npz`` with ``mu`` and ``sigma`` (pytorch-fid and clean-fid
save these), or a folder of real images. A folder's statistics are computed once and
cached under ``$GENBATCH_HOME/eval-reference/``, named by the folder's content (every
image's relative path, size and modification time) and the network's fingerprint.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genbatch.errors import GenbatchError
from genbatch.evaluate.networks import Extractor
from genbatch.home import genbatch_home
from genbatch.safe_write import write_atomic

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def reference_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def folder_fingerprint(folder: Path, files: list[Path], network: str) -> str:
    digest = hashlib.sha256(network.encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(folder).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def check_reference(spec: str | Path) -> Path:
    """The --reference path, if it is a .npz or a folder; checked before any network loads."""
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix.lower() != ".npz":
        raise GenbatchError(f"--reference {spec}: expected a folder of real images or a .npz with mu and sigma")
    if not path.exists():
        raise GenbatchError(
            f"--reference {spec}: no such file or folder; give a folder of real images or a .npz with mu and sigma"
        )
    return path


def reference_stats(spec: str | Path, extractor: Extractor, *, batch_size: int = 32) -> dict[str, Any]:
    """``{"mu", "sigma", "images", "source", "cache"}`` for ``--reference``."""
    path = check_reference(spec)
    pool = extractor.dims[0]
    if path.is_file():
        try:
            with np.load(path) as data:
                mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
                count = int(data["n"]) if "n" in data.files else None
        except KeyError:
            raise GenbatchError(f"--reference {spec}: the .npz needs arrays 'mu' and 'sigma'") from None
        except (OSError, ValueError) as err:
            raise GenbatchError(f"--reference {spec}: not a readable .npz ({err})") from None
        if mu.shape != (pool,) or sigma.shape != (pool, pool):
            raise GenbatchError(
                f"--reference {spec}: mu {mu.shape} and sigma {sigma.shape} do not fit the feature "
                f"network's {pool} features ({extractor.name}); make them with the same network"
            )
        return {"mu": mu, "sigma": sigma, "images": count, "source": str(path), "cache": None}
    files = reference_images(path)
    if len(files) < 2:
        raise GenbatchError(
            f"--reference {spec}: {len(files)} images ({', '.join(IMAGE_SUFFIXES)}); FID needs "
            "at least 2 (published figures use 10,000 to 50,000)"
        )
    cache = genbatch_home() / "eval-reference" / f"{folder_fingerprint(path, files, extractor.fingerprint)}.npz"
    if cache.is_file():
        with np.load(cache) as data:
            return {
                "mu": data["mu"],
                "sigma": data["sigma"],
                "images": int(data["n"]),
                "source": str(path),
                "cache": str(cache),
            }
    features = []
    for start in range(0, len(files), batch_size):
        images = []
        for file in files[start : start + batch_size]:
            try:
                with Image.open(file) as image:
                    images.append(np.asarray(image.convert("RGB")))
            except OSError as err:
                raise GenbatchError(f"--reference {file}: not a readable image ({err})") from None
        features.append(extractor.compute(images, [])[:, :pool])
    rows = np.concatenate(features)
    mu, sigma = rows.mean(axis=0), np.cov(rows, rowvar=False)
    buffer = io.BytesIO()
    np.savez(buffer, mu=mu, sigma=sigma, n=len(rows), folder=str(path), network=extractor.fingerprint)
    write_atomic(cache, buffer.getvalue())
    return {"mu": mu, "sigma": sigma, "images": len(rows), "source": str(path), "cache": str(cache)}
