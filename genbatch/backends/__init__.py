"""Backends turn a batch of jobs into pixels. See :mod:`genbatch.backends.base`."""

from .base import Backend, GeneratedImage, Generator, get_backend, backend_names

__all__ = ["Backend", "GeneratedImage", "Generator", "get_backend", "backend_names"]
