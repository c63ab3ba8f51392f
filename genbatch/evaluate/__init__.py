"""Quality metrics of a run's images: FID, IS, CLIP score, diversity and the shapes judge;
and two runs of the same jobs compared image by image (genbatch.evaluate.compare).

from genbatch.evaluate import EvalOptions, evaluate_run
result = evaluate_run(Path("images"), EvalOptions(metrics=("clip", "diversity")))
"""

from genbatch.evaluate.run import (
    EVAL_NAME,
    EvalOptions,
    EvalResult,
    evaluate_run,
    format_table,
    parse_metrics,
    read_eval,
)
from genbatch.report.eval_section import report_section

__all__ = [
    "EVAL_NAME",
    "EvalOptions",
    "EvalResult",
    "evaluate_run",
    "format_table",
    "parse_metrics",
    "read_eval",
    "report_section",
]
