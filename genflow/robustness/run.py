"""Robustness of a trained classifier run on the digits test split (``genflow evaluate RUN --robustness``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genflow.robustness.errors import AttackConfigError
from genflow.robustness.evaluate import DEFAULT_ATTACKS, evaluate_robustness
from genflow.robustness.report import RobustnessReport

__all__ = ["parse_budgets", "digits_attack_set", "evaluate_run_robustness"]


def parse_budgets(text: str) -> list[float]:
    """``"8/255,16/255,0.1"`` -> ``[0.0314, 0.0627, 0.1]``.

    Raises:
        AttackConfigError: an entry that is not a number or fraction, or a budget <= 0.
    """
    out = []
    for part in (p.strip() for p in str(text).split(",")):
        try:
            value = float(Fraction(part))
        except (ValueError, ZeroDivisionError):
            raise AttackConfigError(f"budgets must be numbers or fractions like 8/255, comma-separated; got {part!r} "
                                    f"in {text!r}") from None  # fmt: skip
        if value <= 0:
            raise AttackConfigError(f"budgets must be > 0; got {part!r} in {text!r}")
        out.append(value)
    return out


def digits_attack_set(images: int, image_size: int = 8, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``images // 10`` images of every digit of the split (a fixed, class-balanced subset) in ``[0, 1]``.

    Raises:
        AttackConfigError: ``images`` not a multiple of 10 in ``[10, 360]``.
    """
    from genflow.classify.training import stratified_subset
    from genflow.data import load_dataset

    if not isinstance(images, int) or isinstance(images, bool) or images % 10 or not 10 <= images <= 360:
        raise AttackConfigError(f"images must be a multiple of 10 in [10, 360] (balanced over the digits); "
                                f"got {images!r}")  # fmt: skip
    data = load_dataset("digits", split=split, size=image_size, value_range="classification")
    subset = stratified_subset(data, images // 10)
    return subset.images, subset.labels


def evaluate_run_robustness(
    run: str | os.PathLike[str],
    *,
    epsilons: Sequence[float],
    norm: str = "Linf",
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    images: int = 100,
    repeats: int = 1,
    draws: int = 1,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
    defence: nn.Module | None = None,
) -> RobustnessReport:
    """Attack a classifier (or ensemble) run, or ``defence`` built around it, on ``images`` digits test images.

    Writes ``robustness.md``, ``robustness.json`` and ``robustness.png`` to ``out_dir`` (default
    ``RUN/robustness``) and returns the report. See :func:`~genflow.robustness.evaluate.evaluate_robustness`.
    """
    from genflow.classify import load_run

    classifier = load_run(run).eval()
    size = getattr(classifier, "image_size", None) or classifier.members[0].image_size
    x, y = digits_attack_set(images, size)
    model = defence if defence is not None else classifier
    report = evaluate_robustness(
        model, x, y, epsilons=epsilons, norm=norm, attacks=attacks, classifier=classifier, repeats=repeats,
        draws=draws, settings=settings, seed=seed, name=f"{type(model).__name__} ({Path(run).name})",
        eps_denominator=255 if norm == "Linf" else None,
    )  # fmt: skip
    report.save(Path(out_dir) if out_dir is not None else Path(run) / "robustness")
    return report
