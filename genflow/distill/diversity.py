"""Diversity of a BatchEnsemble's members on a dataset: pairwise disagreement and KL between members.

References:
    Fort, Hu and Lakshminarayanan 2019, "Deep Ensembles: A Loss Landscape Perspective" (disagreement);
    Nam et al. 2021, "Diversity Matters When Learning From Ensembles", tab. 1 (disagreement and KL of members).
"""

from __future__ import annotations

import itertools

import torch

from genflow.data import ImageTensorDataset
from genflow.distill.batch_ensemble import BatchEnsemble
from genflow.metrics.fidelity import disagreement, kl

__all__ = ["member_diversity"]


@torch.no_grad()
def member_diversity(model: BatchEnsemble, dataset: ImageTensorDataset, batch_size: int = 1024) -> dict[str, float]:
    """``disagreement`` (mean over member pairs of the fraction of differing predictions) and ``kl`` (mean over
    ordered member pairs ``i != j`` of ``KL(p_i || p_j)``) of the members on ``dataset`` (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        logits = torch.cat([model.member_logits(dataset.images[i : i + batch_size])
                            for i in range(0, len(dataset), batch_size)], dim=1)  # fmt: skip
    finally:
        model.train(was_training)
    probs = torch.softmax(logits.double(), dim=-1)
    pairs = list(itertools.permutations(range(model.members), 2))
    return {"disagreement": disagreement(probs),
            "kl": sum(kl(probs[i], probs[j]) for i, j in pairs) / len(pairs)}  # fmt: skip
