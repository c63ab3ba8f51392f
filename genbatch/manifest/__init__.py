"""Manifests: the readers of CSV, TSV, JSONL, plain text, Parquet and A1111 prompt files, which column
feeds which generation field, and the field table itself (``fields``: each field declared once).

May import: genbatch.pipelines (sampler names, LoRA specs) and the shared modules.
"""
