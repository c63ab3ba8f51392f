"""The metrics, computed from cached per-image rows with torchmetrics' implementations.

torchmetrics' FrechetInceptionDistance and InceptionScore take a custom feature
network; here that network is :class:`Precomputed`, which hands the metric the features
already cached, so the metric's own code does the statistics and nothing is recomputed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NAMES = ("fid", "is", "clip", "diversity", "shapes")


def precomputed(dim: int) -> Any:
    import torch

    class Precomputed(torch.nn.Module):
        """The identity on features already computed: the 'feature network' of a metric fed from the cache."""

        def __init__(self) -> None:
            super().__init__()
            self.num_features = dim

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return features

    return Precomputed()


def fid(features: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """FID of the generated features (N, D) against reference statistics (mean, covariance)."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=precomputed(features.shape[1]))
    n = 2  # the reference enters through its statistics: sum and scatter of n samples that have them
    mu_t, sigma_t = torch.from_numpy(mu).double(), torch.from_numpy(sigma).double()
    metric.real_features_sum = mu_t * n
    metric.real_features_cov_sum = sigma_t * (n - 1) + n * torch.outer(mu_t, mu_t)
    metric.real_features_num_samples = torch.tensor(n)
    metric.update(torch.from_numpy(features).double(), real=False)
    return float(metric.compute())


def inception_score(logits: np.ndarray, splits: int = 10) -> dict[str, float]:
    """Inception Score (mean and std over splits) of class logits (N, K). Deterministic:
    the split permutation is drawn from a fixed seed."""
    import torch
    from torchmetrics.image.inception import InceptionScore

    metric = InceptionScore(feature=precomputed(logits.shape[1]), splits=max(1, min(splits, len(logits))))
    metric.update(torch.from_numpy(logits).double())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mean, std = metric.compute()
    return {"mean": float(mean), "std": float(std), "splits": metric.splits}


def clip_score(raw_scores: np.ndarray) -> float:
    """torchmetrics' CLIPScore over images: the mean of 100 x cosine, clipped at 0."""
    return max(float(np.mean(raw_scores)), 0.0)


def mean_pairwise(rows: np.ndarray, kind: str) -> float:
    """Mean distance over all pairs of rows: the mean absolute difference of pixels in
    [0, 1] (as training/evaluate_shapes.py measures the shapes model), or 1 - cosine."""
    import torch

    x = torch.from_numpy(np.asarray(rows, dtype=np.float64))
    if kind == "pixel":
        return float(torch.pdist(x / 255.0, p=1).mean()) / x.shape[1]
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float(torch.pdist(x).pow(2).div(2).mean())  # |a - b|^2 / 2 = 1 - cos for unit vectors


def diversity(rows: np.ndarray, prompts: list[str], kind: str) -> dict[str, Any]:
    """Mean over prompts with two or more images of their images' mean pairwise distance."""
    by_prompt: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        by_prompt.setdefault(prompt, []).append(i)
    values = [mean_pairwise(rows[idx], kind) for idx in by_prompt.values() if len(idx) >= 2]
    return {"value": float(np.mean(values)) if values else None, "prompts": len(values)}


def shapes_summary(rows: np.ndarray, categories: tuple[str, ...]) -> dict[str, Any]:
    """Per category: accuracy over the images where it applies and how many those are;
    ``all``: the share of judged images right in every category that applies."""
    parsed = rows[:, 0] == 1
    judged = rows[parsed, 1:]
    summary: dict[str, Any] = {"judged": int(parsed.sum()), "unparsed": int((~parsed).sum())}
    for j, category in enumerate(categories):
        values = judged[:, j][~np.isnan(judged[:, j])]
        summary[category] = {"accuracy": float(values.mean()) if len(values) else None, "n": int(len(values))}
    every = [bool(np.all(r[~np.isnan(r)] == 1)) for r in judged]
    summary["all"] = {"accuracy": float(np.mean(every)) if every else None, "n": len(every)}
    return summary
