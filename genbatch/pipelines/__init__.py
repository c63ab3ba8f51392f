"""Models and what genbatch knows of them without a backend: model lookup (built-in names,
folders, single files, the Hugging Face cache), the family table, samplers, LoRA specs, prompt-weighting
rules, and the tiny and random-weight builds used by tests and benchmarks.

May import: the shared modules only.
"""
