"""genbatch: batch image generation from a manifest of prompts and seeds."""

__version__ = "0.1.0"
