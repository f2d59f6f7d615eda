"""torchattacks attacks that return their strongest iterate for every image.

``torchattacks.APGD`` and ``torchattacks.Square`` return the *clean* image wherever a single forward
pass of the model was not fooled. Against a randomised defence that single pass can be lucky, and
re-evaluating the clean image then measures no attack at all. These subclasses keep the published
algorithms and return, for every image, the iterate with the highest loss (APGD) or the lowest margin
(Square), which :func:`~genflow.robustness.evaluate.evaluate_robustness` then re-evaluates with fresh
defence noise.
"""

from __future__ import annotations

import torch
import torchattacks
from torch import Tensor

__all__ = ["BestLossAPGD", "BestSquare"]


class BestLossAPGD(torchattacks.APGD):
    """APGD (Croce and Hein 2020, Alg. 1) returning the highest-loss iterate of the best restart for every image."""

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        _, adv = self.perturb(images, labels, best_loss=True)
        return adv


class BestSquare(torchattacks.Square):
    """Square attack (Andriushchenko et al. 2020, Alg. 1) returning its lowest-margin iterate for every image."""

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        x = images.clone().detach().to(self.device)
        y = labels.clone().detach().long().to(self.device)
        self.init_hyperparam(x)
        torch.random.manual_seed(self.seed)  # as Square.perturb; the caller runs this inside fork_rng
        best, best_margin = x.clone(), torch.full((x.shape[0],), float("inf"), device=self.device)
        for _ in range(self.n_restarts):
            _, adv = self.attack_single_run(x, y)
            with torch.no_grad():
                margin, _ = self.margin_and_loss(adv, y)
            better = margin < best_margin
            best[better], best_margin[better] = adv[better], margin[better]
        return best
