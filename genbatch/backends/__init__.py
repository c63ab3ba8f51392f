"""Backends turn a batch of jobs into pixels. See :mod:`genbatch.backends.base`."""

from genbatch.backends.base import Backend, BackendOptions, GeneratedImage, LoadedModel, backend_names, get_backend

__all__ = ["Backend", "BackendOptions", "GeneratedImage", "LoadedModel", "get_backend", "backend_names"]
