"""A prefix in object storage (``s3://bucket/prefix``, ``gs://``, ``az://``), through fsspec.

An object store has no rename and no append, but a PUT is atomic: an object appears whole
under its name or not at all, so each image is one PUT (never a multipart upload, whose parts
could be left half-done), and a ledger segment too (genbatch.store.segments). Credentials come
from each SDK's own chain (environment, config files, instance roles); genbatch never reads,
prints or records them, and the URLs it records are the ones given, which hold none.

The protocol's package is an extra: ``pip install 'genbatch[s3]'`` (s3fs), ``[gcs]`` (gcsfs),
``[azure]`` (adlfs).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from genbatch.errors import GenbatchError

# scheme://... as fsspec spells a URL; file:// is a local folder and stays one.
_URL_RE = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}


def is_url(value: object) -> bool:
    """Whether ``value`` names object storage (an fsspec URL other than ``file://``)."""
    found = _URL_RE.match(str(value)) if isinstance(value, str) else None
    return found is not None and found.group(1).lower() != "file"


def output_location(value: str | Path) -> str | Path:
    """``--out`` as given: a URL of object storage (str, without a trailing ``/``), or a local
    folder (Path; a ``file://`` URL is one)."""
    text = str(value)
    if is_url(text):
        return text.rstrip("/")
    if text.lower().startswith("file://"):
        return Path(text[len("file://") :])
    return Path(value)


class Bucket:
    """The objects under one prefix. Every call is one request, or one listing (a request per
    1,000 objects); names are relative to the prefix and ``/``-separated."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        scheme = _URL_RE.match(self.url).group(1).lower()  # type: ignore[union-attr]
        try:
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except ImportError:
            extra = EXTRAS.get(scheme, "")
            hint = f"pip install 'genbatch[{extra}]'" if extra else f"install the fsspec package for {scheme}://"
            raise GenbatchError(f"{self.url}: {scheme}:// needs a package that is not installed: {hint}") from None
        except ValueError as err:
            raise GenbatchError(f"{self.url}: not a URL genbatch can write to: {err}") from None
        self.root = self.root.rstrip("/")
        self.s3 = scheme in ("s3", "s3a")

    def __repr__(self) -> str:
        return f"Bucket({self.url!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # a worker opens its own client
        return (open_bucket, (self.url,))

    def key(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def where(self, name: str) -> str:
        """The object's URL, for messages."""
        return f"{self.url}/{name}"

    def put(self, name: str, data: bytes, **conditions: str) -> str | None:
        """One PUT of ``data`` (S3's conditions, ``IfMatch``, where given): the ETag of the object
        it wrote where the store's answer gives it (S3's), else None (:meth:`tag` asks then; the
        object may have been written again meanwhile)."""
        return _etag(self.fs.pipe_file(self.key(name), data, **conditions))

    def create(self, name: str, data: bytes) -> str | None:
        """PUT ``data`` only where no object has the name (S3 ``If-None-Match: *``, GCS's
        generation precondition; FileExistsError when one has it): its ETag, as :meth:`put` gives it."""
        return _etag(self.fs.pipe_file(self.key(name), data, mode="create"))

    def get(self, name: str) -> bytes:
        return bytes(self.fs.cat_file(self.key(name)))

    def download(self, name: str, path: Path) -> None:
        """The object into the file ``path``, streamed (a million-line ledger is a GiB)."""
        self.fs.get_file(self.key(name), str(path))

    def upload(self, name: str, path: Path) -> None:
        """The file ``path`` as the object, streamed (in parts past 100 MiB: s3fs's multipart upload)."""
        self.fs.put_file(str(path), self.key(name))

    def tag(self, name: str) -> str | None:
        """The object's ETag (or generation), or None when it is not there."""
        try:
            info = self.fs.info(self.key(name))
        except FileNotFoundError:
            return None
        return str(info.get("ETag") or info.get("generation") or info.get("etag") or info.get("mtime") or "")

    def sizes(self, folder: str = "") -> dict[str, int]:
        """name -> size of every object under the prefix (or under ``folder`` in it)."""
        base = self.key(folder).rstrip("/")
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        start = len(self.root) + 1
        self.fs.invalidate_cache(base)  # the next listing asks the store again
        return {
            path[start:]: int(info.get("size") or 0) for path, info in found.items() if info.get("type") != "directory"
        }

    def delete(self, name: str) -> None:
        try:
            self.fs.rm_file(self.key(name))
        except FileNotFoundError:
            pass

    def check_reachable(self) -> None:
        """Fail with a message now when the bucket does not exist or cannot be read."""
        bucket = self.root.split("/", 1)[0]
        try:
            self.fs.ls(bucket, detail=False)
        except FileNotFoundError:
            raise GenbatchError(
                f"{self.url}: the bucket {bucket} does not exist (or is not visible with these credentials)"
            ) from None
        except PermissionError as err:
            raise GenbatchError(f"{self.url}: access denied listing the bucket {bucket}: {err}") from None
        except OSError as err:
            raise GenbatchError(f"{self.url}: cannot reach the bucket {bucket}: {err}") from None
        finally:
            self.fs.invalidate_cache(bucket)


def read_object(url: str) -> bytes:
    """The bytes of the object at ``url`` (a manifest read from object storage)."""
    folder, _, name = url.rpartition("/")
    if not name or folder.endswith(":/"):
        raise GenbatchError(f"{url}: not the URL of an object (scheme://bucket/name)")
    try:
        return open_bucket(folder).get(name)
    except FileNotFoundError:
        raise GenbatchError(f"{url}: no such object") from None
    except PermissionError as err:
        raise GenbatchError(f"{url}: access denied: {err}") from None
    except OSError as err:
        raise GenbatchError(f"{url}: cannot read the object: {err}") from None


@functools.lru_cache(maxsize=32)
def open_bucket(url: str) -> Bucket:
    """The :class:`Bucket` of ``url``, one per URL in a process."""
    return Bucket(url)


def _etag(answer: Any) -> str | None:
    """The ETag in a store's answer to a PUT (s3fs returns S3's PutObject response), or None."""
    tag = answer.get("ETag") if isinstance(answer, dict) else None
    return str(tag) if tag else None
