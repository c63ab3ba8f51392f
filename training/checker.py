"""The shapes judge, kept in the package (genbatch/evaluate/shapes_judge.py) so that
``genbatch eval --metrics shapes`` uses the same code as training and its tests."""

from genbatch.evaluate.shapes_judge import (  # noqa: F401
    CATEGORIES,
    MIN_AREA,
    Blob,
    analyse,
    classify_shape,
    palette_labels,
    score,
    summarize,
)
