"""Attack presets driven by torchattacks, from the weakest (labelled) to the strongest adaptive attacks.

Each :class:`AttackPreset` says what the attacker differentiates (the bare classifier, or the defence
in a given gradient mode), how many defence draws it averages (:class:`~genflow.robustness.defence.EOT`)
and which torchattacks attack it runs, with the published settings as defaults:

* ``blind_pgd``: PGD (40 steps of eps/4) on the bare classifier, evaluated through the defence
  (preprocessor-blind transfer; weak).
* ``bpda_eot``: PGD (40 steps of eps/4), BPDA gradient (identity through the purifier), EOT over 15
  draws (ADP's own protocol; weak).
* ``pgd_eot``: PGD (40 steps of eps/4), full gradient, EOT over 15 draws.
* ``apgd_eot``: APGD-CE with 100 iterations (torchattacks defaults to 10), full gradient, EOT over 15
  draws, returning the highest-loss iterate for every image.
* ``autoattack``: AutoAttack standard (APGD-CE, APGD-T, FAB-T with 100 iterations, Square with 5000
  queries), full gradient.
* ``autoattack_rand``: AutoAttack rand (APGD-CE and APGD-DLR, 100 iterations, 20 EOT samples each).
* ``square``: Square (5000 queries, gradient-free), returning the lowest-margin iterate.

References:
    Madry et al. 2018 (PGD); Athalye, Carlini, Wagner 2018 (BPDA, EOT); Croce and Hein 2020,
    "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks"
    (APGD, AutoAttack standard and rand); Andriushchenko et al. 2020 (Square); Yoon, Hwang, Lee 2021
    (ADP's BPDA+EOT protocol: 40 steps of 2/255 at 8/255, 15 EOT samples).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torchattacks
from torch import nn

from genflow.robustness.attacks import BestLossAPGD, BestSquare
from genflow.robustness.errors import AttackConfigError

__all__ = ["AttackPreset", "PRESETS", "NORMS", "build_attack", "preset_settings"]

NORMS: tuple[str, ...] = ("Linf", "L2")

Builder = Callable[[nn.Module, str, float, Mapping[str, Any]], torchattacks.attack.Attack]


def _pgd(model: nn.Module, norm: str, eps: float, s: Mapping[str, Any]) -> torchattacks.attack.Attack:
    alpha = eps * s["step_ratio"]
    if norm == "Linf":
        return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=s["steps"], random_start=True)
    return torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=s["steps"], random_start=True)


def _apgd(model: nn.Module, norm: str, eps: float, s: Mapping[str, Any]) -> torchattacks.attack.Attack:
    return BestLossAPGD(model, norm=norm, eps=eps, steps=s["steps"], n_restarts=s["restarts"], seed=s["seed"],
                        loss="ce", eot_iter=1)  # fmt: skip


def _autoattack(model: nn.Module, norm: str, eps: float, s: Mapping[str, Any]) -> torchattacks.attack.Attack:
    common = {"norm": norm, "eps": eps, "seed": s["seed"]}
    steps, classes = s["steps"], s["n_classes"]
    return torchattacks.MultiAttack([
        torchattacks.APGD(model, steps=steps, loss="ce", n_restarts=1, **common),
        torchattacks.APGDT(model, steps=steps, n_classes=classes, n_restarts=1, **common),
        torchattacks.FAB(model, steps=steps, multi_targeted=True, n_classes=classes, n_restarts=1, **common),
        torchattacks.Square(model, n_queries=s["queries"], n_restarts=1, **common),
    ])  # fmt: skip


def _autoattack_rand(model: nn.Module, norm: str, eps: float, s: Mapping[str, Any]) -> torchattacks.attack.Attack:
    common = {"norm": norm, "eps": eps, "seed": s["seed"], "steps": s["steps"], "eot_iter": s["eot_iter"]}
    return torchattacks.MultiAttack([
        torchattacks.APGD(model, loss="ce", n_restarts=1, **common),
        torchattacks.APGD(model, loss="dlr", n_restarts=1, **common),
    ])  # fmt: skip


def _square(model: nn.Module, norm: str, eps: float, s: Mapping[str, Any]) -> torchattacks.attack.Attack:
    return BestSquare(model, norm=norm, eps=eps, n_queries=s["queries"], n_restarts=1, seed=s["seed"])


@dataclass(frozen=True)
class AttackPreset:
    """One attack protocol.

    Attributes:
        name: Registry key (``blind_pgd``, ``bpda_eot``, ...).
        summary: One line for reports.
        target: ``"classifier"`` (attack the bare classifier, evaluate the defence: preprocessor-blind
            transfer) or ``"defence"``.
        gradient: The defence's gradient mode while attacking (None: the attack takes no gradients
            through the defence, or the defence is not attacked).
        weak: True for presets known to overstate robustness (BPDA, blind): every report labels them.
        build: ``build(model, norm, eps, settings) -> torchattacks attack``.
        defaults: Default settings (``steps``, ``eot_draws``, ``queries``, ...), overridable per evaluation.
    """

    name: str
    summary: str
    target: str
    gradient: str | None
    weak: bool
    build: Builder
    defaults: Mapping[str, Any] = field(default_factory=dict)


PRESETS: dict[str, AttackPreset] = {p.name: p for p in (
    AttackPreset("blind_pgd", "PGD on the bare classifier, evaluated through the defence (preprocessor-blind; weak)",
                 "classifier", None, True, _pgd, {"steps": 40, "step_ratio": 0.25}),
    AttackPreset("bpda_eot", "PGD with BPDA (identity gradient through the purifier) and EOT (weak baseline)",
                 "defence", "bpda", True, _pgd, {"steps": 40, "step_ratio": 0.25, "eot_draws": 15}),
    AttackPreset("pgd_eot", "PGD with full gradients through the defence and EOT", "defence", "full", False, _pgd,
                 {"steps": 40, "step_ratio": 0.25, "eot_draws": 15}),
    AttackPreset("apgd_eot", "APGD-CE, 100 iterations, full gradients, EOT", "defence", "full", False, _apgd,
                 {"steps": 100, "restarts": 1, "eot_draws": 15}),
    AttackPreset("autoattack", "AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square), full gradients", "defence",
                 "full", False, _autoattack, {"steps": 100, "queries": 5000, "eot_draws": 1}),
    AttackPreset("autoattack_rand", "AutoAttack rand (APGD-CE, APGD-DLR with 20 EOT samples), full gradients",
                 "defence", "full", False, _autoattack_rand, {"steps": 100, "eot_iter": 20, "eot_draws": 1}),
    AttackPreset("square", "Square attack (gradient-free random search)", "defence", None, False, _square,
                 {"queries": 5000, "eot_draws": 1}),
)}  # fmt: skip


def preset_settings(preset: AttackPreset, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The preset's defaults with ``overrides`` applied (keys it does not use are ignored).

    Raises:
        AttackConfigError: an integer setting below 1 or a step ratio outside ``(0, 1]``.
    """
    settings = dict(preset.defaults)
    settings.update({k: v for k, v in (overrides or {}).items() if k in preset.defaults})
    for key in ("steps", "eot_draws", "queries", "restarts", "eot_iter"):
        value = settings.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise AttackConfigError(f"{preset.name}: {key} must be an int >= 1; got {value!r}")
    if not 0.0 < float(settings.get("step_ratio", 1.0)) <= 1.0:
        raise AttackConfigError(f"{preset.name}: step_ratio must be in (0, 1]; got {settings['step_ratio']!r}")
    return settings


def build_attack(
    name: str, model: nn.Module, norm: str, eps: float, settings: Mapping[str, Any]
) -> torchattacks.attack.Attack:
    """The torchattacks attack of preset ``name`` on ``model`` at budget ``eps`` in ``norm``.

    Args:
        settings: The preset's settings (:func:`preset_settings`) plus ``seed`` and ``n_classes``.

    Raises:
        AttackConfigError: an unknown preset or norm, or ``eps <= 0``.
    """
    if name not in PRESETS:
        raise AttackConfigError(f"unknown attack preset {name!r}; known: {sorted(PRESETS)}")
    if norm not in NORMS:
        raise AttackConfigError(f"norm must be one of {NORMS}; got {norm!r}")
    if not float(eps) > 0.0:
        raise AttackConfigError(f"eps must be > 0; got {eps!r}")
    return PRESETS[name].build(model, norm, float(eps), settings)
